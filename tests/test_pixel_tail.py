"""Large instances through a worker with their pixel data copied, not loaded (pixel_tail.py).

The output must be what the whole-file path writes (same header, same pixels), with no
original value anywhere, the worker's memory must not follow the instance's size, and a
file whose pixel data is cut short is held, not copied short.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

import gateway.pipeline.pixel_tail as pixel_tail
from gateway.deid.profile import default_profile
from gateway.offline import EngineSettings
from gateway.pipeline.files import DeidResult, deidentify_file, init_worker

SECRET = b"pixel-tail-test-secret-012345678"
PATIENT = {"PatientName": "QUINCEY^ADELAIDE", "PatientID": "PT88310472", "PatientBirthDate":
           "19610214", "InstitutionName": "ST ELSEWHERE GENERAL"}  # fmt: skip


def _instance(frames: int, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.StudyDate = "CT", "20240506"
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    ds.Rows = ds.Columns = 256
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    rng = np.random.default_rng(frames)
    ds.PixelData = rng.integers(0, 4096, (frames, 256, 256), dtype=np.uint16).tobytes()
    return ds


def _write(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _clean(source: Path, out: Path) -> Path:
    def target(result: DeidResult) -> Path:
        return out / f"{result.sop_instance_uid}.dcm"

    outcome = deidentify_file(source, target, "offline", out / ".claims")
    assert outcome.status == "written", outcome.detail
    assert outcome.output is not None
    return outcome.output


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    init_worker(EngineSettings(default_profile(), SECRET, "SITE", tmp_path / "storage"))
    return tmp_path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_large_instance_comes_out_as_the_whole_file_path_writes_it(
    worker: Path, monkeypatch: pytest.MonkeyPatch, syntax: str
) -> None:
    source = _write(_instance(300, syntax), worker / "large.dcm")  # 37.5 MiB
    assert source.stat().st_size >= pixel_tail.LARGE_INSTANCE_BYTES
    copied = _clean(source, worker / "copied")
    monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 40)  # read whole
    whole = _clean(source, worker / "whole")
    assert copied.read_bytes() == whole.read_bytes()
    out = dcmread(copied)
    assert out.PixelData == dcmread(source).PixelData
    data = copied.read_bytes()
    for value in PATIENT.values():
        assert value.encode() not in data


def test_encapsulated_pixel_data_is_copied_item_by_item(worker: Path) -> None:
    ds = _instance(1)
    frame = b"\xff\xd8" + bytes(range(256)) * (40 << 12) + b"\xff\xd9"  # 40 MiB, even
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    source = _write(ds, worker / "jpeg.dcm")
    out = dcmread(_clean(source, worker / "out"))
    assert out.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert out.PixelData == dcmread(source).PixelData


@pytest.mark.parametrize("large", [False, True], ids=["whole", "pixel-tail"])
def test_ybr_full_422_stored_natively_is_whole_at_two_samples_a_pixel(
    worker: Path, large: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two luminance samples share one Cb and one Cr: 2 bytes a pixel, not 3 (PS3.3
    C.7.6.3.1.2); such an instance is not held as cut short."""
    ds = _instance(1)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = bytes(range(256)) * (256 * 2)
    if large:
        monkeypatch.setattr(pixel_tail, "LARGE_INSTANCE_BYTES", 1 << 10)
    out = dcmread(_clean(_write(ds, worker / "ybr.dcm"), worker / "out"))
    assert out.PixelData == ds.PixelData


def test_pixel_data_cut_short_is_held_not_copied_short(worker: Path) -> None:
    source = _write(_instance(300), worker / "large.dcm")
    with open(source, "r+b") as handle:
        handle.truncate(source.stat().st_size - 4096)

    def target(result: DeidResult) -> Path:
        return worker / "out" / f"{result.sop_instance_uid}.dcm"

    outcome = deidentify_file(source, target, "gateway", worker / "out" / ".claims")
    assert outcome.status == "quarantined"
    assert outcome.detail.startswith("truncated-pixel-data")
    assert not (worker / "out").exists() or not list((worker / "out").glob("*.dcm"))


def test_a_worker_cleans_a_large_instance_in_memory_far_below_its_size(tmp_path: Path) -> None:
    """In a fresh interpreter (the test process's own peak would hide the figure)."""
    source = _write(_instance(1600), tmp_path / "huge.dcm")  # 200 MiB
    size = source.stat().st_size
    code = textwrap.dedent(f"""
        import os, threading, time
        from pathlib import Path
        from gateway.deid.profile import default_profile
        from gateway.offline import EngineSettings
        from gateway.pipeline.files import deidentify_file, init_worker
        storage = Path({str(tmp_path)!r}) / "s"
        init_worker(EngineSettings(default_profile(), {SECRET!r}, "SITE", storage))
        page = os.sysconf("SC_PAGE_SIZE")
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * page
        peak, done = [rss()], threading.Event()
        def watch():
            while not done.wait(0.005):
                peak.append(rss())
        threading.Thread(target=watch, daemon=True).start()
        before = rss()
        out = Path({str(tmp_path)!r}) / "out"
        outcome = deidentify_file(Path({str(source)!r}), lambda r: out / "x.dcm", "offline")
        done.set()
        assert outcome.status == "written", outcome.detail
        print(before, max(peak))
    """)  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=240, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    before, peak = (int(x) for x in run.stdout.split())
    grown = peak - before
    print(f"worker peak grew {grown / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB instance")
    assert grown < size / 4
    assert (tmp_path / "out" / "x.dcm").stat().st_size >= size - 4096
