"""An input without file meta leaves a CTP script as CTP writes it: Explicit VR Little Endian.

CTP's DICOMAnonymizer writes an object that came without file meta (no transfer syntax) in
Explicit VR Little Endian, Pixel Data as OB when Bits Allocated is 8 or less and OW above.
The gateway kept the implicit VR it had guessed; YAML profiles still do (unchanged).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_ctp_real import CONF, flatten, synthetic_input

from gateway.base.identifiers import collect_identifiers
from gateway.deid.ctp.profile import load_script
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.files import encode, read_instance
from gateway.pipeline.instance import Clean, process_instance

SCRIPT = CONF / "research-federation.script"
PSEUDONYMS = Pseudonyms(b"k" * 32, "site")


def _without_meta(tmp_path: Path, bits: int) -> Path:
    """A bare data set (no preamble, no file meta) in Implicit VR Little Endian."""
    ds = synthetic_input()
    del ds.file_meta
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelData = b"\x00\x01\x02\x03" * (bits // 8)
    path = tmp_path / f"bare-{bits}.dcm"
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    path.write_bytes(buffer.getvalue())
    return path


def _through(path: Path, engine) -> Dataset:
    ds = read_instance(path)
    assert isinstance(ds, Dataset) and not ds.file_meta.get("TransferSyntaxUID")
    outcome = process_instance(ds, engine)
    assert isinstance(outcome, Clean), outcome
    return dcmread(io.BytesIO(encode(outcome.dataset)))


@pytest.mark.parametrize(("bits", "pixel_vr"), [(8, "OB"), (16, "OW")])
def test_a_ctp_script_writes_an_input_without_file_meta_in_explicit_vr(
    tmp_path: Path, bits: int, pixel_vr: str
) -> None:
    written = _through(_without_meta(tmp_path, bits), load_script(SCRIPT).build_engine(PSEUDONYMS))
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert written.original_encoding == (False, True)
    assert pixel_vr == written["PixelData"].VR
    assert written.PixelData == b"\x00\x01\x02\x03" * (bits // 8)


def test_the_same_input_with_file_meta_gives_the_same_elements(tmp_path: Path) -> None:
    engine = load_script(SCRIPT).build_engine(PSEUDONYMS)
    bare = _through(_without_meta(tmp_path, 8), engine)
    with_meta = synthetic_input()
    engine.deidentify(with_meta, collect_identifiers(with_meta, engine.profile.keeps))
    expected = dcmread(io.BytesIO(encode(with_meta)))
    assert expected.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert dict((p, (vr, v)) for p, vr, v in flatten(bare)) == dict(
        (p, (vr, v)) for p, vr, v in flatten(expected)
    )


def test_a_yaml_profile_keeps_the_encoding_it_read(tmp_path: Path) -> None:
    written = _through(_without_meta(tmp_path, 8), default_profile().build_engine(PSEUDONYMS))
    assert written.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
