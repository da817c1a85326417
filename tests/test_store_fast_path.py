"""C-STORE served on the DUL thread (`store_fast_path`): the same answers and the same spool
as pynetdicom's route, whatever way a peer packs its fragments.

Raw peers (tests/fuzz/rawpeer.py) and storescu send to the real SCP in-process on a free
127.0.0.1 port with a real spool. pynetdicom's C-STORE handler (`scp._on_store`) is wrapped
to count who served each request: the fast route for plain requests, pynetdicom's for what
the fast route hands on (a command set in two fragments), and both answer alike.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz import rawpeer
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import SecondaryCaptureImageStorage as SC_IMAGE
from service_harness import spool_files, storescu, wait_until

from gateway.base.metrics import Metrics
from gateway.config import ListenConfig
from gateway.keys.keyed_hash import KeyedHash
from gateway.net import scp as scp_module
from gateway.net.scp import start_scp, stop_scp
from gateway.net.store_fast_path import _command_values
from gateway.stores.spool import Spool
from gateway.tools.synthetic import make_ct_study

KEYED_HASH = KeyedHash(bytes(range(32)))
SUCCESS = struct.pack("<HHLH", 0x0000, 0x0900, 2, 0x0000)


class Running:
    def __init__(self, port: int, spool: Spool, served_by_pynetdicom: list[int]) -> None:
        self.port = port
        self.spool = spool
        self.served_by_pynetdicom = served_by_pynetdicom

    def stored(self) -> list[Path]:
        return [p for p in spool_files(self.spool.spool_dir) if "slots" not in p.parts]

    def leftovers(self) -> list[Path]:
        return spool_files(self.spool.spool_dir / "slots")


@pytest.fixture
def scp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    served: list[int] = []
    on_store = scp_module._on_store

    def counted(event: Any, *args: Any) -> int:
        served.append(1)
        return on_store(event, *args)

    monkeypatch.setattr(scp_module, "_on_store", counted)
    listen = ListenConfig(ae_title="DEID_GW").model_copy(update={"port": 0})
    spool = Spool(tmp_path / "storage", KEYED_HASH)
    server = start_scp(listen, spool, Metrics())
    try:
        yield Running(int(server.server_address[1]), spool, served)
    finally:
        stop_scp(server, timeout=5)
        spool.close()


def associate(port: int) -> socket.socket:
    """SC Image Storage on context 1, Verification on context 3."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    contexts = [
        (str(SC_IMAGE).encode(), rawpeer.EXPLICIT_LE),
        (rawpeer.VERIFICATION, rawpeer.IMPLICIT_LE),
    ]
    sock.sendall(rawpeer.associate_rq(contexts))
    assert rawpeer.read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
    return sock


def pdv(context_id: int, fragment: bytes, *, command: bool, last: bool) -> bytes:
    return rawpeer.p_data(context_id, fragment, command=command, last=last)[6:]


def p_data_tf(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


def instance(study: str = "1.2.3.4") -> tuple[str, bytes]:
    uid = generate_uid()
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = SC_IMAGE, uid, study
    ds.Modality = "OT"
    ds.PatientName = "FASTPATH^PATIENT"
    data = encode(ds, False, True)
    assert data is not None
    return uid, data


def echo_command(message_id: int) -> bytes:
    return rawpeer.command_set(
        AffectedSOPClassUID=rawpeer.VERIFICATION.decode(),
        CommandField=0x0030,
        MessageID=message_id,
        CommandDataSetType=0x0101,
    )


def begin_store(sock: socket.socket, uid: str, data: bytes) -> None:
    """A C-STORE-RQ and the first 40 bytes of its data set, in one P-DATA-TF."""
    sock.sendall(
        p_data_tf(
            pdv(1, rawpeer.c_store_command(str(SC_IMAGE), uid), command=True, last=True),
            pdv(1, data[:40], command=False, last=False),
        )
    )


def answers(sock: socket.socket, count: int) -> list[bytes]:
    """The next `count` P-DATA-TF bodies (anything else fails the test)."""
    got = []
    for _ in range(count):
        kind, body = rawpeer.read_pdu(sock)
        assert kind == 0x04, f"PDU type {kind} instead of an answer"
        got.append(body)
    return got


def message_id(answer: bytes) -> int:
    at = answer.index(struct.pack("<HHL", 0x0000, 0x0120, 2))
    return int(struct.unpack("<H", answer[at + 8 : at + 10])[0])


def test_storescu_is_served_on_the_fast_route(scp: Running, tmp_path: Path) -> None:
    files = make_ct_study(tmp_path / "ct", instances=3, rows=32, columns=32)
    run = storescu(scp.port, files)
    assert set(run.statuses.values()) == {"Success"}, run.output
    assert scp.spool.queue_depth() == 3
    assert scp.served_by_pynetdicom == []  # every request went the fast route


def test_two_stores_and_an_echo_in_one_p_data_are_each_answered(scp: Running) -> None:
    """PS3.8 9.3.5: one P-DATA-TF may carry fragments of several messages in order."""
    (uid1, data1), (uid2, data2) = instance(), instance()
    packed = p_data_tf(
        pdv(1, rawpeer.c_store_command(str(SC_IMAGE), uid1, 7), command=True, last=True),
        pdv(1, data1[:30], command=False, last=False),
        pdv(1, data1[30:], command=False, last=True),
        pdv(1, rawpeer.c_store_command(str(SC_IMAGE), uid2, 8), command=True, last=True),
        pdv(1, data2, command=False, last=True),
        pdv(3, echo_command(9), command=True, last=True),
    )
    with associate(scp.port) as sock:
        sock.sendall(packed)
        got = answers(sock, 3)
    assert sorted(message_id(a) for a in got) == [7, 8, 9]
    assert all(SUCCESS in a for a in got)
    assert scp.spool.queue_depth() == 2
    stored = sorted(p.read_bytes() for p in scp.stored())
    assert len(stored) == 2
    assert {data1, data2} == {b[-len(data1) :] for b in stored if b.endswith(data1)} | {
        b[-len(data2) :] for b in stored if b.endswith(data2)
    }
    assert scp.served_by_pynetdicom == []
    assert scp.leftovers() == []


def test_a_command_set_in_two_fragments_takes_pynetdicoms_route(scp: Running) -> None:
    uid, data = instance()
    command = rawpeer.c_store_command(str(SC_IMAGE), uid, 5)
    with associate(scp.port) as sock:
        sock.sendall(rawpeer.p_data(1, command[:20], command=True, last=False))
        sock.sendall(rawpeer.p_data(1, command[20:], command=True, last=True))
        sock.sendall(rawpeer.p_data(1, data, command=False, last=True))
        (answer,) = answers(sock, 1)
        # ... and the next plain request is the fast route's again.
        uid2, data2 = instance()
        sock.sendall(
            p_data_tf(
                pdv(1, rawpeer.c_store_command(str(SC_IMAGE), uid2, 6), command=True, last=True),
                pdv(1, data2, command=False, last=True),
            )
        )
        (second,) = answers(sock, 1)
    assert SUCCESS in answer and message_id(answer) == 5
    assert SUCCESS in second and message_id(second) == 6
    assert scp.served_by_pynetdicom == [1]
    assert scp.spool.queue_depth() == 2


@pytest.mark.parametrize(
    "intruder",
    [
        pytest.param(lambda uid: pdv(1, b"\0" * 12, command=True, last=True), id="command"),
        pytest.param(lambda uid: pdv(3, b"\0" * 12, command=False, last=True), id="context"),
        pytest.param(lambda uid: struct.pack(">IBB", 40, 1, 0) + b"\0" * 4, id="short-item"),
    ],
)
def test_a_fragment_that_breaks_the_protocol_mid_data_set_aborts_and_keeps_nothing(
    scp: Running, intruder: Any
) -> None:
    uid, data = instance()
    with associate(scp.port) as sock:
        begin_store(sock, uid, data)
        sock.sendall(p_data_tf(intruder(uid)))
        kinds = []
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            for _ in range(5):
                kind, _body = rawpeer.read_pdu(sock, timeout=5)
                if kind == 0:
                    break
                kinds.append(kind)
    assert 0x07 in kinds, kinds  # A-ABORT
    assert 0x04 not in kinds  # never answered
    wait_until(lambda: not scp.leftovers(), timeout=10, what="the cut-off file removed")
    assert scp.spool.queue_depth() == 0
    assert scp.stored() == []


def test_a_sender_gone_mid_data_set_leaves_nothing(scp: Running) -> None:
    uid, data = instance()
    with associate(scp.port) as sock:
        begin_store(sock, uid, data)
        wait_until(lambda: bool(scp.leftovers()), timeout=10, what="the file being written")
    wait_until(lambda: not scp.leftovers(), timeout=10, what="the cut-off file removed")
    assert scp.spool.queue_depth() == 0


def test_a_request_the_spool_refuses_is_answered_with_its_status(scp: Running) -> None:
    """A data set whose SOP Instance UID differs from the request's: 0xA900, nothing kept."""
    _uid, data = instance()
    with associate(scp.port) as sock:
        sock.sendall(
            p_data_tf(
                pdv(
                    1,
                    rawpeer.c_store_command(str(SC_IMAGE), generate_uid(), 3),
                    command=True,
                    last=True,
                ),
                pdv(1, data, command=False, last=True),
            )
        )
        (answer,) = answers(sock, 1)
    assert struct.pack("<HHLH", 0x0000, 0x0900, 2, 0xA900) in answer
    assert message_id(answer) == 3
    assert scp.spool.queue_depth() == 0
    assert scp.leftovers() == []


def test_command_values_are_read_only_from_a_whole_command_group() -> None:
    command = rawpeer.c_store_command(str(SC_IMAGE), "1.2.3", 4)
    values = _command_values(memoryview(command))
    assert values is not None
    assert values[0x1000].rstrip(b"\0") == b"1.2.3"
    assert values[0x0110] == struct.pack("<H", 4)
    assert _command_values(memoryview(command[:-3])) is None  # a length past the end
    other_group = struct.pack("<HHL", 0x0008, 0x0016, 2) + b"1\0"
    assert _command_values(memoryview(command + other_group)) is None
    assert _command_values(memoryview(echo_command(1))) is None  # no SOP Instance UID
