"""The forwarder writes its C-STORE requests itself on a plain association (store_fast_send):
what arrives is the outbox file's dataset byte for byte, in PDUs the peer takes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from peers import requires_storescp, run_storescp
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import SecondaryCaptureImageStorage

from gateway.net import store_fast_send
from gateway.net.dicom_header import stored_file_meta
from gateway.net.outcome import ForwardOutcome
from gateway.net.scu import forward_to_ae
from gateway.net.store_response import store_request
from gateway.tools.synthetic import make_ct_study, random_patient

LOOPBACK = "127.0.0.1"


def dataset_bytes(path: Path) -> bytes:
    _meta, offset = split_dataset(path)
    return path.read_bytes()[offset:]


@pytest.fixture
def no_pynetdicom_send(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> Dataset:
        raise AssertionError("pynetdicom's send_c_store was used")

    monkeypatch.setattr(Association, "send_c_store", refuse)


@requires_storescp
def test_requests_are_written_directly_and_datasets_arrive_byte_for_byte_in_small_pdus(
    tmp_path: Path, no_pynetdicom_send: None
) -> None:
    files = make_ct_study(
        tmp_path / "out", instances=6, rows=128, columns=128, patient=random_patient(5), seed=3
    )
    # storescp takes PDUs of at most 4,096 bytes: every 32 KiB slice goes in 9 pieces.
    with run_storescp(tmp_path / "in", extra_args=["-pdu", "4096"]) as (port, _):
        result = forward_to_ae(files, ae_title="ARCHIVE", host=LOOPBACK, port=port)
    assert result.outcome is ForwardOutcome.OK, result.message
    assert result.sent == len(files)
    sent = sorted(dataset_bytes(p) for p in files)
    arrived = sorted(dataset_bytes(p) for p in (tmp_path / "in").iterdir())
    assert arrived == sent


def test_a_peer_without_a_pdu_limit_gets_pieces_of_at_most_the_cap(tmp_path: Path) -> None:
    big = _secondary_capture(tmp_path / "out", pixels=store_fast_send.FRAGMENT_CAP * 2 + 1000)
    lengths: list[int] = []
    stored: list[bytes] = []
    done = threading.Event()

    def on_pdu(event: evt.Event) -> None:
        if event.pdu.__class__.__name__ == "P_DATA_TF":
            lengths.append(len(event.pdu.encode()) - 6)

    def on_store(event: evt.Event) -> int:
        stored.append(event.request.DataSet.getvalue())
        done.set()
        return 0x0000

    ae = AE(ae_title="ARCHIVE")
    ae.maximum_pdu_size = 0  # "no limit"
    ae.add_supported_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    server = ae.start_server(
        (LOOPBACK, 0),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_PDU_RECV, on_pdu)],
    )
    try:
        port = server.socket.getsockname()[1]
        result = forward_to_ae([big], ae_title="ARCHIVE", host=LOOPBACK, port=port)
        assert done.wait(10)
    finally:
        server.shutdown()
    assert result.outcome is ForwardOutcome.OK, result.message
    assert stored == [dataset_bytes(big)]
    data_pdus = [n for n in lengths if n > 200]  # the command PDU is ~100 bytes
    assert len(data_pdus) == 3
    assert max(data_pdus) == store_fast_send.FRAGMENT_CAP + 6  # PDV header: 4 length + 2


def test_a_peer_that_stops_reading_mid_data_set_is_a_retry_after_the_timeout(
    tmp_path: Path,
) -> None:
    # The peer's reader sleeps on its first data PDU, so the socket buffers fill and the
    # sender's write blocks: the timeout ends it (the association is given up and the study
    # waits for a retry) instead of holding the sender for ever.
    big = _secondary_capture(tmp_path / "out", pixels=48 << 20)
    first = threading.Event()

    def stall(event: evt.Event) -> None:
        if event.pdu.__class__.__name__ == "P_DATA_TF" and not first.is_set():
            first.set()
            time.sleep(6)

    ae = AE(ae_title="ARCHIVE")
    ae.maximum_pdu_size = 16384
    ae.add_supported_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    server = ae.start_server((LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_PDU_RECV, stall)])
    try:
        port = server.socket.getsockname()[1]
        started = time.monotonic()
        result = forward_to_ae([big], ae_title="ARCHIVE", host=LOOPBACK, port=port, timeout=1)
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    assert first.is_set()
    assert result.outcome is ForwardOutcome.RETRY, result.message
    assert result.sent == 0
    assert elapsed < 5


def test_the_request_command_set_is_what_pynetdicom_encodes() -> None:
    from io import BytesIO

    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    for message_id, instance in ((1, "1.2.3"), (65535, "1.2.826.0.1.3680043.8.498.12345")):
        primitive = C_STORE()
        primitive.MessageID = message_id
        primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        primitive.AffectedSOPInstanceUID = instance
        primitive.Priority = 2
        primitive.DataSet = BytesIO(b"\0\0")
        message = C_STORE_RQ()
        message.primitive_to_message(primitive)
        assert store_request(message_id, b"1.2.840.10008.5.1.4.1.1.7", instance.encode()) == encode(
            message.command_set, True, True
        )


def test_file_meta_is_read_by_hand_as_pydicom_reads_it(tmp_path: Path) -> None:
    path = _secondary_capture(tmp_path, pixels=64)
    meta, offset = split_dataset(path)
    assert stored_file_meta(path) == (
        str(meta.MediaStorageSOPClassUID),
        str(meta.MediaStorageSOPInstanceUID),
        str(meta.TransferSyntaxUID),
        offset,
    )
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:150])  # inside the File Meta group
    assert stored_file_meta(cut) is None
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(dataset_bytes(path))  # no preamble: left to pydicom
    assert stored_file_meta(bare) is None


def _secondary_capture(folder: Path, *, pixels: int) -> Path:
    """An 8-bit secondary capture instance with `pixels` bytes of pixel data (pseudonymous)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = "PSEUDO-7"
    ds.Rows, ds.Columns = -(-pixels // 1024), min(pixels, 1024)
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    size = ds.Rows * ds.Columns
    ds.PixelData = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
