"""The folder destination links outbox files on their own file system (no second copy of a
large study) and copies them across file systems; either way the tree is the same."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from gateway.net.folder import forward_to_folder
from gateway.net.outcome import ForwardOutcome
from gateway.tools.synthetic import make_ct_study


def _targets(export: Path) -> list[Path]:
    return sorted(p for p in export.rglob("*") if p.is_file())


def test_same_file_system_links_and_sending_again_leaves_no_temporary(tmp_path: Path) -> None:
    study = make_ct_study(tmp_path / "outbox", instances=4, rows=16, columns=16)
    export = tmp_path / "export"
    for _ in range(2):
        result = forward_to_folder(study, export)
        assert (result.outcome, result.sent) == (ForwardOutcome.OK, 4), result.message
    written = _targets(export)
    assert len(written) == 4 and not [p for p in written if p.name.startswith(".tmp-")]
    sources = {os.stat(p).st_ino for p in study}
    assert {os.stat(p).st_ino for p in written} == sources  # the same files, not copies
    for source in study:  # the outbox may now go: the destination keeps the data
        ds = dcmread(source, stop_before_pixels=True)
        kept = source.read_bytes()
        source.unlink()
        target = export.joinpath(
            str(ds.PatientID), ds.StudyInstanceUID, ds.SeriesInstanceUID, f"{ds.SOPInstanceUID}.dcm"
        )
        assert target.read_bytes() == kept


@pytest.mark.skipif(
    not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat("/tmp").st_dev,
    reason="needs a second file system (/dev/shm)",
)
def test_another_file_system_copies(tmp_path: Path) -> None:
    outbox = Path("/dev/shm") / f"gateway-test-{os.getpid()}"
    try:
        study = make_ct_study(outbox, instances=3, rows=16, columns=16)
        result = forward_to_folder(study, tmp_path / "export")
        assert (result.outcome, result.sent) == (ForwardOutcome.OK, 3), result.message
        written = _targets(tmp_path / "export")
        assert sorted(p.read_bytes() for p in written) == sorted(p.read_bytes() for p in study)
        assert {os.stat(p).st_ino for p in written}.isdisjoint(os.stat(p).st_ino for p in study)
    finally:
        shutil.rmtree(outbox, ignore_errors=True)
