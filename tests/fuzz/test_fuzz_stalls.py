"""Peers that connect and then stall: the SCP must time them out and free their slots.

In-process SCP (gateway.net.scp with a real spool) with its bounds shortened for the test:
the ACSE timeout (a connection that never sends an A-ASSOCIATE-RQ) and STALLED_PDU_SECONDS
(a peer that stops in the middle of a PDU, which pynetdicom alone would wait on forever).
With max_associations = 2, two stalled peers take every slot; once the bounds expire a
normal sender is served again, and nothing half-received was ever stored.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rawpeer
from mutate import make_mutant, meta_end
from pynetdicom import AE

from gateway.base.metrics import Metrics
from gateway.config import ListenConfig
from gateway.keys.keyed_hash import KeyedHash
from gateway.net import scp
from gateway.stores.spool import Spool

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ACSE_SECONDS = 1.5
STALL_SECONDS = 1.0
BOUND = ACSE_SECONDS + STALL_SECONDS + 3  # plus scheduling slack on a busy machine


class Scp:
    def __init__(self, server: object, spool: Spool) -> None:
        self.server = server
        self.spool = spool
        self.port = int(server.server_address[1])  # type: ignore[attr-defined]

    def active(self) -> int:
        return len(self.server.active_associations)  # type: ignore[attr-defined]


@pytest.fixture
def short_bounds_scp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scp]:
    monkeypatch.setattr(scp, "STALLED_PDU_SECONDS", STALL_SECONDS)
    listen = ListenConfig(ae_title="DEID_GW", max_associations=2)
    listen = listen.model_copy(update={"host": "127.0.0.1", "port": 0})
    spool = Spool(tmp_path / "storage", KeyedHash(bytes(range(32))))
    server = scp.start_scp(listen, spool, Metrics())
    server.ae.acse_timeout = ACSE_SECONDS
    try:
        yield Scp(server, spool)
    finally:
        scp.stop_scp(server, timeout=5)
        spool.close()


def _sender_store(port: int, path: Path) -> int | None:
    """C-STORE one file; the status, or None if the association was refused."""
    ae = AE(ae_title="MODALITY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(CT_IMAGE, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="DEID_GW")
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(path)
        return int(status.Status) if "Status" in status else -1
    finally:
        assoc.release()


def _stalled_store(port: int, body: bytes, uid: str) -> socket.socket:
    """An association that sends a C-STORE command and half its dataset, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(rawpeer.associate_rq([(CT_IMAGE.encode(), rawpeer.EXPLICIT_LE)]))
    kind, _ = rawpeer.read_pdu(sock)
    assert kind == 0x02, kind
    sock.sendall(rawpeer.p_data(1, rawpeer.c_store_command(CT_IMAGE, uid), command=True, last=True))
    # A P-DATA whose PDU length promises the whole dataset, of which half arrives.
    pdv = rawpeer.p_data(1, body, command=False, last=True)
    sock.sendall(pdv[: len(pdv) // 2])
    return sock


def test_stalled_and_silent_peers_are_timed_out_and_free_their_slots(
    short_bounds_scp: Scp, tmp_path: Path
) -> None:
    port = short_bounds_scp.port
    mutant = make_mutant("CT_small.dcm", (), random.Random(5))
    good = tmp_path / "good.dcm"
    good.write_bytes(mutant.data)
    body = mutant.data[meta_end(mutant.data) :]

    stalled = [_stalled_store(port, body, mutant.sop_instance_uid) for _ in range(2)]
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    cut_request = socket.create_connection(("127.0.0.1", port), timeout=10)
    cut_request.sendall(rawpeer.associate_rq([(rawpeer.VERIFICATION, rawpeer.IMPLICIT_LE)])[:40])
    began = time.monotonic()

    # Both slots are taken: a sender is refused (this is what a stall must not make last).
    assert _sender_store(port, good) is None

    for sock in [*stalled, silent, cut_request]:
        assert rawpeer.refused_within(sock, BOUND) is not None
        sock.close()
    freed = time.monotonic() - began
    deadline = time.monotonic() + BOUND
    while short_bounds_scp.active() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert short_bounds_scp.active() == 0

    # Nothing half-received was kept; the next sender is served.
    assert short_bounds_scp.spool.queue_depth() == 0
    assert _sender_store(port, good) == 0x0000
    assert short_bounds_scp.spool.queue_depth() == 1
    assert freed < BOUND
