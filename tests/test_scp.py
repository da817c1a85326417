"""The Storage SCP against real senders (DCMTK storescu/echoscu, pynetdicom) on loopback.

Every test starts its own SCP on a free 127.0.0.1 port with a real spool in tmp_path, and
stops it in teardown.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import HTJ2K, ExplicitVRLittleEndian, JPEGLSNearLossless, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer
from service_harness import small_tmpfs, spool_files

from gateway.base.metrics import Metrics
from gateway.config import ListenConfig
from gateway.keys.keyed_hash import KeyedHash
from gateway.net.scp import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DOES_NOT_MATCH,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
    TRANSFER_SYNTAXES,
    build_scp_ae,
    start_scp,
    stop_scp,
)
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import SpooledInstance
from gateway.tools.synthetic import make_ct_study

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
# Sample file -> the storescu option that makes it propose the file's own transfer syntax
# (by default storescu proposes only uncompressed syntaxes, and fails on compressed files it
# cannot decompress; it can propose one compressed family per run).
SAMPLES = {
    "CT_small.dcm": "-xe",  # Explicit VR LE, private tags
    "MR_small_bigendian.dcm": "-xb",  # Explicit VR Big Endian
    "image_dfl.dcm": "-xd",  # Deflated Explicit VR LE
    "JPEGBaseline_1s_1f_u_08_08.dcm": "-xy",  # JPEG Baseline
    "MR_small_jp2klossless.dcm": "-xv",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm": "-xt",  # JPEG-LS lossless
    "MR_small_RLE.dcm": "-xr",  # RLE lossless
    "JPEG2000.dcm": "-xw",  # JPEG 2000 (lossy)
    "JPGExtended.dcm": "-xx",  # JPEG Extended 12-bit
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "-xs",  # JPEG Lossless P14 SV1
}
GATEWAY_AE = "DEID_GW"

needs_dcmtk = pytest.mark.skipif(
    shutil.which("storescu") is None or shutil.which("echoscu") is None,
    reason="DCMTK storescu/echoscu not installed",
)


# --- fixtures and helpers ----------------------------------------------------------------


class RunningScp:
    """An SCP under test: its server, spool, metrics and port."""

    def __init__(self, server: ThreadedAssociationServer, spool: Spool, metrics: Metrics):
        self.server = server
        self.spool = spool
        self.metrics = metrics
        self.port = int(server.server_address[1])

    def counter(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(f"dicom_gateway_{name}", labels)
        return value or 0.0

    def spooled(self) -> list[SpooledInstance]:
        """Everything spooled so far (claims the rounds: call once, at the end)."""
        found: list[SpooledInstance] = []
        for study_round in self.spool.due_rounds(quiet_seconds=0, now=time.time() + 1):
            found.extend(self.spool.claim(study_round.id) or [])
        return found


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., RunningScp]]:
    """Start an SCP with a real spool; everything started is stopped in teardown."""
    started: list[RunningScp] = []

    def _start(*, allowed: tuple[str, ...] = (), storage: Path | None = None) -> RunningScp:
        listen = ListenConfig(ae_title=GATEWAY_AE, allowed_calling_aes=list(allowed))
        listen = listen.model_copy(update={"host": "127.0.0.1", "port": 0})
        spool = Spool(storage or tmp_path / "storage", KeyedHash(bytes(range(32))))
        metrics = Metrics()
        server = start_scp(listen, spool, metrics)
        running = RunningScp(server, spool, metrics)
        started.append(running)
        return running

    yield _start
    for running in started:
        stop_scp(running.server, timeout=5)
        running.spool.close()


def dcmtk(tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with Nagle disabled on its side too (DCMTK reads TCP_NODELAY)."""
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run(
        [tool, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def storescu(port: int, files: list[Path], *, calling: str = "SENDER", propose: str = "-xe") -> int:
    """Send `files` in one association; storescu's exit status (0: all stored)."""
    done = dcmtk(
        "storescu",
        "-R",
        propose,
        "-aet",
        calling,
        "-aec",
        GATEWAY_AE,
        "127.0.0.1",
        str(port),
        *map(str, files),
    )
    return done.returncode


def pynetdicom_sender(calling: str = "SENDER") -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for sop_class in (CTImageStorage, MRImageStorage):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    for syntax in (ExplicitVRLittleEndian, JPEGLSNearLossless, HTJ2K):  # one context each
        ae.add_requested_context(SecondaryCaptureImageStorage, syntax)
    ae.add_requested_context(Verification)
    return ae


@pytest.fixture
def raw_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pynetdicom send a file's dataset bytes as they are, not re-encoded from pydicom,
    so that a test can send exactly the malformed dataset it built."""
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def send_one(port: int, dataset: Dataset | Path, *, calling: str = "SENDER") -> int:
    """C-STORE one instance in its own association; the status, or -1 if not associated."""
    assoc = pynetdicom_sender(calling).associate("127.0.0.1", port, ae_title=GATEWAY_AE)
    if not assoc.is_established:
        return -1
    try:
        status = assoc.send_c_store(dataset)
        return int(status.Status) if "Status" in status else -1
    finally:
        assoc.release()


def written(ds: Dataset, folder: Path, name: str) -> Path:
    """`ds` as a Part 10 file, written exactly as given (no fixing up)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path


def small_mr(sop_instance_uid: str | None = None, study_uid: str | None = "1.2.3.4") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    if study_uid is not None:
        ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.Modality = "MR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


# --- tests -------------------------------------------------------------------------------


def test_every_storage_class_is_offered_the_syntaxes_pydicom_decodes() -> None:
    from pydicom.pixels import get_decoder
    from pynetdicom import AllStoragePresentationContexts

    for syntax in TRANSFER_SYNTAXES:
        assert get_decoder(syntax).is_available, syntax
    ae = build_scp_ae(GATEWAY_AE, allowed_calling_aes=[], max_associations=4)
    supported = {cx.abstract_syntax: cx.transfer_syntax for cx in ae.supported_contexts}
    assert len(supported) == len(AllStoragePresentationContexts) + 1  # + Verification
    assert set(supported[CTImageStorage]) == set(TRANSFER_SYNTAXES)
    assert Verification in supported
    assert ae.require_calling_aet == []
    assert ae.maximum_associations == 4


@needs_dcmtk
def test_echo_from_a_modality_is_answered(start: Callable[..., RunningScp]) -> None:
    scp = start()
    done = dcmtk(
        "echoscu", "-aet", "SENDER", "-aec", GATEWAY_AE, "127.0.0.1", str(scp.port), timeout=30
    )
    assert done.returncode == 0, done.stderr


def assert_spooled_as_sent(sent_path: Path, item: SpooledInstance) -> None:
    """The spooled file holds the dataset exactly as the sender encoded it."""
    sent = dcmread(sent_path)
    kept = dcmread(item.path)
    assert item.sop_instance_uid == sent.SOPInstanceUID
    assert item.sop_class_uid == sent.SOPClassUID
    assert item.transfer_syntax == sent.file_meta.TransferSyntaxUID
    assert kept.file_meta.TransferSyntaxUID == item.transfer_syntax
    assert kept.SOPInstanceUID == sent.SOPInstanceUID
    # Not decoded on the way in: the pixel data are the sender's bytes ...
    assert kept["PixelData"].value == sent["PixelData"].value
    # ... and so is every other element, except what storescu itself changes: it leaves out
    # the Data Set Trailing Padding (PS3.10 7.2: it may be removed) and writes encapsulated
    # Pixel Data as OB where a sample has OW (PS3.5 A.4).
    for ds in (sent, kept):
        ds.pop(0xFFFCFFFC, None)
        del ds.PixelData
    assert kept == sent


@needs_dcmtk
@pytest.mark.parametrize(("name", "propose"), SAMPLES.items(), ids=list(SAMPLES))
def test_instance_in_each_transfer_syntax_is_spooled_as_sent(
    start: Callable[..., RunningScp], name: str, propose: str
) -> None:
    # One SCP per file: the MR_small variants share one SOP Instance UID.
    scp = start()

    assert storescu(scp.port, [TESTDATA / name], propose=propose) == 0

    assert scp.spool.queue_depth() == 1
    (item,) = scp.spooled()
    assert_spooled_as_sent(TESTDATA / name, item)


def test_htj2k_instance_is_spooled_as_sent(
    start: Callable[..., RunningScp], tmp_path: Path, raw_sending: None
) -> None:
    # DCMTK 3.6.7 cannot propose HTJ2K; pynetdicom sends the file's bytes as they are.
    scp = start()
    ds = dcmread(TESTDATA / "HTJ2K_08_RGB.dcm")
    ds.StudyInstanceUID = generate_uid()  # the sample has none (see the 0xA900 test)
    path = written(ds, tmp_path / "in", "htj2k.dcm")

    assert send_one(scp.port, path) == STATUS_SUCCESS

    (item,) = scp.spooled()
    assert_spooled_as_sent(path, item)


@needs_dcmtk
def test_study_sent_by_storescu_is_spooled_as_sent(
    start: Callable[..., RunningScp], tmp_path: Path
) -> None:
    scp = start()
    study = make_ct_study(tmp_path / "ct", instances=12, rows=64, columns=64, seed=3)

    assert storescu(scp.port, study) == 0

    assert scp.spool.queue_depth() == len(study)
    assert scp.counter("instances_received_total") == len(study)
    spooled = {item.sop_instance_uid: item for item in scp.spooled()}
    assert len(spooled) == len(study)
    for path in study:
        assert_spooled_as_sent(path, spooled[dcmread(path, stop_before_pixels=True).SOPInstanceUID])


@needs_dcmtk
def test_calling_ae_not_in_the_allow_list_is_rejected(
    start: Callable[..., RunningScp], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scp = start(allowed=("CT_SCANNER",))
    files = make_ct_study(tmp_path / "ct", instances=2, rows=16, columns=16)

    echo = dcmtk(
        "echoscu", "-aet", "INTRUDER", "-aec", GATEWAY_AE, "127.0.0.1", str(scp.port), timeout=30
    )
    assert echo.returncode != 0
    assert storescu(scp.port, files, calling="INTRUDER") != 0
    assert send_one(scp.port, files[0], calling="INTRUDER") == -1

    assert scp.spool.queue_depth() == 0
    assert "'INTRUDER'" in caplog.text and "not allowed" in caplog.text
    assert scp.counter("failures_total", stage="association") >= 1
    assert storescu(scp.port, files, calling="CT_SCANNER") == 0
    assert scp.spool.queue_depth() == 2


def test_duplicate_instance_is_kept_once(start: Callable[..., RunningScp], tmp_path: Path) -> None:
    scp = start()
    path = written(small_mr(), tmp_path / "in", "mr.dcm")

    assert send_one(scp.port, path) == STATUS_SUCCESS
    assert send_one(scp.port, path) == STATUS_SUCCESS

    assert scp.spool.queue_depth() == 1
    assert len(scp.spooled()) == 1


def test_unparseable_dataset_is_refused_as_not_understood(
    start: Callable[..., RunningScp], tmp_path: Path, raw_sending: None
) -> None:
    scp = start()
    path = written(small_mr(), tmp_path / "in", "mr.dcm")
    # PS3.5 7.1.1: only SQ (and encapsulated OB) may have an undefined length; an undefined
    # length on (0008,0005) Specific Character Set leaves nowhere to resume reading.
    data = path.read_bytes()
    body = data.index(b"\x08\x00\x16\x00")  # (0008,0016), the first dataset element
    path.write_bytes(data[:body] + b"\x08\x00\x05\x00CS\xff\xff" + data[body:])

    assert send_one(scp.port, path) == STATUS_CANNOT_UNDERSTAND

    assert scp.spool.queue_depth() == 0
    assert scp.counter("failures_total", stage="receive") == 1


def test_instance_without_study_uid_does_not_match_its_sop_class(
    start: Callable[..., RunningScp], tmp_path: Path, raw_sending: None
) -> None:
    scp = start()
    path = written(small_mr(study_uid=None), tmp_path / "in", "mr.dcm")
    truncated = written(small_mr(), tmp_path / "in", "cut.dcm")
    data = truncated.read_bytes()
    truncated.write_bytes(data[: data.index(b"\x20\x00\x0d\x00")])  # cut before the UID

    assert send_one(scp.port, path) == STATUS_DOES_NOT_MATCH
    assert send_one(scp.port, truncated) == STATUS_DOES_NOT_MATCH
    assert send_one(scp.port, TESTDATA / "JPEGLSNearLossless_16.dcm") == STATUS_DOES_NOT_MATCH
    assert scp.spool.queue_depth() == 0


def test_dataset_uid_differing_from_the_request_is_refused(
    start: Callable[..., RunningScp], tmp_path: Path, raw_sending: None
) -> None:
    scp = start()
    ds = small_mr()
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # the request's UID comes from here
    ds.preamble = b"\0" * 128
    path = tmp_path / "mismatch.dcm"
    ds.save_as(path, enforce_file_format=False)  # as is: no fixing up of the file meta

    assert send_one(scp.port, path) == STATUS_DOES_NOT_MATCH
    assert scp.spool.queue_depth() == 0


def test_accepted_sockets_have_nagle_disabled(start: Callable[..., RunningScp]) -> None:
    scp = start()
    assoc = pynetdicom_sender().associate("127.0.0.1", scp.port, ae_title=GATEWAY_AE)
    assert assoc.is_established
    try:
        accepted = [a for a in scp.server.active_associations if a.is_acceptor]
        assert len(accepted) == 1
        sock = accepted[0].dul.socket.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        assoc.release()


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs, so that writing a CT slice runs out of space."""
    with small_tmpfs(tmp_path / "tiny", "200k") as mountpoint:
        yield mountpoint


def test_full_disk_answers_out_of_resources_and_keeps_nothing(
    start: Callable[..., RunningScp], tmp_path: Path, tiny_filesystem: Path
) -> None:
    scp = start(storage=tiny_filesystem / "storage")
    big = make_ct_study(tmp_path / "ct", instances=1, rows=512, columns=512)[0]  # ~0.5 MB

    assert send_one(scp.port, big) == STATUS_OUT_OF_RESOURCES

    assert scp.spool.queue_depth() == 0
    leftovers = spool_files(tiny_filesystem / "storage" / "spool")
    assert leftovers == []
    assert scp.counter("failures_total", stage="receive") == 1
    # The failure is not sticky: what fits is still accepted.
    small = written(small_mr(), tmp_path / "in", "mr.dcm")
    assert send_one(scp.port, small) == STATUS_SUCCESS
    assert scp.spool.queue_depth() == 1


def test_drain_lets_an_open_association_finish_and_refuses_new_ones(
    start: Callable[..., RunningScp], tmp_path: Path
) -> None:
    scp = start()
    assoc = pynetdicom_sender().associate("127.0.0.1", scp.port, ae_title=GATEWAY_AE)
    assert assoc.is_established
    result: list[bool] = []
    stopping = threading.Thread(target=lambda: result.append(stop_scp(scp.server, timeout=10)))
    stopping.start()
    try:
        deadline = time.monotonic() + 5
        while not _refused(scp.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _refused(scp.port), "still accepting after stop_scp began"
        status = assoc.send_c_store(written(small_mr(), tmp_path / "in", "mr.dcm"))
        assert status.Status == STATUS_SUCCESS
    finally:
        assoc.release()
        stopping.join(timeout=15)
    assert result == [True]
    assert scp.spool.queue_depth() == 1


def test_drain_aborts_an_association_still_open_at_the_deadline(
    start: Callable[..., RunningScp],
) -> None:
    scp = start()
    assoc = pynetdicom_sender().associate("127.0.0.1", scp.port, ae_title=GATEWAY_AE)
    assert assoc.is_established

    assert stop_scp(scp.server, timeout=0.5) is False

    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted
    assert scp.server.active_associations == []


def test_drain_does_not_wait_for_a_connection_that_never_associated(
    start: Callable[..., RunningScp],
) -> None:
    """A load-balancer probe or port scan holds a TCP connection open and sends nothing."""
    scp = start()
    with socket.create_connection(("127.0.0.1", scp.port), timeout=5) as probe:
        deadline = time.monotonic() + 5
        while not scp.server.active_associations and time.monotonic() < deadline:
            time.sleep(0.02)
        began = time.monotonic()

        assert stop_scp(scp.server, timeout=20) is True

        assert time.monotonic() - began < 5
        probe.settimeout(5)
        assert probe.recv(1) == b""  # closed on our side
    deadline = time.monotonic() + 5
    while scp.server.active_associations and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scp.server.active_associations == []


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@needs_dcmtk
def test_receive_rate_for_small_instances_in_one_association(
    start: Callable[..., RunningScp], tmp_path: Path
) -> None:
    """Not a timed assertion: prints the rate so that a regression (Nagle) is visible."""
    scp = start()
    files = make_ct_study(tmp_path / "ct", instances=200, rows=64, columns=64, seed=7)

    began = time.perf_counter()
    assert storescu(scp.port, files) == 0
    elapsed = time.perf_counter() - began

    assert scp.spool.queue_depth() == 200
    print(f"\nreceived 200 small instances in {elapsed:.2f} s: {200 / elapsed:.0f} instances/s")


def test_connections_closed_before_a_request_free_their_slots(
    start: Callable[..., RunningScp],
) -> None:
    """Load-balancer probes and port scans connect and close: their slots are free again
    long before the 30 s ACSE timeout, so a modality is never turned away for them."""
    running = start()
    assert running.server.ae.acse_timeout >= 30
    for _ in range(running.server.ae.maximum_associations):
        socket.create_connection(("127.0.0.1", running.port), timeout=5).close()
    deadline = time.monotonic() + 10  # well under the ACSE timeout
    while running.server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.server.active_associations == []
    assert send_one(running.port, small_mr()) == 0x0000
