"""Forwarding a de-identified study to real peers on loopback: DCMTK storescp and Orthanc."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers import requires_orthanc, requires_storescp, run_orthanc, run_storescp
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from gateway.net import scu
from gateway.net.folder import forward_to_folder
from gateway.net.outcome import ForwardOutcome
from gateway.net.scu import forward_to_ae
from gateway.tools.synthetic import make_ct_study

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
COMPRESSED = {
    "SC_rgb_jpeg_dcmtk.dcm": "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",  # RLE lossless
}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Eight 64x64 CT slices plus three compressed instances moved into the same study
    (fresh SOP Instance UIDs: the two MR samples share one)."""
    folder = tmp_path_factory.mktemp("outbox")
    files = make_ct_study(folder, instances=8, rows=64, columns=64, seed=5)
    first = dcmread(files[0], stop_before_pixels=True)
    for name in COMPRESSED:
        ds = dcmread(TESTDATA / name)
        ds.PatientID = first.PatientID
        ds.StudyInstanceUID = first.StudyInstanceUID
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        target = folder / f"X-{name}"
        ds.save_as(target, enforce_file_format=True)
        files.append(target)
    return files


def sop_uids(files: list[Path]) -> set[str]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files}


def received(out_dir: Path) -> dict[str, str]:
    """SOP Instance UID -> transfer syntax UID of every file storescp wrote."""
    found = {}
    for path in out_dir.iterdir():
        ds = dcmread(path, stop_before_pixels=True)
        found[str(ds.SOPInstanceUID)] = str(ds.file_meta.TransferSyntaxUID)
    return found


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with run_orthanc(tmp_path_factory.mktemp("orthanc"), check_called_aet=True) as peer:
        yield peer


# --- storescp ----------------------------------------------------------------------------------


@requires_storescp
def test_study_with_compressed_instances_arrives_in_its_own_syntaxes(
    study: list[Path], tmp_path: Path
) -> None:
    with run_storescp(tmp_path / "in", extra_args=["+xa"]) as (port, _):
        result = forward_to_ae(study, ae_title="ARCHIVE", host="127.0.0.1", port=port)
    assert result.outcome is ForwardOutcome.OK, result.message
    assert (result.sent, result.failed) == (len(study), 0)
    got = received(tmp_path / "in")
    assert set(got) == sop_uids(study)
    assert sorted(got.values()).count(ExplicitVRLittleEndian) == 8
    assert set(COMPRESSED.values()) <= set(got.values())


@requires_storescp
def test_destination_refusing_compressed_syntaxes_gets_them_decoded(
    study: list[Path], tmp_path: Path
) -> None:
    # storescp's default (+x=) accepts uncompressed transfer syntaxes only.
    with run_storescp(tmp_path / "in") as (port, _):
        result = forward_to_ae(study, ae_title="ARCHIVE", host="127.0.0.1", port=port)
    assert result.outcome is ForwardOutcome.OK, result.message
    got = received(tmp_path / "in")
    assert set(got) == sop_uids(study)
    assert set(got.values()) == {ExplicitVRLittleEndian}
    # Lossless syntaxes decode to exactly the original pixels, under the same UID.
    original = dcmread(TESTDATA / "MR_small.dcm").pixel_array
    rle_uid = next(str(dcmread(p).SOPInstanceUID) for p in study if "RLE" in p.name)
    arrived = next(p for p in (tmp_path / "in").iterdir() if rle_uid in p.name)
    assert (dcmread(arrived).pixel_array == original).all()


@requires_storescp
def test_contexts_are_set_before_the_association_request_with_nodelay(
    study: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, bool]] = []
    real = scu.disable_nagle

    def spy(event) -> None:
        real(event)
        sock = event.assoc.dul.socket.socket
        seen.append((sock.getsockopt(6, 1), event.assoc.is_established))  # IPPROTO_TCP, NODELAY

    monkeypatch.setattr(scu, "disable_nagle", spy)
    with run_storescp(tmp_path / "in") as (port, _):
        result = forward_to_ae(study[:2], ae_title="ARCHIVE", host="127.0.0.1", port=port)
    assert result.outcome is ForwardOutcome.OK
    assert seen == [(1, False)]


@requires_storescp
def test_more_sop_classes_than_one_association_can_carry_are_split(tmp_path: Path) -> None:
    files = []
    for index in range(130):  # 130 SOP classes: 130 contexts > 128 per association
        files.append(_tiny_instance(tmp_path / "out", f"1.2.826.0.1.3680043.8.498.77.{index}"))
    with run_storescp(tmp_path / "in", extra_args=["-pm"]) as (port, _):
        result = forward_to_ae(files, ae_title="ARCHIVE", host="127.0.0.1", port=port)
    assert result.outcome is ForwardOutcome.OK, result.message
    assert set(received(tmp_path / "in")) == sop_uids(files)


@requires_storescp
def test_fast_peer_answering_200_instances_in_a_row_gets_them_all(tmp_path: Path) -> None:
    # Regression: pynetdicom's reactor used to take a quick C-STORE response off the queue
    # before send_c_store() saw it (about one 200-instance run in eight), which cost a DIMSE
    # timeout and a RETRY. storescp --ignore answers as fast as it can.
    files = [_tiny_instance(tmp_path / "out", "1.2.840.10008.5.1.4.1.1.7") for _ in range(200)]
    with run_storescp(tmp_path / "in", extra_args=["--ignore"]) as (port, _):
        result = forward_to_ae(files, ae_title="ARCHIVE", host="127.0.0.1", port=port, timeout=5)
    assert result.outcome is ForwardOutcome.OK, result.message
    assert result.sent == 200


@requires_storescp
def test_unreadable_file_fails_alone_and_the_rest_is_sent(
    study: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"this is not DICOM")
    with run_storescp(tmp_path / "in") as (port, _):
        result = forward_to_ae(
            [study[0], broken, *study[1:3]], ae_title="ARCHIVE", host="127.0.0.1", port=port
        )
    assert result.outcome is ForwardOutcome.FAIL
    assert (result.sent, result.failed) == (3, 1)
    assert "unreadable" in result.message
    assert set(received(tmp_path / "in")) == sop_uids(study[:3])


@requires_storescp
def test_peer_supporting_none_of_the_sop_classes_fails_the_study(tmp_path: Path) -> None:
    files = [_tiny_instance(tmp_path / "out", "1.2.826.0.1.3680043.8.498.77.1")]
    with run_storescp(tmp_path / "in") as (port, _):  # without -pm: unknown classes refused
        result = forward_to_ae(files, ae_title="ARCHIVE", host="127.0.0.1", port=port)
    assert result.outcome is ForwardOutcome.FAIL
    assert (result.sent, result.failed) == (0, 1)
    assert "accepted none" in result.message


def test_dead_destination_is_retried_quickly(study: list[Path]) -> None:
    from peers import free_port

    started = time.monotonic()
    result = forward_to_ae(study, ae_title="ARCHIVE", host="127.0.0.1", port=free_port(), timeout=2)
    assert result.outcome is ForwardOutcome.RETRY
    assert (result.sent, result.failed) == (0, 0)
    assert time.monotonic() - started < 3


@requires_storescp
def test_rejected_association_is_retried(study: list[Path], tmp_path: Path) -> None:
    with run_storescp(tmp_path / "in", extra_args=["--refuse"]) as (port, _):
        result = forward_to_ae(study, ae_title="ARCHIVE", host="127.0.0.1", port=port)
    assert result.outcome is ForwardOutcome.RETRY
    assert "rejected" in result.message
    assert result.sent == 0


@requires_storescp
def test_association_aborted_mid_study_is_retried(study: list[Path], tmp_path: Path) -> None:
    with run_storescp(tmp_path / "in", extra_args=["--abort-after"]) as (port, _):
        result = forward_to_ae(study, ae_title="ARCHIVE", host="127.0.0.1", port=port)
    assert result.outcome is ForwardOutcome.RETRY, result.message
    assert result.sent < len(study)
    assert _association_threads_end()


@requires_storescp
def test_peer_that_stops_answering_is_retried_after_the_timeout(
    study: list[Path], tmp_path: Path
) -> None:
    with run_storescp(tmp_path / "in", extra_args=["--sleep-after", "5"]) as (port, _):
        started = time.monotonic()
        result = forward_to_ae(study, ae_title="ARCHIVE", host="127.0.0.1", port=port, timeout=1)
        elapsed = time.monotonic() - started
    assert result.outcome is ForwardOutcome.RETRY, result.message
    assert "timeout" in result.message
    assert elapsed < 4
    assert _association_threads_end()


# --- Orthanc -----------------------------------------------------------------------------------


@requires_orthanc
def test_study_reaches_orthanc(study: list[Path], orthanc) -> None:
    result = forward_to_ae(
        study, ae_title=orthanc.ae_title, host="127.0.0.1", port=orthanc.dicom_port
    )
    assert result.outcome is ForwardOutcome.OK, result.message
    assert set(orthanc.instances()) >= sop_uids(study)
    again = forward_to_ae(
        study, ae_title=orthanc.ae_title, host="127.0.0.1", port=orthanc.dicom_port
    )
    assert again.outcome is ForwardOutcome.OK  # a resent study replaces, never duplicates
    assert len(orthanc.instances()) == len(sop_uids(study))


@requires_orthanc
def test_orthanc_rejecting_the_called_ae_title_is_retried(study: list[Path], orthanc) -> None:
    result = forward_to_ae(study, ae_title="NOT_ORTHANC", host="127.0.0.1", port=orthanc.dicom_port)
    assert result.outcome is ForwardOutcome.RETRY
    assert "rejected" in result.message


# --- folder ------------------------------------------------------------------------------------


def test_folder_destination_writes_the_layout_and_is_idempotent(
    study: list[Path], tmp_path: Path
) -> None:
    export = tmp_path / "export"
    for _ in range(2):
        result = forward_to_folder(study, export)
        assert result.outcome is ForwardOutcome.OK, result.message
        assert (result.sent, result.failed) == (len(study), 0)
    written = sorted(p for p in export.rglob("*") if p.is_file())
    assert len(written) == len(study)
    for source in study:
        ds = dcmread(source, stop_before_pixels=True)
        target = (
            export
            / str(ds.PatientID)
            / ds.StudyInstanceUID
            / ds.SeriesInstanceUID
            / f"{ds.SOPInstanceUID}.dcm"
        )
        assert target.read_bytes() == source.read_bytes()


def test_folder_destination_counts_an_unreadable_file_as_failed(
    study: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 300)
    result = forward_to_folder([broken, *study[:2]], tmp_path / "export")
    assert result.outcome is ForwardOutcome.FAIL
    assert (result.sent, result.failed) == (2, 1)


def test_full_destination_folder_is_retried(study: list[Path], tmp_path: Path) -> None:
    """A destination file system that really fills up (a 32 KiB tmpfs): RETRY, no temp left."""
    export = tmp_path / "export"
    export.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(export)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        result = forward_to_folder(study, export)
        assert result.outcome is ForwardOutcome.RETRY
        assert "full" in result.message
        assert 0 < result.sent < len(study)
        assert not [p for p in export.rglob(".tmp-*")]  # no temporary file left behind
    finally:
        subprocess.run(["umount", str(export)], check=False)


# --- helpers -----------------------------------------------------------------------------------


def _association_threads_end(seconds: float = 5) -> bool:
    """True once only the threads that are not pynetdicom's remain (none leaks per study)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [t for t in threading.enumerate() if type(t).__module__.startswith("pynetdicom")]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def _tiny_instance(folder: Path, sop_class: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "PSEUDO-1"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
