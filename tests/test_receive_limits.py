"""Receive limits: what one peer may make the SCP hold, and for how long.

A peer that declares a huge PDU, streams a data set past the size limit, connects and says
nothing, or opens connection after connection from one address must be cut off early, and a
well-behaved sender must still get through. The misbehaving peers are raw sockets
(tests/fuzz/rawpeer.py); the SCP runs in-process on a free 127.0.0.1 port with a real spool,
its limits shortened for the test and stopped in teardown. Memory under these attacks is
measured by bench/receive_limits.py, not asserted here.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz import rawpeer
from pydantic import ValidationError
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import SecondaryCaptureImageStorage, Verification
from pynetdicom.transport import ThreadedAssociationServer

from gateway.base.metrics import Metrics
from gateway.config import ConfigError, ListenConfig, load_config
from gateway.keys.keyed_hash import KeyedHash
from gateway.net.receive_limits import MessageMeter, ReceiveLimits
from gateway.net.scp import STATUS_OUT_OF_RESOURCES, start_scp, stop_scp
from gateway.stores.spool import Spool

SC_IMAGE = SecondaryCaptureImageStorage
GATEWAY_AE = "DEID_GW"
SLACK = 5.0  # seconds a cut-off may take beyond its bound on a busy machine


class LimitedScp:
    def __init__(self, server: ThreadedAssociationServer, spool: Spool, metrics: Metrics):
        self.server = server
        self.spool = spool
        self.metrics = metrics
        self.port = int(server.server_address[1])

    def active(self) -> int:
        return len(self.server.active_associations)

    def failures(self, stage: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "dicom_gateway_failures_total", {"stage": stage}
        )
        return value or 0.0

    def wait_idle(self, seconds: float = SLACK) -> bool:
        deadline = time.monotonic() + seconds
        while self.active() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.active() == 0


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., LimitedScp]]:
    started: list[LimitedScp] = []

    def _start(**listen: Any) -> LimitedScp:
        config = ListenConfig(ae_title=GATEWAY_AE, **listen).model_copy(update={"port": 0})
        spool = Spool(tmp_path / f"storage{len(started)}", KeyedHash(bytes(range(32))))
        metrics = Metrics()
        running = LimitedScp(start_scp(config, spool, metrics), spool, metrics)
        started.append(running)
        return running

    yield _start
    for running in started:
        stop_scp(running.server, timeout=5)
        running.spool.close()


def associate(port: int, *, max_pdu: int = 16384) -> tuple[socket.socket, bytes]:
    """A raw association proposing SC Image Storage; the socket and the A-ASSOCIATE-AC."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(rawpeer.associate_rq([(SC_IMAGE.encode(), rawpeer.EXPLICIT_LE)], max_pdu=max_pdu))
    kind, body = rawpeer.read_pdu(sock)
    assert kind == 0x02, f"expected A-ASSOCIATE-AC, got PDU type {kind}"
    return sock, body


def advertised_max_pdu(associate_ac: bytes) -> int:
    """The Maximum Length sub-item (0x51) of an A-ASSOCIATE-AC's user information (PS3.8 D.1)."""
    at = associate_ac.index(b"\x51\x00\x00\x04")
    return int(struct.unpack(">I", associate_ac[at + 4 : at + 8])[0])


def read_until_closed(sock: socket.socket, seconds: float) -> list[tuple[int, bytes]]:
    """Every PDU the SCP sends until it closes the connection (bounded in time and count)."""
    pdus: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + seconds
    for _ in range(100):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            kind, body = rawpeer.read_pdu(sock, timeout=left)
        except (TimeoutError, ConnectionError):
            break
        if kind == 0:
            break
        pdus.append((kind, body))
    return pdus


def store_status(p_data_body: bytes) -> int:
    """The Status (0000,0900) of a C-STORE-RSP in a one-PDV P-DATA-TF body."""
    command = p_data_body[6:]  # PDV length, context ID, control header
    at = command.index(struct.pack("<HHL", 0x0000, 0x0900, 2))
    return int(struct.unpack("<H", command[at + 8 : at + 10])[0])


def secondary_capture(size: int) -> Dataset:
    """An SC image of about `size` bytes of pixel data."""
    side = max(8, int(size**0.5) // 2 * 2)
    ds = Dataset()
    ds.SOPClassUID = SC_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(side * side)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def send_with_pynetdicom(port: int, ds: Dataset) -> int:
    """C-STORE in its own association; the status, or -1 if not associated or aborted."""
    ae = AE(ae_title="MODALITY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    ae.add_requested_context(SC_IMAGE, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=GATEWAY_AE)
    if not assoc.is_established:
        return -1
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status) if "Status" in status else -1
    finally:
        if assoc.is_established:
            assoc.release()


# --- configuration ---------------------------------------------------------------------------


def test_sizes_are_read_in_bytes_or_with_a_unit() -> None:
    listen = ListenConfig(max_pdu_size="64 KiB", max_instance_size="2GB")
    assert (listen.max_pdu_size, listen.max_instance_size) == (65536, 2_000_000_000)
    defaults = ListenConfig()
    assert defaults.max_pdu_size == 1 << 20 and defaults.max_instance_size == 4 << 30
    assert defaults.max_associations_per_source < defaults.max_associations
    for bad in ({"max_pdu_size": 0}, {"max_pdu_size": "1 XB"}, {"max_instance_size": True}):
        with pytest.raises(ValidationError):
            ListenConfig(**bad)


def test_listening_beyond_loopback_needs_an_allow_list_or_allow_any(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("site_id: X\nkeys: {secret: s.key}\nlisten: {host: 0.0.0.0}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(config, check_files=False)
    assert refused.value.problems == [
        f"{config}: 'listen.host': '0.0.0.0' accepts connections from other machines: name "
        "who may send in listen.allowed_networks or listen.allowed_calling_aes, or set "
        "listen.allow_any: true"
    ]
    assert ListenConfig(host="0.0.0.0", allowed_networks=["10.0.0.0/8"]).host == "0.0.0.0"
    assert ListenConfig(host="::", allowed_calling_aes=["CT1"]).host == "::"
    assert ListenConfig(host="0.0.0.0", allow_any=True).allow_any
    for loopback in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert ListenConfig(host=loopback).host == loopback


def test_meter_counts_data_set_fragments_per_message() -> None:
    limits = ReceiveLimits(max_pdu_size=4096, max_instance_size=1000, first_request_seconds=5)
    meter = MessageMeter(limits, now=0.0)
    assert meter.seconds_left(now=1.0) == 4.0
    assert meter.check_header(0x04, 4096) is None and meter.first_request_seen
    assert meter.check_header(0x04, 4097) is not None
    command = rawpeer.p_data(1, b"c" * 100, command=True, last=True)[6:]
    fragment = rawpeer.p_data(1, b"d" * 600, command=False, last=False)[6:]
    last = rawpeer.p_data(1, b"d" * 400, command=False, last=True)[6:]
    assert meter.count_p_data(command) is None
    assert meter.count_p_data(fragment) is None
    assert meter.count_p_data(last) is None  # exactly 1000: allowed, and the count restarts
    assert meter.count_p_data(command + fragment) is None
    refusal = meter.count_p_data(fragment)
    assert refusal is not None and refusal.out_of_resources and refusal.kind == "instance"


# --- huge PDUs -------------------------------------------------------------------------------


def test_the_maximum_pdu_size_is_advertised(start: Callable[..., LimitedScp]) -> None:
    scp = start(max_pdu_size="64 KiB")
    sock, ac = associate(scp.port)
    with sock:
        assert advertised_max_pdu(ac) == 65536


def test_a_pdu_declared_larger_than_advertised_is_aborted_before_it_is_read(
    start: Callable[..., LimitedScp],
) -> None:
    """The issue's attack: a P-DATA-TF declaring ~4 GiB, then zeros streamed into it."""
    scp = start(max_pdu_size="64 KiB")
    sock, _ = associate(scp.port)
    with sock:
        sock.sendall(b"\x04\x00\xff\xff\xff\xf0")
        sent = 0
        try:
            for _ in range(256):  # up to 64 MiB; the SCP closes long before
                sock.sendall(b"\0" * (256 << 10))
                sent += 256 << 10
        except OSError:
            pass  # reset by the SCP: it stopped reading
        pdus = read_until_closed(sock, SLACK)
    assert (0x07, b"\0\0\x02\x06") in pdus  # A-ABORT: service provider, invalid parameter
    assert sent < 64 << 20
    assert scp.wait_idle()
    assert scp.failures("connection") >= 1
    assert scp.spool.queue_depth() == 0


def test_an_association_request_declaring_a_huge_length_is_closed(
    start: Callable[..., LimitedScp],
) -> None:
    scp = start()
    with socket.create_connection(("127.0.0.1", scp.port), timeout=10) as sock:
        sock.sendall(b"\x01\x00\x10\x00\x00\x00" + b"\0" * 4096)  # 256 MiB declared
        assert rawpeer.refused_within(sock, SLACK) is not None
    assert scp.wait_idle()


def test_a_well_behaved_sender_splits_a_large_instance_into_advertised_pdus(
    start: Callable[..., LimitedScp],
) -> None:
    scp = start(max_pdu_size="16 KiB")
    assert send_with_pynetdicom(scp.port, secondary_capture(3 << 20)) == 0x0000
    assert scp.spool.queue_depth() == 1


@pytest.mark.skipif(shutil.which("storescu") is None, reason="DCMTK storescu not installed")
def test_storescu_gets_a_large_instance_through_the_limits(
    start: Callable[..., LimitedScp], tmp_path: Path
) -> None:
    scp = start(max_pdu_size="16 KiB", max_instance_size="8 MiB", first_request_seconds=2)
    path = tmp_path / "sc.dcm"
    secondary_capture(4 << 20).save_as(path, enforce_file_format=True)
    done = subprocess.run(
        ["storescu", "-aec", GATEWAY_AE, "-xe", "127.0.0.1", str(scp.port), str(path)],
        env=dict(os.environ, TCP_NODELAY="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert scp.spool.queue_depth() == 1


# --- instance size -----------------------------------------------------------------------


def test_an_instance_over_the_size_limit_is_answered_out_of_resources_and_aborted(
    start: Callable[..., LimitedScp],
) -> None:
    scp = start(max_pdu_size="16 KiB", max_instance_size="256 KiB")
    uid = generate_uid()
    sock, _ = associate(scp.port)
    with sock:
        sock.sendall(
            rawpeer.p_data(1, rawpeer.c_store_command(SC_IMAGE, uid), command=True, last=True)
        )
        sent = 0
        try:
            for _ in range(4096):  # up to 64 MiB in 16 KiB PDUs; cut off after 256 KiB
                sock.sendall(rawpeer.p_data(1, b"\0" * 16000, command=False, last=False))
                sent += 16000
        except OSError:
            pass
        pdus = read_until_closed(sock, SLACK)
    kinds = [kind for kind, _ in pdus]
    assert kinds[:1] == [0x04] and 0x07 in kinds, kinds
    assert store_status(pdus[0][1]) == STATUS_OUT_OF_RESOURCES
    assert sent < 64 << 20
    assert scp.wait_idle()
    assert scp.spool.queue_depth() == 0
    assert scp.failures("receive") == 1


def test_an_instance_under_the_size_limit_is_stored(start: Callable[..., LimitedScp]) -> None:
    scp = start(max_pdu_size="64 KiB", max_instance_size="1 MiB")
    assert send_with_pynetdicom(scp.port, secondary_capture(900 << 10)) == 0x0000
    assert send_with_pynetdicom(scp.port, secondary_capture(2 << 20)) != 0x0000
    assert scp.spool.queue_depth() == 1


# --- silent peers ------------------------------------------------------------------------


def test_silent_peers_lose_their_slots_at_the_first_request_deadline(
    start: Callable[..., LimitedScp],
) -> None:
    """Connected and silent, associated and silent, an A-ASSOCIATE-RQ trickled a byte at a
    time: each is cut off after first_request_seconds, and a modality is served again."""
    scp = start(first_request_seconds=1.0, max_associations=3, max_associations_per_source=4)
    silent = socket.create_connection(("127.0.0.1", scp.port), timeout=10)
    associated, _ = associate(scp.port)
    trickling = socket.create_connection(("127.0.0.1", scp.port), timeout=10)
    request = rawpeer.associate_rq([(rawpeer.VERIFICATION, rawpeer.IMPLICIT_LE)])
    began = time.monotonic()
    assert send_with_pynetdicom(scp.port, secondary_capture(1024)) == -1  # every slot taken

    for byte in request[:40]:  # 0.1 s apart: never silent for long, never a whole PDU
        try:
            trickling.sendall(bytes([byte]))
        except OSError:
            break  # cut off
        time.sleep(0.1)
    for sock in (silent, associated, trickling):
        assert rawpeer.refused_within(sock, 1.0 + SLACK) is not None
        sock.close()
    assert time.monotonic() - began < 1.0 + SLACK
    assert scp.wait_idle()
    assert send_with_pynetdicom(scp.port, secondary_capture(1024)) == 0x0000
    assert scp.failures("connection") >= 3


def test_an_association_that_made_a_request_is_not_cut_at_the_deadline(
    start: Callable[..., LimitedScp],
) -> None:
    scp = start(first_request_seconds=0.5)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title=GATEWAY_AE)
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        time.sleep(1.5)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


# --- many connections from one source ------------------------------------------------------


def test_connections_beyond_the_per_source_cap_are_closed_at_accept(
    start: Callable[..., LimitedScp],
) -> None:
    scp = start(max_associations=6, max_associations_per_source=2)
    first, _ = associate(scp.port)
    second, _ = associate(scp.port)
    try:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", scp.port), timeout=10) as extra:
                extra.settimeout(SLACK)
                assert extra.recv(1) == b""  # closed at once, before any DICOM
        assert scp.failures("connection") == 5
        assert scp.active() == 2
    finally:
        first.close()
    assert rawpeer.refused_within(second, 0.1) is None  # the other one is untouched
    deadline = time.monotonic() + SLACK
    while scp.active() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        # The slot the first one held is free again for this source.
        assert send_with_pynetdicom(scp.port, secondary_capture(1024)) == 0x0000
    finally:
        second.close()
