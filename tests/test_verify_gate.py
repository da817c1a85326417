"""The verify gate finds identifiers the table cannot know about, and quarantines them."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from gateway.base.identifiers import Identifiers, collect_identifiers
from gateway.deid.engine import Engine
from gateway.deid.profile import compile_profile, default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.deid.standard import Option
from gateway.pipeline.instance import Clean, Quarantine, process_instance
from gateway.verify.leaks import find_leaks

SECRET = b"verify-gate-test-secret-32-bytes"
NAME = "Brightwater^Ysolde^M"
PATIENT_ID = "BW-20417"


def _instance() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.7.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.7.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.7.3"
    ds.PatientName = NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19710309"
    ds.AccessionNumber = "ACC778899"
    ds.InstitutionName = "Saint Elsewhere General"
    return ds


def _engine(*options: Option) -> Engine:
    profile = compile_profile(options) if options else default_profile()
    return Engine(profile, Pseudonyms(SECRET, "VERIFY-SITE"))


def test_clean_instance_passes_and_carries_no_identifier() -> None:
    outcome = process_instance(_instance(), _engine())
    assert isinstance(outcome, Clean)
    assert outcome.dataset.PatientID.startswith(outcome.result.patient_pseudonym)


def test_name_in_free_text_the_table_retains_is_cut_out_not_quarantined() -> None:
    ds = _instance()
    ds.SequenceName = "ysolde t2"  # Sequence Name is not in Table E.1-1, so it is retained
    outcome = process_instance(ds, _engine())
    assert isinstance(outcome, Clean)
    assert outcome.dataset.SequenceName == "* t2"


def test_name_in_a_value_the_engine_cannot_clean_is_quarantined() -> None:
    ds = _instance()
    # A retained binary attribute (ICC Profile, OB): bytes, which the engine cannot clean.
    ds.add_new(0x00282000, "OB", b"for Brightwater Ysolde ")
    outcome = process_instance(ds, _engine())
    assert isinstance(outcome, Quarantine)
    assert outcome.reason == "identifier-found"
    assert outcome.message == "identifying value found at (0028,2000)"


def test_birth_date_written_in_retained_free_text_is_cut_out() -> None:
    ds = _instance()
    item = Dataset()
    item.TextValue = "born 09.03.1971, seen today"  # a retained attribute inside a sequence
    ds.add_new(0x00409096, "SQ", Sequence([item]))  # Real World Value Mapping Sequence
    outcome = process_instance(ds, _engine())
    assert isinstance(outcome, Clean)
    assert outcome.dataset[0x00409096].value[0].TextValue == "born *, seen today"


def test_identifier_in_a_retained_safe_private_attribute_is_found() -> None:
    ds = _instance()
    block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
    block.add_new(0x00, "DS", "1.5")
    block.add_new(0x09, "DS", "2.5")
    ds.add_new(0x00181030, "LO", "x")
    engine = _engine(Option.RETAIN_SAFE_PRIVATE, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
    outcome = process_instance(ds, engine)
    assert isinstance(outcome, Clean)  # numbers only: nothing to find

    ds = _instance()
    # ELSCINT1 (01E1,xx26) Phantom Type is safe by Table E.3.10-1 (CS); a site stuffed the ID
    # in it. A code is not scrubbed as text is: the gate finds the ID and holds the instance.
    ds.private_block(0x01E1, "ELSCINT1", create=True).add_new(0x26, "CS", PATIENT_ID)
    outcome = process_instance(ds, engine)
    assert isinstance(outcome, Quarantine)
    assert "(01E1,1026)" in outcome.message

    ds = _instance()
    # GEMS_PARM_01 (0043,xx27) is safe (SH): its text is scrubbed as retained text is.
    block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
    block.add_new(0x27, "SH", f"1.375:1 {PATIENT_ID}")
    outcome = process_instance(ds, engine)
    assert isinstance(outcome, Clean)
    kept = str(outcome.dataset[block.get_tag(0x27)].value)
    assert kept.startswith("1.375:1") and PATIENT_ID not in kept


def test_original_uid_quoted_in_text_is_found() -> None:
    ds = _instance()
    item = Dataset()
    item.TextValue = f"see {ds.StudyInstanceUID}"
    ds.add_new(0x00409096, "SQ", Sequence([item]))
    outcome = process_instance(ds, _engine())
    assert isinstance(outcome, Quarantine)
    assert "original UID in text" in outcome.message


def test_name_parts_are_matched_as_words_not_inside_other_words() -> None:
    ids = Identifiers()
    ids.add_value("Lee^Ann", "PN")
    leaked = Dataset()
    leaked.SequenceName = "ann"
    assert find_leaks(leaked, ids)
    harmless = Dataset()
    harmless.SequenceName = "ANNOTATED"
    harmless.ConvolutionKernel = "STANDARD"
    assert not find_leaks(harmless, ids)


def test_short_ids_match_only_whole_values() -> None:
    ids = Identifiers()
    ids.add_value("12", "LO")  # e.g. a Study ID: too short to search inside text
    ds = Dataset()
    ds.SequenceName = "sequence 12 b"
    assert not find_leaks(ds, ids)
    ds.ConvolutionKernel = "12"
    assert [str(leak) for leak in find_leaks(ds, ids)] == ["identifying value found at (0018,1210)"]


def test_code_meanings_are_vocabulary_for_name_parts_but_not_for_whole_names() -> None:
    ids = Identifiers()
    ids.add_value("Head^Ysolde", "PN")
    item = Dataset()
    item.CodeValue = "T-D1100"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "Head"
    ds = Dataset()
    ds.AnatomicRegionSequence = [item]
    assert not find_leaks(ds, ids)
    item.CodeMeaning = "Head Ysolde"
    assert find_leaks(ds, ids)


def test_a_code_string_spelling_the_patients_name_is_cleaned_and_checked() -> None:
    """Content Label (CS, not in Table E.1-1) is typed by a user: a GSPS labelled with the
    patient's family name loses it; a code that is only a short name part stays."""
    ds = _instance()
    ds.ContentLabel = "BRIGHTWATER"
    ds.add_new(0x00700084, "PN", "Brightwater^Ysolde")  # Content Creator's Name
    ds.BodyPartExamined = "HEAD"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "BRIGHTWATER_RT1"]
    outcome = process_instance(ds, _engine())
    assert isinstance(outcome, Clean)
    assert outcome.dataset.ContentLabel == "X"
    assert list(outcome.dataset.ImageType) == ["ORIGINAL", "PRIMARY", "X"]
    assert outcome.dataset.BodyPartExamined == "HEAD"

    ids = Identifiers()
    ids.add_value("Head^Ysolde", "PN")
    code = Dataset()
    code.BodyPartExamined = "HEAD"  # a name part of 4 letters is an ordinary code
    assert not find_leaks(code, ids)
    code.ContentLabel = "YSOLDE"
    assert [str(leak) for leak in find_leaks(code, ids)] == [
        "identifying value found at (0070,0080)"
    ]


def test_values_kept_by_the_profile_are_not_collected() -> None:
    ds = _instance()
    engine = _engine(Option.RETAIN_INSTITUTION_IDENTITY)
    ids = collect_identifiers(ds, engine.profile.keeps)
    assert "saint elsewhere general" not in ids.values
    assert isinstance(process_instance(ds, engine), Clean)


def test_leak_report_never_quotes_the_value() -> None:
    ds = _instance()
    ds.add_new(0x00282000, "OB", b"Brightwater ")
    outcome = process_instance(ds, _engine())
    assert isinstance(outcome, Quarantine)
    assert "brightwater" not in outcome.message.lower()
