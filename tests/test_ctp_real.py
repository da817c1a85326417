"""CTP scripts give, element by element, what the real CTP gave for the same inputs.

tests/data/ctp/real/<script>/<file> are outputs of RSNA CTP's own DICOMAnonymizer (see
tests/data/ctp/README.md for how they were made). The inputs are rebuilt here exactly as they
were for CTP: a shared sample file with the planted identifiers of conftest.py and
`extra_plant`. Values that depend on the clock (@date, @time) are not in these scripts.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import plant_identifiers
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from gateway.base.identifiers import collect_identifiers
from gateway.deid.ctp.profile import load_script
from gateway.deid.engine import DeidError
from gateway.deid.pseudonyms import Pseudonyms

DATA = Path(__file__).parent / "data" / "ctp"
REAL = DATA / "real"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata"
INPUTS = ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "test-SR.dcm")
CONF = Path(__file__).resolve().parents[1] / "conf" / "profiles"
# script name -> (script file, lookup table)
SCRIPTS = {
    "research-federation": (CONF / "research-federation.script", None),
    "every-function": (DATA / "every-function.script", DATA / "every-function.lookup.properties"),
    "edge-cases": (DATA / "edge-cases.script", DATA / "edge-cases.lookup.properties"),
    "global-removals": (DATA / "global-removals.script", None),
    "text-and-dates": (DATA / "text-and-dates.script", None),
}
STRICTER = {"strict-differences": (DATA / "strict-differences.script", None)}


def extra_plant(ds: Dataset) -> None:
    """Values some functions need that the shared planting does not give."""
    ds.PatientAge = "047Y"
    ds.PatientSex = "F"
    ds.DerivationDescription = "/archive/site42/2023/scan0001.dcm"
    ds.OperatorsName = "Plimquist^Odena^Marie"


SYNTHETIC = "synthetic.dcm"


def synthetic_input() -> Dataset:
    """A small instance with what the global removals act on: overlays, a curve, private
    blocks (one with an attribute safe in PS3.15 and in CTP's dictionary), a sequence."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.999.1.1"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.999.1.1"
    ds.StudyDate = "20040119"
    ds.StudyInstanceUID = "1.2.999.1.2"
    ds.SeriesInstanceUID = "1.2.999.1.3"
    ds.Modality = "OT"
    ds.PatientName = "Zyxwick^Quorbelle"
    ds.PatientID = "ZQ-998877-X"
    ds.PatientSex = "F"
    ds.SliceThickness = "5"
    item = Dataset()
    item.PatientID = "ZQ-554433-Y"
    item.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([item])
    ds.private_block(0x0011, "PHI_TEST", create=True).add_new(0x01, "LO", "Zyxwick")
    ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0x23, "DS", "1.5")
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 2, 2, 8, 8, 7
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.add_new(0x50000005, "US", 1)
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60000011, "US", 2)
    ds.add_new(0x60003000, "OW", b"\x00\x01")
    ds.PixelData = b"\x00\x01\x02\x03"
    return ds


SYNTHETIC_UNICODE = "synthetic-unicode.dcm"


def synthetic_unicode_input() -> Dataset:
    """UTF-8 names, a multi-valued date and date-times, for the text and date functions."""
    ds = synthetic_input()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.999.1.9"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller-Łukasz^Jürgen Ådne^^Dr.^"
    ds.InstitutionName = "Hôpital Saint-Éloi"
    ds.DateOfLastCalibration = ["20200101", "20210615"]
    ds.AcquisitionDateTime = "20040119235959.123456+0100"
    ds.ContentDate = "20041231"
    ds.PatientAge = "089Y"
    return ds


SYNTHETIC_INPUTS = {SYNTHETIC: synthetic_input, SYNTHETIC_UNICODE: synthetic_unicode_input}


def planted_input(name: str) -> Dataset:
    """The input CTP was given: a shared file with every planted identifier."""
    if name in SYNTHETIC_INPUTS:
        return SYNTHETIC_INPUTS[name]()
    ds = dcmread(SHARED / name, force=True)
    plant_identifiers(ds)
    extra_plant(ds)
    return ds


def write_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def flatten(ds: Dataset, path: str = "") -> Iterator[tuple[str, str, str]]:
    """(tag path, VR, value text) of every element at every depth, file meta left out."""
    for elem in ds:
        if elem.tag >> 16 == 0x0002 or elem.tag & 0xFFFF == 0:
            continue
        where = f"{path}({elem.tag >> 16:04X},{elem.tag & 0xFFFF:04X})"
        if elem.VR == "SQ":
            items = elem.value or Sequence()
            yield where, "SQ", str(len(items))
            for index, item in enumerate(items):
                yield from flatten(item, f"{where}[{index}]")
            continue
        value = elem.value
        if isinstance(value, bytes):
            text = value.hex() if elem.tag >> 16 != 0x7FE0 else str(len(value))
        elif isinstance(value, MultiValue | list):
            text = "\\".join(str(v) for v in value)
        else:
            text = "" if value is None else str(value)
        yield where, str(elem.VR), text.strip(" \x00")


def input_bytes(name: str) -> bytes:
    ds = planted_input(name)
    if name in SYNTHETIC_INPUTS:
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()
    return write_bytes(ds)


def ours(script: str, name: str) -> Dataset:
    path, table = {**SCRIPTS, **STRICTER}[script]
    profile = load_script(path, table)
    engine = profile.build_engine(Pseudonyms(b"k" * 32, "site"))
    ds = dcmread(io.BytesIO(input_bytes(name)), force=True)
    engine.deidentify(ds, collect_identifiers(ds, profile.keeps))
    return dcmread(io.BytesIO(write_bytes(ds)), force=True)


CASES = [
    (s, n) for s in SCRIPTS for n in (*INPUTS, *SYNTHETIC_INPUTS) if (REAL / s / n).exists()
]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/testdata not present")
@pytest.mark.parametrize(("script", "name"), CASES)
def test_output_equals_real_ctp(script: str, name: str) -> None:
    expected = {p: (vr, v) for p, vr, v in flatten(dcmread(REAL / script / name, force=True))}
    got = {p: (vr, v) for p, vr, v in flatten(ours(script, name))}
    assert sorted(got) == sorted(expected)
    differ = {
        p: (got[p], expected[p])
        for p in expected
        if got[p] != expected[p] and not _unrepresentable(got[p], expected[p])
    }
    assert differ == {}


def _unrepresentable(got: tuple[str, str], expected: tuple[str, str]) -> bool:
    """CTP writes text that is no number into a DS/IS element; pydicom cannot hold that, so
    the same text is written as LO (only for private elements, as CTP's fallback does)."""
    return got == ("LO", expected[1]) and expected[0] in ("DS", "IS")


def test_where_the_gateway_is_stricter_than_ctp_and_nowhere_else() -> None:
    script = "strict-differences"
    expected = {p: v for p, _vr, v in flatten(dcmread(REAL / script / SYNTHETIC, force=True))}
    got = {p: v for p, _vr, v in flatten(ours(script, SYNTHETIC))}
    # CTP kept the sequence's item and the curve; the gateway empties and removes them.
    assert {p for p in expected if p not in got} == {
        "(0010,1002)[0](0010,0020)", "(0010,1002)[0](0010,0022)", "(5000,0005)"
    }
    assert (expected["(0010,1002)"], got["(0010,1002)"]) == ("1", "0")
    assert {p: v for p, v in got.items() if p != "(0010,1002)"} == {
        p: v for p, v in expected.items() if p in got and p != "(0010,1002)"
    }


def _statuses() -> list[tuple[str, str, str]]:
    rows = (REAL / "STATUS.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(row.split("\t")[:3]) for row in rows if row]  # type: ignore[misc]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/testdata not present")
def test_what_real_ctp_quarantined_is_held_and_what_it_passed_is_not() -> None:
    statuses = _statuses()
    assert {status for _s, _n, status in statuses} == {"OK", "QUARANTINE"}
    for script, name, status in statuses:
        if status == "QUARANTINE":
            with pytest.raises(DeidError, match="CTP would quarantine"):
                ours(script, name)
        else:
            assert (REAL / script / name).exists()


def test_real_ctp_outputs_are_present() -> None:
    assert len(CASES) >= 8, "tests/data/ctp/real holds the real CTP outputs"
