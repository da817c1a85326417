"""Pseudonyms are stable, site-scoped and valid; date shifts keep a patient's intervals."""

from __future__ import annotations

from datetime import date

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

from gateway.base.identifiers import collect_identifiers
from gateway.deid.actions import clean_dates_in_text, shift_da, shift_dt
from gateway.deid.engine import Engine
from gateway.deid.profile import ProfileError, compile_profile, default_profile
from gateway.deid.profile_loading import load_profile
from gateway.deid.pseudonyms import MAX_SHIFT_DAYS, MIN_SHIFT_DAYS, Pseudonyms, patient_key
from gateway.deid.standard import Option

SECRET = b"pseudonym-test-secret-0123456789"


def test_uids_are_2_25_decimal_stable_and_valid() -> None:
    one, two = Pseudonyms(SECRET, "SITE"), Pseudonyms(SECRET, "SITE")
    original = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    uid = one.uid(original)
    assert uid == two.uid(original)
    assert uid.startswith("2.25.") and len(uid) <= 64
    assert UID(uid).is_valid
    number = int(uid[5:])
    assert number < 2**128 and (number >> 76) & 0xF == 8  # a version 8 UUID
    assert one.uid(original + "1") != uid


def test_another_secret_or_site_gives_other_pseudonyms() -> None:
    base = Pseudonyms(SECRET, "SITE")
    other_secret = Pseudonyms(b"another-secret-0123456789abcdef!", "SITE")
    other_site = Pseudonyms(SECRET, "OTHER")
    for other in (other_secret, other_site):
        assert other.uid("1.2.3.4.5.6.7.8") != base.uid("1.2.3.4.5.6.7.8")
        assert other.patient_id("id\x00\x00P1") != base.patient_id("id\x00\x00P1")


def test_patient_pseudonym_is_valid_for_patient_id_and_name() -> None:
    pseudo = Pseudonyms(SECRET, "SITE").patient_id("id\x00\x00123")
    assert len(pseudo) <= 64 and pseudo.replace("-", "").isalnum() and pseudo.isupper()


def test_patient_key_prefers_issuer_qualified_id_then_name_then_study() -> None:
    assert patient_key("123", "HOSP", "A^B", "", "1.2") != patient_key("123", "OTHER", "", "", "")
    assert patient_key("", "", "Doe^Jane", "19800101", "1.2") == patient_key(
        "", "", "DOE^JANE", "19800101", "9.9"
    )
    assert patient_key("", "", "", "", "1.2.3").endswith("1.2.3")


def test_shift_is_per_patient_and_in_range() -> None:
    pseudo = Pseudonyms(SECRET, "SITE")
    shifts = {pseudo.date_shift_days(f"id\x00\x00P{i}") for i in range(200)}
    assert all(MIN_SHIFT_DAYS <= s <= MAX_SHIFT_DAYS for s in shifts)
    assert len(shifts) > 150


def _study(study_uid: str, study_date: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = study_uid + ".1"
    ds.StudyInstanceUID = study_uid
    ds.PatientID = "LONGITUDINAL-1"
    ds.PatientName = "Farrowdale^Imke"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AcquisitionDateTime = study_date + "101510.25+0200"
    return ds


def test_two_studies_of_one_patient_keep_their_interval_and_times() -> None:
    engine = Engine(default_profile(), Pseudonyms(SECRET, "SITE"))
    first, second = _study("1.2.826.0.1.1", "20200115"), _study("1.2.826.0.1.2", "20210320")
    for ds in (first, second):
        engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))

    def day(text: str) -> date:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))

    assert day(second.StudyDate) - day(first.StudyDate) == date(2021, 3, 20) - date(2020, 1, 15)
    assert first.StudyDate != "20200115"
    assert first.StudyTime == "101500"
    assert first.AcquisitionDateTime[8:] == "101510.25+0200"
    assert first.AcquisitionDateTime[:8] == first.StudyDate
    assert first.LongitudinalTemporalInformationModified == "MODIFIED"


def test_without_a_date_option_dates_are_emptied_and_marked_removed() -> None:
    engine = Engine(compile_profile(()), Pseudonyms(SECRET, "SITE"))
    ds = _study("1.2.826.0.1.3", "20200115")
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    assert ds.StudyDate == "" and ds.StudyTime == ""
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20200301", "20200229"),
        ("20200101-20200131", "20191231-20200130"),
        ("-20200131", "-20200130"),
        ("2020013", None),
        ("20201345", None),
        ("", None),
    ],
)
def test_da_values_and_ranges_shift_and_bad_ones_are_refused(value, expected) -> None:
    assert shift_da(value, 1) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20200301120000.123456+0100", "20200229120000.123456+0100"),
        ("20200301", "20200229"),
        ("202003", "202002"),
        ("2020", "2019"),
        ("garbage", None),
    ],
)
def test_dt_values_keep_precision_time_and_offset(value, expected) -> None:
    days = 1 if len(value) >= 8 or value == "garbage" else 40 if len(value) == 6 else 400
    assert shift_dt(value, days) == expected


def test_dates_in_free_text_move_or_go() -> None:
    text = "seen 2020-03-01, follow-up 15.04.2020 and 20200501"
    assert clean_dates_in_text(text, 1) == "seen 2020-02-29, follow-up 14.04.2020 and 20200430"
    assert clean_dates_in_text(text, None) == "seen *, follow-up * and *"
    assert clean_dates_in_text("UID 1.2.20200301.5", 1) == "UID 1.2.20200229.5"


def test_profile_file_names_options_and_rejects_unknown_ones(tmp_path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("base: basic\noptions: [retain_uids, clean_descriptors]\n")
    profile = load_profile(good)
    assert profile.options == {Option.RETAIN_UIDS, Option.CLEAN_DESCRIPTORS}
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: basic\noptions: [retain_everything]\nextra: 1\n")
    with pytest.raises(ProfileError) as caught:
        load_profile(bad)
    assert f"{bad}: 'extra': unknown key" in caught.value.problems
    problems = caught.value.problems
    assert any("'options.0': 'retain_everything' is not an option" in p for p in problems)
    both = tmp_path / "both.yaml"
    both.write_text(
        "options: [retain_longitudinal_full_dates, retain_longitudinal_modified_dates]\n"
    )
    with pytest.raises(ProfileError, match="exclude each other"):
        load_profile(both)


def test_dates_the_table_does_not_list_move_with_the_patient() -> None:
    engine = Engine(default_profile(), Pseudonyms(SECRET, "SITE"))
    assert engine.profile.action_for(0x00141020) is None  # Expiry Date: not in Table E.1-1
    ds = _study("1.2.826.0.1.4", "20200115")
    ds.ExpiryDate = "20200115"
    engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
    assert ds.ExpiryDate == ds.StudyDate != "20200115"


def test_clinical_dates_follow_the_profiles_date_option() -> None:
    """A clinical CSV date is treated as the images' dates are: moved, kept, or dropped."""
    pseudonyms = Pseudonyms(SECRET, "SITE")
    modified = Engine(default_profile(), pseudonyms)
    identity = modified.patient_identity("PAT-1")
    shifted = modified.clinical_date(identity, "20200131")
    assert shifted is not None and shifted < "20200131"
    full = Engine(compile_profile([Option.RETAIN_LONGITUDINAL_FULL_DATES]), pseudonyms)
    assert full.clinical_date(full.patient_identity("PAT-1"), "20200131") == "20200131"
    assert full.clinical_date(full.patient_identity("PAT-1"), "2020-13-45") is None
    basic = Engine(compile_profile([]), pseudonyms)
    assert basic.clinical_date(basic.patient_identity("PAT-1"), "20200131") is None
