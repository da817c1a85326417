"""A DICOM peer written with struct and a socket: it can send what no toolkit would.

PS3.8 9.3: each PDU is a type byte, a reserved byte, a 4-byte big-endian length and its
items. Built here: A-ASSOCIATE-RQ (to be cut short or given wrong lengths), P-DATA-TF with
a C-STORE-RQ command and dataset fragments (to stop halfway), and reading one PDU back.
"""

from __future__ import annotations

import socket
import struct
import time

from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def associate_rq(
    contexts: list[tuple[bytes, bytes]],
    *,
    called: bytes = b"DEID_GW",
    calling: bytes = b"FUZZER",
    max_pdu: int = 16384,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing `contexts` (abstract syntax, transfer syntax)."""
    body = struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + b"\0" * 32
    body += _item(0x10, APPLICATION_CONTEXT)
    for index, (abstract, transfer) in enumerate(contexts):
        inner = _item(0x30, abstract) + _item(0x40, transfer)
        body += _item(0x20, struct.pack(">BBBB", 2 * index + 1, 0, 0, 0) + inner)
    body += _item(0x50, _item(0x51, struct.pack(">I", max_pdu)))
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def p_data(context_id: int, fragment: bytes, *, command: bool, last: bool) -> bytes:
    """One P-DATA-TF PDU holding one PDV (PS3.8 9.3.5.1, E.2)."""
    header = (0x01 if command else 0x00) | (0x02 if last else 0x00)
    pdv = struct.pack(">IBB", len(fragment) + 2, context_id, header) + fragment
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def c_store_command(sop_class: str, sop_instance: str, message_id: int = 1) -> bytes:
    """A C-STORE-RQ command set, Implicit VR Little Endian as PS3.7 requires."""
    return command_set(
        AffectedSOPClassUID=sop_class,
        CommandField=0x0001,
        MessageID=message_id,
        Priority=0,
        CommandDataSetType=0x0000,
        AffectedSOPInstanceUID=sop_instance,
    )


def command_set(**elements: object) -> bytes:
    """A command set of `elements` with its group length, Implicit VR Little Endian."""
    command = Dataset()
    command.CommandGroupLength = 0
    for keyword, value in elements.items():
        setattr(command, keyword, value)
    encoded = encode(command, True, True)
    assert encoded is not None
    command.CommandGroupLength = len(encoded) - 12
    encoded = encode(command, True, True)
    assert encoded is not None
    return encoded


def read_pdu(sock: socket.socket, timeout: float = 10.0) -> tuple[int, bytes]:
    """(PDU type, body) of the next PDU; (0, b"") when the peer closed first."""
    sock.settimeout(timeout)
    header = _read_exactly(sock, 6)
    if len(header) < 6:
        return 0, b""
    kind, _, length = struct.unpack(">BBI", header)
    return kind, _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(min(65536, count - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def refused_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed the connection (EOF or a reset) or answered with an
    A-ABORT or A-ASSOCIATE-RJ PDU; None if none of that happened within `seconds`."""
    began = time.monotonic()
    deadline = began + seconds
    for _ in range(100_000):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return time.monotonic() - began
        if not data or data[0] in (0x03, 0x07):
            return time.monotonic() - began
    return None


def send_unless_dropped(sock: socket.socket, data: bytes) -> bool:
    """Send `data`; False if the peer dropped the connection first (a broken pipe or a reset),
    which is how a server may refuse a PDU it will not read to the end."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed or unplugged sender does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
