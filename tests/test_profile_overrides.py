"""Profile files: overrides by keyword, tag, group pattern, private creator and sequence
path; fake values, fixed text and allow lists; every problem reported with file and key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence

from gateway.base.identifiers import collect_identifiers
from gateway.deid import fakes
from gateway.deid.profile import CsvRules, ProfileError
from gateway.deid.profile_loading import load_profile
from gateway.deid.pseudonyms import Pseudonyms

SECRET = b"profile-overrides-test-secret-0123"
NAME = "Zyxwick^Quorbelle"
REFERRING = "Vexmoor^Alaric"
INSTITUTION = "Glimmerdale Infirmary"
STUDY_UID_REF = "1.2.826.0.1.3680043.2.1125.55.1"
IMAGE_UID_REF = "1.2.826.0.1.3680043.2.1125.55.2"

PROFILE = """
base: basic
options: [retain_longitudinal_modified_dates]
overrides:
  InstitutionName: {replace: INSTITUTION}
  (0008,0090): {replace: FULL_NAME}            # Referring Physician's Name, by tag
  00081070: {replace: "OPERATOR"}              # Operators' Name, by tag without punctuation
  StudyDescription:
    clean:
      allow: ["CT CHEST W/CONTRAST", {regex: "MR (BRAIN|KNEE)"}]
      fallback: "OTHER"
  SeriesDescription: {clean: {allow: ["AX T1"], fallback: empty}}
  ProtocolName: {clean: {allow: ["ROUTINE"], fallback: remove}}
  ImageComments: {clean: {allow: ["OK", "GOOD"]}}
  (0018,1xxx): Z                               # group pattern over the table and beyond
  DeviceSerialNumber: X                        # exact tag wins over the group pattern
  (0019,"GEMS_ACQU_01",23): K                  # private, by creator
  (0043,xxxx): K                               # private group pattern
  ReferencedImageSequence: U                   # kept, its UIDs remapped
  ReferencedStudySequence: U                   # kept, its UIDs remapped ...
  ReferencedStudySequence/*/ReferencedSOPInstanceUID: K   # ... except this one
  AccessionNumber: {replace: ID_ALPHANUMERICAL}
  StudyID: {replace: ID_NUMERICAL}
acknowledge: [InstitutionName, ReferringPhysicianName, StudyDescription, SeriesDescription,
              ProtocolName, ImageComments, private, AccessionNumber, StudyID,
              ReferencedStudySequence, ReferencedImageSequence,
              ReferencedStudySequence/*/ReferencedSOPInstanceUID]
clinical_csv: {id_column: MRN, date_columns: [visit], drop_columns: [name]}
"""


def _profile(tmp_path: Path, text: str = PROFILE, name: str = "site.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_profile(path)


def _instance() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.55.9"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.55.8"
    ds.PatientName = NAME
    ds.PatientID = "ZQ-998877-X"
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = REFERRING
    ds.OperatorsName = ["Plimquist^Odena", "Trazzle^Bemwick"]
    ds.StudyDescription = "MR KNEE"
    ds.SeriesDescription = "Zyxwick follow-up"
    ds.ProtocolName = "Quorbelle special"
    ds.ImageComments = "Seen with Zyxwick"
    ds.AccessionNumber = "ACZQ7788123"
    ds.StudyID = "4711"
    ds.DeviceSerialNumber = "SN-ZQ-4455"
    ds.SoftwareVersions = "VX 1.2"  # (0018,1020): not in Table E.1-1, matched by (0018,1xxx)
    ds.KVP = "120"  # (0018,0060): outside the pattern, kept
    ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0x23, "DS", "5.0")
    ds.private_block(0x0019, "GEMS_ACQU_01").add_new(0x24, "LO", NAME)
    ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x27, "SH", "1.375:1")
    ds.private_block(0x0045, "OTHER_VENDOR", create=True).add_new(0x01, "LO", NAME)
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = STUDY_UID_REF
    ds.ReferencedStudySequence = Sequence([study_ref])
    image_ref = Dataset()
    image_ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    image_ref.ReferencedSOPInstanceUID = IMAGE_UID_REF
    ds.ReferencedImageSequence = Sequence([image_ref])
    return ds


def _run(profile, ds: Dataset | None = None) -> tuple[Dataset, object, bytes]:
    ds = ds if ds is not None else _instance()
    engine = profile.build_engine(Pseudonyms(SECRET, "OVR-SITE"))
    result = engine.deidentify(ds, collect_identifiers(ds, profile.keeps))
    buffer = io.BytesIO()
    dcmwrite(buffer, ds)
    return ds, result, buffer.getvalue()


def test_every_selector_kind_applies_its_action(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    ds, result, encoded = _run(profile)
    pseudonyms = Pseudonyms(SECRET, "OVR-SITE")
    assert ds.InstitutionName == fakes.fake_value(
        "INSTITUTION", INSTITUTION, "LO", pseudonyms.fake_digest
    )
    surname, given = str(ds.ReferringPhysicianName).split("^")
    assert surname in fakes.words("surnames") and given in fakes.words("given_names")
    assert ds.OperatorsName == "OPERATOR"
    assert ds.StudyDescription == "MR KNEE"  # allowed by the regular expression
    assert ds.SeriesDescription == ""  # not allowed, fallback empty
    assert "ProtocolName" not in ds  # not allowed, fallback remove
    assert "ImageComments" not in ds  # default fallback: remove
    assert ds.SoftwareVersions == ""  # (0018,1xxx): Z
    assert "DeviceSerialNumber" not in ds  # exact X over the pattern's Z
    assert ds.KVP == "120"
    assert len(ds.AccessionNumber) == 10 and ds.AccessionNumber != "ACZQ7788123"
    assert str(ds.StudyID).isdigit() and ds.StudyID != "4711"
    # Private: the named element and the pattern's group stay with their creators.
    ge = ds.private_block(0x0019, "GEMS_ACQU_01")
    assert ds[ge.get_tag(0x23)].value == "5.0"
    assert ge.get_tag(0x24) not in ds
    assert ds[ds.private_block(0x0043, "GEMS_PARM_01").get_tag(0x27)].value == "1.375:1"
    assert not [t for t in ds.keys() if t.group == 0x0045]  # noqa: SIM118
    # The path override keeps the UID only inside Referenced Study Sequence.
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == STUDY_UID_REF
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == pseudonyms.uid(IMAGE_UID_REF)
    assert STUDY_UID_REF in result.kept_uids and IMAGE_UID_REF in result.remapped_uids
    assert ds.PatientName == ds.PatientID == result.patient_pseudonym
    lowered = encoded.lower()
    for original in (b"zyxwick", b"quorbelle", b"vexmoor", b"glimmerdale", b"plimquist",
                     b"aczq7788123", b"sn-zq-4455", IMAGE_UID_REF.encode()):
        assert original not in lowered, original
    assert profile.csv == CsvRules("MRN", ("visit",), ("name",))


def test_allow_list_passes_exact_values_and_replaces_the_rest_with_the_fallback(
    tmp_path: Path,
) -> None:
    profile = _profile(tmp_path)
    ds = _instance()
    ds.StudyDescription = "CT CHEST W/CONTRAST"
    ds.SeriesDescription = "AX T1"
    _run(profile, ds)
    assert ds.StudyDescription == "CT CHEST W/CONTRAST" and ds.SeriesDescription == "AX T1"
    ds = _instance()
    ds.StudyDescription = "CT CHEST for Zyxwick"
    _run(profile, ds)
    assert ds.StudyDescription == "OTHER"
    ds = _instance()
    ds.StudyDescription = "MR BRAIN and more"  # the regex must match the whole value
    _run(profile, ds)
    assert ds.StudyDescription == "OTHER"


def test_fakes_are_the_same_on_every_run_and_differ_between_originals(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    first, _, _ = _run(profile)
    second, _, _ = _run(profile)
    assert first.InstitutionName == second.InstitutionName
    other = _instance()
    other.InstitutionName = "Another Hospital"
    third, _, _ = _run(profile, other)
    assert third.InstitutionName != first.InstitutionName


def test_keeps_and_reviewer_codes_follow_the_overrides(tmp_path: Path) -> None:
    profile = _profile(tmp_path)
    assert profile.keeps(0x00081030)  # an allow list lets allowed values through verbatim
    assert not profile.keeps(0x00080080)  # a fake keeps nothing
    assert profile.effective_action(0x00080080) == "D"
    assert profile.effective_action(0x00081030) == "C"
    assert profile.effective_action(0x00181000) == "X"
    assert profile.effective_action(0x00181008) == "Z"  # table row matched by the pattern
    assert profile.effective_pattern_action("(gggg,eeee) where gggg is odd") == "K"
    assert profile.path_overrides() == (
        ("ReferencedStudySequence/*/ReferencedSOPInstanceUID", "K"),
    )
    assert "InstitutionName" in profile.acknowledged


BAD = """
base: extended
options: [retain_everything]
colour: blue
overrides:
  PatientNmae: X
  (0008,10): X
  PatientName: K
  StudyDate: {replace: SURNAME}
  StationName: {replace: "A NAME THAT IS FAR TOO LONG FOR SH"}
  StudyDescription: {clean: {allow: [{regex: "("}], fallback: remove}}
  SeriesDescription: {clean: {allow: []}}
  Modality: U
  InstitutionName: keep
  (0008,"SOMEONE",10): K
  (0002,xxxx): X
  PatientAge/*/PatientSex: K
  ReferencedStudySequence/0/ReferencedSOPInstanceUID: K
  AccessionNumber: {remove: yes}
  StudyTime: {replace: "25:00"}
acknowledge: [Nonsense]
strict: maybe
clinical_csv: {id_column: "", date_columns: visit, extra: 1}
"""


def test_every_problem_is_reported_with_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        _profile(tmp_path, BAD, "bad.yaml")
    where = str(tmp_path / "bad.yaml")
    problems = caught.value.problems
    expected_keys = [
        "'colour': unknown key",
        "'base': 'extended' is not a known base",
        "'options.0': 'retain_everything' is not an option",
        "'overrides.PatientNmae': 'PatientNmae' is not a DICOM keyword",
        "'overrides.(0008,10)': not an attribute",
        "'overrides.PatientName': Patient's Name and Patient ID always get the site pseudonym",
        "'overrides.StudyDate.replace': SURNAME cannot fill a DA value",
        "'overrides.StationName.replace': 34 characters, SH allows 16",
        "'overrides.StudyDescription.clean.allow.0': not a regular expression",
        "'overrides.SeriesDescription.clean.allow': a non-empty list",
        "'overrides.Modality': U (remap UIDs) applies to UI attributes, not CS",
        "'overrides.InstitutionName': 'keep' is not an action",
        "'overrides.(0008,\"SOMEONE\",10)': group 0008 is not a private (odd) group",
        "'overrides.(0002,xxxx)': groups 0000-0002 are rebuilt by the gateway",
        "'overrides.PatientAge/*/PatientSex': PatientAge is not a sequence",
        "'overrides.ReferencedStudySequence/0/ReferencedSOPInstanceUID': a path is",
        "'overrides.AccessionNumber': 'remove' is not an action",
        "'overrides.StudyTime.replace': '25:00' is not a valid TM value",
        "'acknowledge.0': 'Nonsense' is not a keyword",
        "'strict': true or false",
        "'clinical_csv.extra': unknown key",
        "'clinical_csv.id_column': a column name",
        "'clinical_csv.date_columns': a list of column names",
    ]
    for key in expected_keys:
        assert any(p.startswith(f"{where}: {key}") for p in problems), (key, problems)
    assert len(problems) == len(expected_keys), problems


def test_a_path_under_a_sequence_the_profile_removes_is_an_error(tmp_path: Path) -> None:
    text = "overrides:\n  RequestAttributesSequence/*/RequestedProcedureID: K\n"
    with pytest.raises(ProfileError) as caught:
        _profile(tmp_path, text, "unreachable.yaml")
    assert caught.value.problems == [
        f"{tmp_path / 'unreachable.yaml'}: 'overrides.RequestAttributesSequence/*/"
        "RequestedProcedureID': RequestAttributesSequence is removed (X) by this profile, so "
        "the override never applies"
    ]
    # Kept by Clean Descriptors (C): the path applies inside it.
    kept = _profile(tmp_path, "options: [clean_descriptors]\n" + text, "reachable.yaml")
    assert kept.path_overrides() == (("RequestAttributesSequence/*/RequestedProcedureID", "K"),)


def test_the_default_profile_file_is_the_built_in_default() -> None:
    shipped = load_profile(Path(__file__).resolve().parents[1] / "conf/profiles/default.yaml")
    built_in = load_profile(None)
    assert shipped.options == built_in.options
    assert {o.value for o in built_in.options} == {
        "retain_longitudinal_modified_dates",
        "retain_patient_characteristics",
        "clean_descriptors",
    }
    assert shipped.actions == built_in.actions


def test_multi_valued_allow_list_and_private_values_a_rule_cannot_fill(tmp_path: Path) -> None:
    text = (
        "overrides:\n"
        "  ImageType: {clean: {allow: [ORIGINAL, PRIMARY, AXIAL], fallback: OTHER}}\n"
        "  OtherPatientIDs: {replace: ID_ALPHANUMERICAL}\n"
        '  (0019,"ACME",01): {replace: SURNAME}\n'
        '  (0019,"ACME",02): {clean: {allow: ["1.0"]}}\n'
        "acknowledge: [ImageType, private]\n"
    )
    profile = _profile(tmp_path, text)
    ds = _instance()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ZYXWICK"]
    ds.OtherPatientIDs = ["ZQ-554433-Y", "ZQ-554433-Z"]
    block = ds.private_block(0x0019, "ACME", create=True)
    block.add_new(0x01, "SS", 7)  # a number: no surname fits, so the element goes
    block.add_new(0x02, "UN", b"Zyxwick ")  # not text: an allow list cannot vet it
    block.add_new(0x03, "LO", NAME)  # not named: the private row removes it
    _, _, encoded = _run(profile, ds)
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "OTHER"]
    ids = list(ds.OtherPatientIDs)
    assert len(ids) == 2 and len(set(ids)) == 2 and not any(i.startswith("ZQ") for i in ids)
    assert not [t for t in ds.keys() if t.group == 0x0019 and t.element > 0xFF]  # noqa: SIM118
    assert b"zyxwick" not in encoded.lower() and b"zq-554433" not in encoded.lower()
