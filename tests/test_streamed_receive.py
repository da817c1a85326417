"""Receive streams each data set into the spool as it arrives: the receiving process's
memory does not grow with the instance, and the guarantees stay.

A real DCMTK storescu sends a 512 MiB multi-frame to a running `dicom-gateway run`; the
gateway's main process is sampled from /proc every 50 ms while it receives. The spooled
file must be the File Meta header plus the data set exactly as sent. Then what can go wrong
mid-stream: a full disk (0xA700, nothing kept, the association goes on), a sender that dies
halfway (nothing kept), a crash (recovery empties tmp/).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz import rawpeer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import SecondaryCaptureImageStorage as SC_IMAGE
from service_harness import (
    GATEWAY_AE,
    STORESCU,
    create_secret,
    dcmtk_env,
    make_site,
    rss_bytes,
    running_gateway,
    small_tmpfs,
    spool_files,
    storescu,
    storescu_command,
    wait_until,
    write_large_multiframe,
)

from gateway.base.metrics import Metrics
from gateway.config import ListenConfig
from gateway.keys.keyed_hash import KeyedHash
from gateway.net.dicom_header import file_meta, file_uids, header_uids
from gateway.net.scp import start_scp, stop_scp
from gateway.stores.spool import Spool, SpoolWriteError
from gateway.stores.spool_intake import IncomingFile
from gateway.stores.spool_seal import read_seal
from gateway.tools.synthetic import make_ct_study

pytestmark = [
    pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed"),
    pytest.mark.timeout(180),
]

INSTANCE_MIB = 512
# The receiving process before streaming: ~INSTANCE_MIB above its idle size. Streamed, it
# stays near its idle size (measured: see the figure the test prints).
PEAK_RSS_LIMIT = 200 << 20
GROWTH_LIMIT = 64 << 20  # above the idle size; one PDU is 1 MiB
KEYED_HASH = KeyedHash(bytes(range(32)))
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def write_multiframe(path: Path, mib: int) -> Dataset:
    """An Enhanced CT of `mib` MiB, written frame by frame; its header."""
    return write_large_multiframe(path, mib, "Strommann^Wilhelmine", "SW-4471902")


def dataset_offset(path: Path) -> int:
    """Where a Part 10 file's data set begins: after preamble, "DICM" and group 0002."""
    with open(path, "rb") as handle:
        head = handle.read(144)
    assert head[128:132] == b"DICM"
    return 144 + struct.unpack_from("<I", head, 140)[0]


def digest(path: Path, skip: int = 0, prefix: bytes = b"") -> tuple[str, int]:
    """SHA-256 and length of `prefix` + the file's bytes from `skip` on, read in pieces."""
    sha = hashlib.sha256(prefix)
    size = len(prefix)
    with open(path, "rb") as handle:
        handle.seek(skip)
        while piece := handle.read(8 << 20):
            sha.update(piece)
            size += len(piece)
    return sha.hexdigest(), size


class PeakRss:
    """The peak resident memory of one process, polled from /proc every 50 ms in a thread
    (bounded: it stops by itself after `limit_seconds`)."""

    def __init__(self, pid: int, interval: float = 0.05, limit_seconds: float = 150) -> None:
        self.pid = pid
        self.interval = interval
        self.limit_seconds = limit_seconds
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(int(self.limit_seconds / self.interval)):
            self.peak = max(self.peak, rss_bytes([self.pid]))
            self.samples += 1
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def large_multiframe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Dataset]]:
    path = tmp_path_factory.mktemp("multiframe") / "large.dcm"
    header = write_multiframe(path, INSTANCE_MIB)
    yield path, header
    path.unlink(missing_ok=True)


def test_large_multiframe_is_spooled_as_sent_in_bounded_memory(
    tmp_path: Path, large_multiframe: tuple[Path, Dataset], report_figures: list[str]
) -> None:
    source, header = large_multiframe
    site = make_site(
        tmp_path / "site",
        create_secret(tmp_path / "keys"),
        destination={"folder": str(tmp_path / "export")},
        quiet_seconds=600,  # the round stays open: its spool file is compared below
        workers=1,
    )
    with running_gateway(site) as gateway:
        idle = rss_bytes([gateway.pid])
        with PeakRss(gateway.pid) as rss:
            run = storescu(site.listen_port, [source], timeout=120)
        assert run.acknowledged == [source], run.output[-2000:]
        ((_round, name),) = site.spool_rows()
        spooled = site.storage / "spool" / name
        meta = file_meta(header.SOPClassUID, header.SOPInstanceUID, ExplicitVRLittleEndian)
        # Byte for byte as sent behind its File Meta; the preamble carries the spool's seal.
        assert digest(spooled, 128) == digest(source, dataset_offset(source), meta[128:])
        assert read_seal(spooled) is not None
        assert list((site.storage / "spool" / "tmp").iterdir()) == []

    figure = (
        f"streamed receive: {source.stat().st_size / 2**20:.0f} MiB multi-frame, receiving "
        f"process {idle / 2**20:.0f} MiB idle, {rss.peak / 2**20:.0f} MiB peak "
        f"({rss.samples} samples)"
    )
    print(f"\n{figure}")
    report_figures.append(figure)
    assert rss.peak < PEAK_RSS_LIMIT, figure
    assert rss.peak - idle < GROWTH_LIMIT, figure


# --- mid-stream failures, against an SCP in this process -----------------------------------


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[int, Spool, Metrics]]:
    with in_process_scp(tmp_path / "storage") as running:
        yield running


@contextlib.contextmanager
def in_process_scp(storage: Path, **limits: str) -> Iterator[tuple[int, Spool, Metrics]]:
    listen = ListenConfig(ae_title=GATEWAY_AE, **limits).model_copy(update={"port": 0})
    spool, metrics = Spool(storage, KEYED_HASH), Metrics()
    server = start_scp(listen, spool, metrics)
    try:
        yield int(server.server_address[1]), spool, metrics
    finally:
        stop_scp(server, timeout=5)
        spool.close()


def files_under(folder: Path) -> list[Path]:
    return spool_files(folder)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: an 8 MiB instance runs out of space halfway through its data set."""
    with small_tmpfs(tmp_path / "tiny", "4m") as mountpoint:
        yield mountpoint


def test_disk_full_mid_stream_answers_a700_keeps_nothing_and_the_association_goes_on(
    tmp_path: Path, tiny_disk: Path
) -> None:
    big = tmp_path / "big.dcm"
    write_multiframe(big, 8)
    small = make_ct_study(tmp_path / "ct", instances=1, rows=64, columns=64)[0]
    with in_process_scp(tiny_disk / "storage") as (port, spool, metrics):
        run = storescu(port, [big, small])

        assert run.statuses == {big: "Refused: OutOfResources", small: "Success"}, run.output
        assert spool.queue_depth() == 1
        assert files_under(tiny_disk / "storage" / "spool" / "tmp") == []
        assert len(files_under(tiny_disk / "storage" / "spool")) == 1  # the small one
        failures = metrics.registry.get_sample_value(
            "dicom_gateway_failures_total", {"stage": "receive"}
        )
        assert failures == 1


def test_a_sender_dying_mid_stream_leaves_nothing(
    scp: tuple[int, Spool, Metrics], tmp_path: Path, large_multiframe: tuple[Path, Dataset]
) -> None:
    port, spool, _metrics = scp
    source, _header = large_multiframe
    tmp = spool.spool_dir / "slots"
    sender = subprocess.Popen(
        storescu_command(port, [source]),
        env=dcmtk_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: sum(p.stat().st_size for p in files_under(tmp)) > 32 << 20,
            timeout=30,
            interval=0.01,
            what="the data set halfway in its slot",
        )
    finally:
        sender.send_signal(signal.SIGKILL)
        sender.wait(timeout=10)
    wait_until(lambda: not files_under(tmp), timeout=10, what="its slot removed")
    assert spool.queue_depth() == 0
    assert files_under(spool.spool_dir) == []


def _raw_association(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(rawpeer.associate_rq([(SC_IMAGE.encode(), rawpeer.EXPLICIT_LE)]))
    assert rawpeer.read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
    return sock


def _pdv(fragment: bytes, *, command: bool, last: bool) -> bytes:
    return rawpeer.p_data(1, fragment, command=command, last=last)[6:]  # no PDU header


def test_command_and_data_set_in_one_p_data_are_spooled_as_sent(
    scp: tuple[int, Spool, Metrics],
) -> None:
    """PS3.8 9.3.5 lets one P-DATA-TF carry the command set's last fragment and the data
    set's fragments: the file must be in place between them."""
    port, spool, _metrics = scp
    uid = generate_uid()
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = SC_IMAGE, uid, "1.2.3"
    ds.Modality = "OT"
    data = encode(ds, False, True)
    assert data is not None
    body = b"".join(
        (
            _pdv(rawpeer.c_store_command(SC_IMAGE, uid), command=True, last=True),
            _pdv(data[:20], command=False, last=False),
            _pdv(data[20:], command=False, last=True),
        )
    )
    with _raw_association(port) as sock:
        sock.sendall(struct.pack(">BBI", 0x04, 0, len(body)) + body)
        kind, answer = rawpeer.read_pdu(sock)
    assert kind == 0x04
    assert struct.pack("<HHLH", 0x0000, 0x0900, 2, 0x0000) in answer  # Status: success
    (due,) = spool.due_rounds(quiet_seconds=0, now=time.time() + 1)
    (stored,) = spool.claim(due.id) or []
    meta = file_meta(str(SC_IMAGE), uid, str(ExplicitVRLittleEndian))
    assert stored.path.read_bytes()[128:] == (meta + data)[128:]  # the preamble: the seal
    assert read_seal(stored.path) is not None


def test_an_instance_cut_off_at_the_size_limit_leaves_nothing(tmp_path: Path) -> None:
    with in_process_scp(tmp_path / "storage", max_instance_size="256 KiB") as (port, spool, _):
        with _raw_association(port) as sock:
            command = rawpeer.c_store_command(SC_IMAGE, generate_uid())
            sock.sendall(rawpeer.p_data(1, command, command=True, last=True))
            with contextlib.suppress(OSError):  # closed once past the limit
                for _ in range(64):
                    sock.sendall(rawpeer.p_data(1, bytes(16000), command=False, last=False))
            kind, _answer = rawpeer.read_pdu(sock)
        assert kind == 0x04  # the 0xA700 answer (tests/test_receive_limits.py), then the abort
        wait_until(lambda: not files_under(spool.spool_dir), timeout=10, what="spool emptied")
        assert spool.queue_depth() == 0


# --- the spool's side ------------------------------------------------------------------------


def _instance(study: str = "1.2.3") -> dict[str, str]:
    return {
        "sop_instance_uid": "1.2.3.4",
        "sop_class_uid": ENHANCED_CT,
        "study_uid": study,
        "transfer_syntax": str(ExplicitVRLittleEndian),
        "calling_ae": "MODALITY",
    }


def test_store_file_moves_an_incoming_file_into_its_round(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    incoming = spool.incoming(b"HEADER")
    for piece in (b"one ", memoryview(b"two "), bytearray(b"three")):
        incoming.write(piece)
    incoming.finish()
    assert incoming.path.parent == spool.spool_dir / "slots"
    assert os.stat(incoming.path).st_mode & 0o777 == 0o600

    spool.store_file(incoming, **_instance())

    (due,) = spool.due_rounds(quiet_seconds=0)
    (stored,) = spool.claim(due.id) or []
    assert stored.path.read_bytes() == b"HEADERone two three"
    assert files_under(spool.spool_dir / "tmp") == []
    with pytest.raises(ValueError, match="slots"):
        spool.store_file(IncomingFile(stored.path, b""), **_instance())


def test_a_file_that_cannot_be_written_is_refused_and_gone(tmp_path: Path) -> None:
    """Writes go on without raising after the first error, so that the receiver reads the
    rest of the message and answers; `finish` reports it, and the file is already gone."""
    spool = Spool(tmp_path, KEYED_HASH)
    incoming = spool.incoming(b"HEADER")
    incoming.close()
    incoming._fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC

    assert incoming.write(b"data") == 4
    assert incoming.write(b"more") == 4
    assert not incoming.path.exists()
    with pytest.raises(SpoolWriteError) as refused:
        incoming.finish()
    assert refused.value.out_of_space
    assert spool.queue_depth() == 0
    assert files_under(tmp_path / "spool") == []


def test_recovery_removes_what_a_crash_left_mid_receive(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    incoming = spool.incoming(b"HEADER")
    incoming.write(b"half a data set")
    spool.close()  # the crash: the file was never stored

    Spool(tmp_path, KEYED_HASH).close()

    assert files_under(tmp_path / "spool") == []


def test_the_study_uid_is_found_past_a_large_element_without_reading_the_rest(
    tmp_path: Path,
) -> None:
    """The header walk over a file sees all of it, not a prefix: an 8 MiB private element
    before (0020,000D) does not hide the Study Instance UID."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT, "1.2.3.4"
    ds.add_new(0x00090010, "LO", "BIG")
    ds.add_new(0x00091000, "OB", bytes(8 << 20))
    ds.StudyInstanceUID = "1.2.3"
    path = tmp_path / "big-header.dcm"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dcmwrite(path, ds, enforce_file_format=True)
    start = dataset_offset(path)
    syntax = str(ExplicitVRLittleEndian)

    assert file_uids(path, start, syntax) == ("1.2.3.4", "1.2.3")
    assert file_uids(path, start, syntax) == header_uids(path.read_bytes()[start:], syntax)
