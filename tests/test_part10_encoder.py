"""The fast Part 10 encoder writes exactly what dcmwrite writes, or declines (part10_encoder).

Every dataset is encoded twice from identical deep copies: by the encoder and by
`dcmwrite(fp, ds, enforce_file_format=True)`. The bytes must be equal; where the encoder
declines, `write_part10` (after the declined attempt changed what it changes) must still
write dcmwrite's bytes. Inputs: the shared test files as read, the same and synthetic studies
after the real engine (five profiles, the whole-file and the pixel-tail path), and datasets
built by hand for each kind of element.
"""

from __future__ import annotations

import copy
import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian as DEFLATED
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from pydicom.valuerep import DA, TM, DSfloat

import gateway.pipeline.files as files
import gateway.pipeline.pixel_tail as pixel_tail
from gateway.base.part10_encoder import part10_parts, write_part10
from gateway.deid.ctp.profile import load_script
from gateway.deid.profile import compile_profile, default_profile
from gateway.deid.profile_file import load_yaml_profile
from gateway.offline import EngineSettings
from gateway.tools.synthetic import make_ct_study, random_patient

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
SAMPLES = (
    sorted(p.name for p in TESTDATA.iterdir() if p.is_file() and p.suffix == ".dcm")
    if TESTDATA.is_dir()
    else []
)
CONF = Path(__file__).resolve().parents[1] / "conf" / "profiles"
SECRET = b"part10-encoder-test-secret-01234"
# Plain little endian files, native and encapsulated: these must take the fast path.
TYPICAL = {
    "CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "emri_small.dcm", "liver.dcm",
    "eCT_Supplemental.dcm", "SC_rgb.dcm", "US1_UNCR.dcm", "gdcm-US-ALOKA-16.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm", "examples_overlay.dcm", "test-SR.dcm", "rtplan.dcm",
    "priv_SQ.dcm", "UN_sequence.dcm", "explicit_VR-UN.dcm", "JPEG2000.dcm", "JPEG-LL.dcm",
    "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_jpeg_ls_lossless.dcm",
}  # fmt: skip


def _dcmwrite_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _where(ours: bytes, theirs: bytes) -> str:
    pairs = enumerate(zip(ours, theirs, strict=False))
    at = next((i for i, (x, y) in pairs if x != y), min(len(ours), len(theirs)))
    around = slice(max(at - 8, 0), at + 8)
    sizes = f"{len(ours)}, {len(theirs)} bytes"
    return f"differs at byte {at} ({sizes}): {ours[around]!r}, {theirs[around]!r}"


def outcome(ds: Dataset) -> str:
    """'fast' (the encoder's bytes are dcmwrite's) or 'declined'; fails on any difference."""
    ours, theirs = copy.deepcopy(ds), copy.deepcopy(ds)
    try:
        expected: bytes | None = _dcmwrite_bytes(theirs)
    except Exception:
        expected = None
    parts = part10_parts(ours)
    if parts is None:
        if expected is None:
            with pytest.raises(Exception):  # noqa: B017 - whatever dcmwrite raises
                write_part10(io.BytesIO(), ours)
        else:
            written = io.BytesIO()
            write_part10(written, ours)  # after the declined attempt's changes to `ours`
            assert written.getvalue() == expected, _where(written.getvalue(), expected)
        return "declined"
    assert expected is not None, "the encoder wrote a dataset that dcmwrite refuses"
    got = b"".join(parts)
    assert got == expected, _where(got, expected)
    written = io.BytesIO()
    write_part10(written, copy.deepcopy(ds))
    assert written.getvalue() == expected
    return "fast"


def _read(name: str) -> Dataset:
    try:
        return dcmread(TESTDATA / name)
    except InvalidDicomError:
        return dcmread(TESTDATA / name, force=True)


# --- 1. the shared test files, as read ------------------------------------------------------


@pytest.mark.skipif(not SAMPLES, reason=f"no test data at {TESTDATA}")
def test_every_test_file_as_read() -> None:
    seen: dict[str, str] = {}
    for name in SAMPLES:
        try:
            ds = _read(name)
        except Exception:
            continue  # pydicom cannot read it at all
        seen[name] = outcome(ds)
    fast = {name for name, how in seen.items() if how == "fast"}
    assert TYPICAL & set(seen) <= fast, sorted((TYPICAL & set(seen)) - fast)
    assert len(fast) >= 40, (len(fast), len(seen))
    declined = {name for name, how in seen.items() if how == "declined"}
    assert {"MR_small_bigendian.dcm", "image_dfl.dcm"} & set(seen) <= declined


@pytest.mark.skipif(not SAMPLES, reason=f"no test data at {TESTDATA}")
def test_every_test_file_re_encoded() -> None:
    """Written in the other little endian syntax: dcmwrite converts every raw element."""
    seen: Counter[str] = Counter()
    for name in SAMPLES:
        try:
            ds = _read(name)
            syntax = ds.file_meta.TransferSyntaxUID
        except Exception:
            continue
        if syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
            other = {ImplicitVRLittleEndian: ExplicitVRLittleEndian}.get(syntax)
            ds.file_meta.TransferSyntaxUID = other or ImplicitVRLittleEndian
            seen[outcome(ds)] += 1
    assert seen["fast"] >= 15, seen


# --- 2. after the real engine -------------------------------------------------------------------


PROFILES: dict[str, Callable[[], object]] = {
    "default": default_profile,
    "basic": lambda: compile_profile([], name="basic"),
    "fake-names": lambda: load_yaml_profile(CONF / "registry-fake-names.yaml"),
    "longitudinal": lambda: load_yaml_profile(CONF / "research-longitudinal.yaml"),
    "ctp-script": lambda: load_script(CONF / "research-federation.script"),
}


@pytest.mark.parametrize(
    ("profile", "large"),
    [(name, False) for name in PROFILES] + [("default", True), ("fake-names", True)],
    ids=[*PROFILES, "default-pixel-tail", "fake-names-pixel-tail"],
)
def test_deidentified_instances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: str, large: bool
) -> None:
    files.init_worker(EngineSettings(PROFILES[profile](), SECRET, "SITE", tmp_path / "storage"))
    if large:
        monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 10)
    seen: Counter[str] = Counter()
    failures: list[str] = []
    real = files.write_part10

    def checked(handle: io.BufferedIOBase, ds: Dataset) -> None:
        try:  # the writer's caller would hold a failure as the instance's (quarantine)
            how = outcome(ds)
            seen[how] += 1
            if ds.file_meta.TransferSyntaxUID not in (ExplicitVRBigEndian, DEFLATED):
                assert how == "fast", ds.file_meta.TransferSyntaxUID
        except BaseException as exc:
            failures.append(repr(exc))
            raise
        real(handle, ds)

    monkeypatch.setattr(files, "write_part10", checked)
    sources = make_ct_study(
        tmp_path / "in", instances=3, rows=32, columns=32, patient=random_patient(7), seed=7
    )
    if not large or profile == "default":  # (the pixel-tail path: large instances only)
        sources += [TESTDATA / name for name in SAMPLES]
    out = tmp_path / "out"
    statuses = Counter(
        files.deidentify_file(s, lambda r: out / f"{r.sop_instance_uid}.dcm", "offline").status
        for s in sources
    )
    assert not failures, failures
    assert statuses["written"] >= 3, statuses
    assert seen["fast"] >= statuses["written"] - 2, (seen, statuses)


# --- 3. built by hand -------------------------------------------------------------------------


def _base(syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6"  # differs from the file meta: dcmwrite updates it
    ds.PatientID = "ID1"
    return ds


def _strings(ds: Dataset) -> None:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.OtherPatientIDs = ["A1", "B22", ""]
    ds.StudyDescription = "odd"
    ds.SeriesDescription = "even"
    ds.AccessionNumber = "A"
    ds.StationAETitle = "AE1"
    ds.PatientAge = "042Y"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010.5"
    ds.AcquisitionDateTime = "20240102101010"
    ds.ReferencedFrameNumber = ["1", "2"]
    ds.FrameOfReferenceUID = "1.2.3"
    ds.ImageComments = "line one\r\nline two\\with a backslash"
    ds.AdditionalPatientHistory = "x" * 301
    ds.add_new(0x00081190, "UR", "http://example.org/a b")
    ds.add_new(0x00080119, "UC", "long code value")
    ds.add_new(0x00081082, "LT", "")  # empty
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.SoftwareVersions = b"raw bytes!"


def _person_names(charset: str | list[str]) -> Callable[[Dataset], None]:
    def build(ds: Dataset) -> None:
        ds.SpecificCharacterSet = charset
        if charset == "ISO_IR 100":
            ds.PatientName = "Müller^Jürgen^Ö"
            ds.OtherPatientNames = ["Ñandú^Zoë", "Ærø^Å"]
            ds.InstitutionName = "Hôpital Général"
        elif charset == "ISO_IR 192":
            ds.PatientName = "山田^太郎=やまだ^たろう"
            ds.OtherPatientNames = ["Łukasz^Żółć", "Ελένη^Παπαδοπούλου"]
            ds.InstitutionName = "Klinikum Süd — 東京"
        else:
            ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
            ds.InstitutionName = "山田病院"
        ds.ReferringPhysicianName = ""
        ds.PerformingPhysicianName = ["A^B", "C^D^E"]

    return build


def _numbers(ds: Dataset) -> None:
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = [DSfloat("0.5"), DSfloat(0.4882812)]
    ds.ImagePositionPatient = ["-125.0", "0", "1e3"]
    ds.RescaleSlope = 1
    ds.InstanceNumber = 7
    ds.ReferencedFrameNumber = [1, 2, 3]
    ds.Rows, ds.Columns = 4, 4
    ds.add_new(0x00189219, "SS", -5)  # Tag Angle Second Axis
    ds.add_new(0x00660040, "UL", [1, 2, 3])
    ds.add_new(0x00189306, "FD", [1.5, -2.25])
    ds.add_new(0x00720076, "FL", 3.14)
    ds.add_new(0x00660021, "FL", [1.0, 2.0, 3.0])
    ds.add_new(0x00189508, "SL", -70000)
    ds.add_new(0x00720026, "AT", 0x00100010)
    ds.add_new(0x00209165, "AT", [0x00100010, 0x00100020])
    ds.add_new(0x00460094, "US", [1, 65535])
    ds.add_new(0x00189937, "UV", 2**40)
    ds.add_new(0x00189938, "SV", -(2**40))
    ds.add_new(0x00660023, "OF", b"\x00\x00\x80\x3f")
    ds.add_new(0x00660024, "OD", b"\x00" * 8)
    ds.add_new(0x00660016, "OL", b"\x01\x00\x00\x00")
    ds.add_new(0x00660041, "OV", b"\x02" * 8)
    ds.add_new(0x00189219 + 1, "SS", [-1, 2])


def _sequences(ds: Dataset) -> None:
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "121", "DCM", "Odd"
    deeper = Dataset()
    deeper.ReferencedSOPInstanceUID = "1.2.3.4"
    deeper.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    undefined_item = Dataset()
    undefined_item.is_undefined_length_sequence_item = True
    undefined_item.ReferencedSOPSequence = Sequence([deeper])
    undefined_item[0x00081199].is_undefined_length = True
    inner.ContentSequence = Sequence([undefined_item, Dataset()])
    ds.ConceptNameCodeSequence = Sequence([inner])
    ds.ProcedureCodeSequence = Sequence([])
    ds.ReferencedStudySequence = Sequence([])
    ds[0x00081110].is_undefined_length = True
    ds.AnatomicRegionSequence = Sequence([copy.deepcopy(inner), copy.deepcopy(deeper)])
    ds[0x00082218].is_undefined_length = True


def _empty_values(ds: Dataset) -> None:
    ds.PatientName = ""
    ds.PatientBirthDate = ""
    ds.PatientWeight = None
    ds.InstanceNumber = None
    ds.Rows = None
    ds.add_new(0x00660023, "OF", b"")
    ds.add_new(0x00720026, "AT", None)
    ds.add_new(0x00189306, "FD", [])
    ds.ImageType = []


def _private(ds: Dataset) -> None:
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "private text")
    block.add_new(0x02, "US", 12)
    block.add_new(0x03, "UN", b"\x01\x02\x03")  # odd: UN is written unpadded
    block.add_new(0x04, "SQ", Sequence([Dataset()]))
    ds.add_new(0x00111010, "UN", b"unknown")


def _un_elements(ds: Dataset) -> None:
    ds.add_new(0x00100010, "UN", b"Doe^John")
    ds.add_new(0x00291010, "UN", b"\x00" * 70_001)


def _long_values(ds: Dataset) -> None:
    ds.ImageComments = "y" * 70_000  # LT has a 2-byte length: dcmwrite makes it UN
    ds.add_new(0x00291010, "OB", b"\x01" * 70_001)


def _lut_descriptor(ds: Dataset) -> None:
    ds.PixelRepresentation = 1
    ds.BitsAllocated = 16
    item = Dataset()
    item.LUTDescriptor = [40000, -2048, 16]  # 'US or SS', the first always unsigned
    item.LUTData = b"\x01\x00\x02\x00"  # 'US or OW': OW, as the first value is not 1
    ds.VOILUTSequence = Sequence([item])
    ds.SmallestImagePixelValue = -100  # 'US or SS' at the top level


def _pixels(ds: Dataset) -> None:
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 2, 3, 8, 8, 7
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(6))
    ds[0x7FE00010].VR = "OB"


def _encapsulated(ds: Dataset) -> None:
    _pixels(ds)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8jpeg-ish\xff\xd9", b"\xff\xd8odd\xff\xd9!"])


def _group_lengths(ds: Dataset) -> None:
    ds.add_new(0x00080000, "UL", 1234)  # retired: never written
    ds.file_meta.FileMetaInformationGroupLength = 999
    ds.file_meta.ImplementationVersionName = "X"
    ds.file_meta.SourceApplicationEntityTitle = "SRC"


def _dates_as_objects(ds: Dataset) -> None:
    ds.StudyDate = DA("20240102")  # config.datetime_conversion's values: left to dcmwrite
    ds.StudyTime = TM("101010")


def _item_charset(ds: Dataset) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item.PatientName = "Łukasz^Żółć"
    plain = Dataset()
    plain.PersonName = "Hôpital^Général"  # the parent's character set
    ds.ContentSequence = Sequence([item, plain])


def _preamble(ds: Dataset) -> None:
    ds.preamble = b"\x01" * 128


HAND_BUILT: dict[str, tuple[Callable[[Dataset], None], bool]] = {
    # name: (what is added, whether the fast path must take it)
    "strings": (_strings, True),
    "dates-as-objects": (_dates_as_objects, False),
    "item-charset": (_item_charset, True),
    "pn-latin1": (_person_names("ISO_IR 100"), True),
    "pn-utf8": (_person_names("ISO_IR 192"), True),
    "pn-iso2022": (_person_names(["", "ISO 2022 IR 87"]), True),
    "numbers": (_numbers, True),
    "sequences": (_sequences, True),
    "empty": (_empty_values, True),
    "private": (_private, True),
    "un": (_un_elements, True),
    "long-values": (_long_values, True),
    "lut-descriptor": (_lut_descriptor, True),
    "pixels": (_pixels, True),
    "encapsulated": (_encapsulated, True),
    "group-lengths": (_group_lengths, True),
    "preamble": (_preamble, True),
}


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("name", sorted(HAND_BUILT))
def test_hand_built(name: str, syntax: str) -> None:
    build, must_be_fast = HAND_BUILT[name]
    ds = _base(syntax)
    build(ds)
    how = outcome(ds)
    assert how == "fast" or not must_be_fast


def test_read_then_modified(tmp_path: Path) -> None:
    """Raw elements next to changed ones, as the engine leaves them."""
    source = make_ct_study(tmp_path, instances=1, rows=8, columns=8, seed=3)[0]
    for syntax in (None, ImplicitVRLittleEndian, ExplicitVRLittleEndian):
        ds = dcmread(source)
        if syntax is not None:  # re-encoded from its values: every raw element converted
            ds.file_meta.TransferSyntaxUID = syntax
        ds.PatientName = "Changed^Name"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        del ds[0x00100020]
        ds.DeidentificationMethodCodeSequence = Sequence([Dataset()])
        ds.DeidentificationMethodCodeSequence[0].CodeValue = "113100"
        assert outcome(ds) == "fast"
    ds = dcmread(source)
    ds.SpecificCharacterSet = "ISO_IR 192"  # a new character set: re-encoded as well
    ds.PatientName = "Łukasz^Żółć"
    assert outcome(ds) == "fast"


@pytest.mark.parametrize("syntax", [ExplicitVRBigEndian, DEFLATED])
def test_declined_syntaxes(syntax: str) -> None:
    ds = _base(syntax)
    _numbers(ds)
    assert outcome(ds) == "declined"


def test_declined_without_file_meta_or_with_deferred_values(tmp_path: Path) -> None:
    ds = _base()
    del ds.file_meta
    assert outcome(ds) == "declined"
    source = make_ct_study(tmp_path, instances=1, rows=32, columns=32, seed=4)[0]
    deferred = dcmread(source, defer_size=4)  # values left in the file
    assert outcome(deferred) == "declined"
    deferred = dcmread(source, defer_size=256)  # only Pixel Data: read by dcmwrite itself
    assert outcome(deferred) == "fast"
    ambiguous = _base()
    ambiguous.PixelData = b"\x00\x01"  # 'OB or OW' in a dataset read from nowhere: fixed
    ambiguous.BitsAllocated = 16
    assert outcome(ambiguous) == "fast"
    buffered = _base()  # (no deep copy of a buffer: checked on its own)
    buffered.add_new(0x00660023, "OF", io.BufferedReader(io.BytesIO(b"\x00" * 8)))
    assert part10_parts(buffered) is None


def test_a_created_un_element_and_odd_lengths() -> None:
    ds = _base()
    ds.add(DataElement(0x00431001, "UN", b"\x05\x06\x07"))
    ds.add(DataElement(0x00431002, "OB", b"\x05\x06\x07"))
    ds.add(DataElement(0x00431003, "LO", "abc"))
    assert outcome(ds) == "fast"
