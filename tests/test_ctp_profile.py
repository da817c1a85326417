"""CTP scripts as profiles: reading errors, processing order, global removals, outcomes, and
the profile contract (keeps, reviewer actions, acknowledgements, CSV rules, identities)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from gateway.base.identifiers import collect_identifiers
from gateway.deid.ctp import arithmetic as fx
from gateway.deid.ctp.profile import CtpProfile, load_script
from gateway.deid.engine import DeidError
from gateway.deid.profile import CsvRules, ProfileError
from gateway.deid.profile_loading import load_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.standard import (
    CURVE_PATTERN,
    OVERLAY_DATA_PATTERN,
    PRIVATE_PATTERN,
    safe_private_attributes,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "profiles"
FEDERATION = CONF / "research-federation.script"
PSEUDONYMS = Pseudonyms(b"s" * 32, "site")


def write(tmp_path: Path, body: str, name: str = "t.script") -> Path:
    path = tmp_path / name
    path.write_text(f"<script>\n{body}\n</script>\n", encoding="utf-8")
    return path


def sample() -> Dataset:
    """A small instance with public, private, overlay and curve elements and a sequence."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.999.1.1"
    ds.StudyInstanceUID = "1.2.999.1.2"
    ds.SeriesInstanceUID = "1.2.999.1.3"
    ds.StudyDate = "20040119"
    ds.PatientName = "Zyxwick^Quorbelle"
    ds.PatientID = "ZQ-998877-X"
    ds.PatientSex = "F"
    ds.StudyDescription = "CT CHEST"
    ds.SliceThickness = "5"
    ds.Rows, ds.Columns = 2, 2
    item = Dataset()
    item.PatientID = "ZQ-554433-Y"
    item.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([item])
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60003000, "OW", b"\x00\x01")
    ds.add_new(0x50000005, "US", 1)
    block = ds.private_block(0x0011, "PHI_TEST", create=True)
    block.add_new(0x01, "LO", "Zyxwick")
    safe_creator, safe_group, safe_element = sorted(safe_private_attributes())[0]
    ds.private_block(safe_group, safe_creator, create=True).add_new(safe_element, "LO", "SAFE")
    ds.PixelData = b"\x00" * 8
    return ds


def run(profile: CtpProfile, ds: Dataset) -> Dataset:
    profile.build_engine(PSEUDONYMS).deidentify(ds, collect_identifiers(ds, profile.keeps))
    return ds


# -- reading --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ('<e en="T" t="00100010">@call(plugin,this)</e>', 2, "@call() runs a CTP plugin"),
        ('<p t="A">1</p>\n<e en="T" t="00100010">@nosuch(this)</e>', 3, "unknown function"),
        ('<e en="T" t="00100010">@hash(this</e>', 2, "complete function call"),
        ('<e en="T" t="00100010">@hash(PatientNmae)</e>', 2, "'PatientNmae' is not an element"),
        ('<e en="T" t="PatientName">@empty()</e>', 2, "not a tag"),
        ('<r en="T" t="everything"/>', 2, "unknown removal"),
        ('<k en="T" t="zz"/>', 2, "not a group number"),
        ("<x/>", 2, "unknown entry"),
        ('<e en="T" t="00100010" n="PatientName">@empty()</e>\n'
         '<e en="T" t="00100010" n="Name">@keep()</e>', 3, "also scripted on line 2"),
        ('<e en="T" t="00100010">@empty()</e>\n<e en="T" t="00100020"', 4, "not well-formed"),
        ('<e en="T" t="00080018">@hashuid(1.2,this,StudyInstanceUID)</e>\n'
         '<e en="T" t="0020000d">@hashuid(1.2,this,SOPInstanceUID)</e>', 2, "leads back"),
    ],
)  # fmt: skip
def test_an_unusable_script_names_its_file_and_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert f"{path}:{line}:" in str(err.value)
    assert message in str(err.value)


def test_entries_are_read_as_ctp_reads_them(tmp_path: Path) -> None:
    """As CTP's DAScript: the same tag and name twice, the later wins; no en="T", disabled."""
    path = write(
        tmp_path,
        '<e en="T" t="00100010" n="PatientName">@keep()</e>\n'
        '<e en="T" t="00100010" n="PatientName">@empty()</e>\n'
        '<e t="00100020" n="PatientID">@keep()</e>\n'
        '<e en="F" t="00100030" n="PatientBirthDate">@keep()</e>\n'
        '<r en="T" t="unspecifiedelements"/>\n'
        '<r t="privategroups"/>\n',
    )
    profile = load_profile(path)
    assert profile.effective_action(0x00100010) == "Z"
    assert profile.effective_action(0x00100020) == "X"  # disabled: unspecified, removed
    assert profile.effective_action(0x00100030) == "X"
    assert profile.effective_pattern_action(PRIVATE_PATTERN) == "K"  # <r> without en="T"


def test_a_properties_format_script_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "old.script"
    path.write_text("param.SITEID=1\nset.[0010,0010]PatientName=@empty()\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"old.script:1: not an XML script"):
        load_script(path)


def test_disabled_entries_are_ignored_and_a_missing_table_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '<e en="F" t="00100010">@call(x)</e>\n<r en="F" t="privategroups"/>')
    profile = load_script(path)
    assert profile.script.rules == () and not profile.script.remove_private
    with pytest.raises(ProfileError, match="lookup table"):
        load_script(path, tmp_path / "missing.properties")
    with pytest.raises(ProfileError, match="properties format"):
        load_script(path, tmp_path / "table.csv")


# -- processing order and the global removals -------------------------------------------------


def test_global_removals_spare_the_protected_elements(tmp_path: Path) -> None:
    removals = "".join(f'<r en="T" t="{t}"/>' for t in
                       ("privategroups", "unspecifiedelements", "overlays", "curves"))  # fmt: skip
    out = run(load_script(write(tmp_path, removals)), sample())
    # SOP Class/Instance UID, Study Instance UID, groups 0028 and 7FE0 (0002: the file meta)
    assert sorted(int(e.tag) for e in out) == [
        0x00080016, 0x00080018, 0x0020000D, 0x00280010, 0x00280011, 0x7FE00010
    ]


def test_keep_groups_and_safe_private_elements_survive_the_removals(tmp_path: Path) -> None:
    body = ('<k en="T" t="0018"/><k en="T" t="safeprivateelements"/>'
            '<r en="T" t="privategroups"/><r en="T" t="unspecifiedelements"/>')  # fmt: skip
    ds = sample()
    safe_tags = [int(e.tag) for e in ds if e.tag >> 16 & 1 and e.value == "SAFE"]
    out = run(load_script(write(tmp_path, body)), ds)
    assert out.SliceThickness == 5
    assert [int(e.tag) for e in out if e.value == "SAFE"] == safe_tags
    assert all(str(e.value) != "Zyxwick" for e in out)
    assert "PatientName" not in out


def test_overlays_and_curves(tmp_path: Path) -> None:
    kept = run(load_script(write(tmp_path, '<r en="T" t="unspecifiedelements"/>')), sample())
    assert 0x60003000 in kept and 0x50000005 in kept  # CTP keeps both unless asked
    scripted = write(tmp_path, '<e en="T" t="60003000">@keep()</e><r en="T" t="overlays"/>'
                     '<r en="T" t="curves"/>', "b.script")  # fmt: skip
    out = run(load_script(scripted), sample())
    assert 0x60003000 not in out and 0x60000010 not in out  # overlays go even when scripted
    assert 0x50000005 not in out  # stricter than CTP: curves go without unspecifiedelements


def test_scripts_read_the_original_values_and_always_elements_come_first(tmp_path: Path) -> None:
    body = (
        '<p t="SITE">9</p>'
        '<e en="T" t="00100020">@hashptid(@SITE,this)</e>'
        '<e en="T" t="00100010">@hashptid(@SITE,PatientID)</e>'
        '<e en="T" t="00081030">@always()NEW @contents(PatientSex)</e>'
        '<e en="T" t="00204000">@always()INSERTED</e>'
        '<r en="T" t="unspecifiedelements"/>'
    )
    ds = sample()
    del ds.StudyDescription
    out = run(load_script(write(tmp_path, body)), ds)
    expected = fx.hash_ptid("9", "ZQ-998877-X")
    assert out.PatientID == expected and out.PatientName == expected  # both from the original
    assert out.StudyDescription == "NEW F" and out.ImageComments == "INSERTED"


def test_sequences_are_walked_only_where_the_script_says_process(tmp_path: Path) -> None:
    body = '<e en="T" t="00100020">@hash(this,6)</e><e en="T" t="00100022">@remove()</e>'
    untouched = run(load_script(write(tmp_path, body)), sample())
    assert untouched.OtherPatientIDsSequence[0].PatientID == "ZQ-554433-Y"
    processed = run(load_script(write(tmp_path, body + '<e en="T" t="00101002">@process()</e>',
                                      "p.script")), sample())  # fmt: skip
    item = processed.OtherPatientIDsSequence[0]
    assert item.PatientID == fx.ctp_hash("ZQ-554433-Y", 6) and "TypeOfPatientID" not in item


@pytest.mark.parametrize(
    ("script", "value"),
    [("@keep()", "CT CHEST"), ("@empty()", ""), ("@blank(3)", "   "), ("", ""),
     ("fixed", "fixed"), ("@lowercase(this)", "ct chest"), ("a\\\\b", ["a", "b"])],
)  # fmt: skip
def test_outcomes(tmp_path: Path, script: str, value: object) -> None:
    out = run(load_script(write(tmp_path, f'<e en="T" t="00081030">{script}</e>')), sample())
    assert out.StudyDescription == value
    removed = run(load_script(write(tmp_path, '<e en="T" t="00081030">x@remove()</e>', "r.script")),
                  sample())  # fmt: skip
    assert "StudyDescription" not in removed


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("@quarantine()", "@quarantine() called"),
        ("@skip()", "@skip() called"),
        ("@lookup(this,nokey)", "not in the lookup table"),
        ("@if(PatientSex,equals,F){@quarantine()}{@keep()}", "quarantine"),
    ],
)
def test_what_ctp_would_not_pass_on_is_a_deid_error(
    tmp_path: Path, script: str, reason: str
) -> None:
    profile = load_script(write(tmp_path, f'<e en="T" t="00100020">{script}</e>'))
    with pytest.raises(DeidError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        run(profile, sample())


def test_lookup_table_behaviour_follows_ctp(tmp_path: Path) -> None:
    table = tmp_path / "lookup.properties"
    table.write_text("# comment\nptid/ZQ-998877-X = SUBJ-01\nalias/x=@ptid/ZQ-998877-X\n",
                     encoding="utf-8")  # fmt: skip
    body = ('<e en="T" t="00100020">@lookup(this,ptid)</e>'
            '<e en="T" t="00100010">@lookup(PatientSex,ptid,keep)</e>'
            '<e en="T" t="00081030">@lookup(PatientSex,ptid,default,NONE)</e>'
            '<e en="T" t="00080020">@incrementdate(this,PatientSex,shift)</e>')  # fmt: skip
    out = run(load_script(write(tmp_path, body), table), sample())
    assert out.PatientID == "SUBJ-01"
    assert out.PatientName == "Zyxwick^Quorbelle"  # keep on a missing key, as CTP does
    assert out.StudyDescription == "NONE"
    assert out.StudyDate == ""  # a missing date offset empties the date in CTP


# -- the profile contract ---------------------------------------------------------------------


def test_profile_contract_of_the_federation_script() -> None:
    profile = load_profile(FEDERATION)
    assert isinstance(profile, CtpProfile) and profile.name == "research-federation"
    assert "PatientAge" in profile.acknowledged and "StudyDate" in profile.acknowledged
    assert profile.csv == CsvRules("subject", ("visit_date", "scan_date"), ("name", "phone"))
    actions = {k: profile.effective_action(t) for k, t in (
        ("name", 0x00100010), ("id", 0x00100020), ("birth", 0x00100030), ("date", 0x00080020),
        ("uid", 0x0020000D), ("inst", 0x00080080), ("desc", 0x00081030),
        ("unscripted", 0x00081040), ("rows", 0x00280010), ("sop_class", 0x00080016),
        ("media_sop", 0x00020003))}  # fmt: skip
    assert actions == {"name": "D", "id": "D", "birth": "Z", "date": "C", "uid": "U",
                       "inst": "X", "desc": "K", "unscripted": "X", "rows": None,
                       "sop_class": "K", "media_sop": "U"}  # fmt: skip
    assert profile.effective_pattern_action(PRIVATE_PATTERN) == "X"
    assert profile.effective_pattern_action(CURVE_PATTERN) == "X"
    assert profile.effective_pattern_action(OVERLAY_DATA_PATTERN) == "X"
    assert profile.path_overrides() == ()
    assert profile.keeps(0x00081030) and not profile.keeps(0x00100020)


def test_keeping_the_patients_identity_is_never_declared_kept(tmp_path: Path) -> None:
    profile = load_script(write(tmp_path, '<e en="T" t="00100010">@keep()</e>'))
    assert profile.effective_action(0x00100010) == "K"
    assert not profile.keeps(0x00100010) and profile.keeps(0x00081030)


def test_patient_identity_and_clinical_dates_match_the_dicom_path() -> None:
    profile = load_script(FEDERATION)
    engine = profile.build_engine(PSEUDONYMS)
    identity = engine.patient_identity("ZQ-998877-X")
    assert identity.pseudonym == fx.hash_ptid("SITE042", "ZQ-998877-X", 12)
    assert identity.shift_days == -fx.hashdate_increment("ZQ-998877-X")
    ds = sample()
    result = engine.deidentify(ds, collect_identifiers(ds, profile.keeps))
    assert result.patient_pseudonym == identity.pseudonym == ds.PatientID
    assert result.date_shift_days == identity.shift_days
    assert engine.clinical_date(identity, "20040119") == ds.StudyDate
    assert engine.clinical_date(identity, "20040119") == fx.increment_date(
        "20040119", fx.hashdate_increment("ZQ-998877-X"))  # fmt: skip


def test_deid_result_lists_the_remapped_and_kept_uids() -> None:
    profile = load_script(FEDERATION)
    ds = sample()
    result = profile.build_engine(PSEUDONYMS).deidentify(ds, collect_identifiers(ds, profile.keeps))
    assert {"1.2.999.1.1", "1.2.999.1.2", "1.2.999.1.3"} <= result.remapped_uids
    assert result.kept_uids == {"1.2.840.10008.5.1.4.1.1.7"}
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == result.sop_instance_uid
    assert ds.SOPInstanceUID == fx.hash_uid("1.2.826.0.1.3680043.10.999", "1.2.999.1.1")


def test_clock_functions_and_the_integer_table(tmp_path: Path) -> None:
    import re
    from datetime import date

    body = ('<e en="T" t="00081030">@always()@date(-)</e>'
            '<e en="T" t="00204000">@always()@time(:)</e>'
            '<e en="T" t="00100020">@integer(this,ptid,4)</e>')  # fmt: skip
    profile = load_script(write(tmp_path, body))
    engine = profile.build_engine(PSEUDONYMS)
    numbers = []
    for patient in ("A-1", "B-2", "A-1"):
        ds = sample()
        del ds.StudyDescription
        ds.PatientID = patient
        engine.deidentify(ds, collect_identifiers(ds, profile.keeps))
        numbers.append(ds.PatientID)
        assert ds.StudyDescription == date.today().isoformat()
        assert re.fullmatch(r"\d\d:\d\d:\d\d", ds.ImageComments)
    assert numbers == ["0001", "0002", "0001"]


def test_a_date_shift_is_reported_only_for_a_fixed_shift(tmp_path: Path) -> None:
    fixed = load_script(write(tmp_path, '<e en="T" t="00080020">@incrementdate(this,-30)</e>'))
    ds = sample()
    result = fixed.build_engine(PSEUDONYMS).deidentify(ds, collect_identifiers(ds, fixed.keeps))
    assert (result.date_shift_days, ds.StudyDate) == (30, "20031220")
    moved = load_script(write(tmp_path, '<e en="T" t="00080020">@modifydate(this,*,6,*)</e>',
                              "m.script"))  # fmt: skip
    engine = moved.build_engine(PSEUDONYMS)
    ds = sample()
    assert engine.deidentify(ds, collect_identifiers(ds, moved.keeps)).date_shift_days is None
    assert engine.patient_identity("ZQ-998877-X").shift_days is None
    assert engine.clinical_date(engine.patient_identity("ZQ-998877-X"), "20040119") == "20040619"


def test_entity_declarations_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "entities.script"
    path.write_text('<!DOCTYPE script [<!ENTITY a "aaaaaaaaaa">\n<!ENTITY b "&a;&a;&a;">]>\n'
                    '<script><p t="X">&b;</p></script>\n', encoding="utf-8")  # fmt: skip
    with pytest.raises(ProfileError, match="entity declarations are not allowed"):
        load_script(path)


@pytest.mark.parametrize(
    ("script", "code"),
    [("@remove()", "X"), ("@empty()", "Z"), ("@blank(2)", "Z"), ("", "Z"), ("TEXT", "D"),
     ("@hash(this,8)", "D"), ("@lookup(this,k)", "D"), ("@lookup(this,k,keep)", "K"),
     ("@hashuid(@R,this)", "U"), ("@incrementdate(this,-5)", "C"), ("@round(this,5)", "C"),
     ("@contents(this,\"[0-9]\")", "C"), ("@keep()", "K"), ("@uppercase(this)", "K"),
     ("@if(this,isblank){@remove()}{@keep()}", "K"), ("@always()@quarantine()", "X"),
     ("@process()", "C"), ("@select(){@hash(this)}{@remove()}", "D")],
)  # fmt: skip
def test_reviewer_classes_of_scripts(tmp_path: Path, script: str, code: str) -> None:
    profile = load_script(write(tmp_path, f'<p t="R">1.2</p><e en="T" t="00081030">{script}</e>'))
    assert profile.effective_action(0x00081030) == code


def test_the_character_set_stays_while_text_needs_it(tmp_path: Path) -> None:
    profile = load_script(write(tmp_path, '<e en="T" t="00081030">@keep()</e>'
                                '<r en="T" t="unspecifiedelements"/>'))  # fmt: skip
    ds = sample()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyDescription = "Épaule droite"
    assert run(profile, ds).SpecificCharacterSet == "ISO_IR 192"
    ascii_only = sample()
    ascii_only.SpecificCharacterSet = "ISO_IR 192"
    assert "SpecificCharacterSet" not in run(profile, ascii_only)  # as CTP: removed
