"""The forwarder's C-STORE request, written on the socket by the thread that sends it.

pynetdicom's send_c_store() builds a request primitive, encodes its command set with
pydicom, and queues one P-DATA primitive per fragment for the DUL thread, which wakes for
each, runs it through its state machine, encodes the PDU and writes it. For a small
instance that was most of the forwarder's 1.6-1.7 ms of CPU per instance (bench: a sender
to a DCMTK storescp). An outbox file is already the bytes to send: here the six fixed
elements of the request (`store_request`, PS3.7 9.3.1.1) and the file's dataset, from
its offset on, go out in P-DATA-TF PDUs no longer than the peer takes (PS3.8 9.3.5 and
Annex E), the command and the first fragment in one write.

The answer still comes through pynetdicom: its DUL thread reads and decodes it and queues
the message, which is taken as send_c_store() takes it. That needs the forwarder's reactor
(`requestor_reactor`), which never takes messages off that queue.

Only on a plain TCP socket: with TLS the DUL thread's reads and these writes would share
one OpenSSL connection between two threads, which OpenSSL does not allow; a TLS
association, or one with send events bound (debug logging), takes pynetdicom's route.
While a study is sent nothing else writes on the association: its reactor is parked
(`ReactorGate`) and a Storage SCP sends no requests.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE

from gateway.net.requestor_reactor import takes_no_messages
from gateway.net.store_response import store_request

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["FRAGMENT_CAP", "can_send_directly", "send_stored_file"]

log = logging.getLogger(__name__)

# A peer that announces no limit (0) still gets its data set in pieces of at most this.
FRAGMENT_CAP = 1 << 20
_PDU_HEADER = struct.Struct(">BxL")  # P-DATA-TF: type 0x04, reserved, length
_PDV_HEADER = struct.Struct(">LBB")  # item length, context ID, message control header
_P_DATA_TF = 0x04
# PS3.8 E.2 message control header: bit 0 command, bit 1 last fragment.
_COMMAND_LAST, _DATA, _DATA_LAST = 0x03, 0x00, 0x02
_SEND_EVENTS = (evt.EVT_PDU_SENT, evt.EVT_DATA_SENT, evt.EVT_DIMSE_SENT)


def can_send_directly(assoc: Association) -> bool:
    """Whether this association's requests may be written here (see above)."""
    sock = getattr(assoc.dul.socket, "socket", None)
    return (
        isinstance(sock, socket.socket)
        and not isinstance(sock, ssl.SSLSocket)
        and takes_no_messages(assoc)
        and not any(assoc.get_handlers(event) for event in _SEND_EVENTS)
    )


def _bound_sends(sock: socket.socket, seconds: float | None) -> None:
    """A peer that stops reading mid data set fails a write after `seconds` (the DIMSE
    timeout) instead of holding the sender for ever: the kernel's send timeout, since the
    socket itself blocks without one (pynetdicom clears it after connecting)."""
    if seconds:
        whole = int(seconds)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_SNDTIMEO,
            struct.pack("@ll", whole, int((seconds - whole) * 1_000_000)),
        )


def _pdu(context_id: int, control: int, data: bytes) -> bytes:
    return (
        _PDU_HEADER.pack(_P_DATA_TF, len(data) + 6)
        + _PDV_HEADER.pack(len(data) + 2, context_id, control)
        + data
    )


def send_stored_file(
    assoc: Association,
    context_id: int,
    path: Path,
    offset: int,
    uids: tuple[str, str],
    message_id: int,
) -> Dataset | None:
    """Send the dataset of the file at `path` (from byte `offset`) as a C-STORE of the
    SOP class and instance `uids` on `context_id`, and wait for the answer.

    Returns the status as send_c_store() does: a Dataset with (0000,0900) Status, an empty
    one when no valid answer came (then the association is aborted). None: the command set
    would not fit in one PDU of the peer's; nothing was sent, pynetdicom fragments it.
    OSError from reading the file or writing the socket (also a peer that stopped reading
    for the DIMSE timeout): the message may be cut off, so the caller aborts the association.
    """
    command = store_request(message_id, uids[0].encode("ascii"), uids[1].encode("ascii"))
    peer_maximum = int(assoc.acceptor.maximum_length or 0)
    if peer_maximum and len(command) + 6 > peer_maximum:
        return None
    piece = min(peer_maximum - 6, FRAGMENT_CAP) if peer_maximum else FRAGMENT_CAP
    sock = assoc.dul.socket.socket
    _bound_sends(sock, assoc.dimse_timeout)
    with open(path, "rb") as handle:
        left = os.fstat(handle.fileno()).st_size - handle.seek(offset)
        message = _pdu(context_id, _COMMAND_LAST, command)
        for _ in range(left // max(piece, 1) + 1):  # every turn sends a piece, the last too
            wanted = min(piece, left)
            data = handle.read(wanted)
            if len(data) < wanted:
                raise OSError(f"outbox file shorter than when its sending began ({path.name})")
            left -= len(data)
            message += _pdu(context_id, _DATA if left else _DATA_LAST, data)
            sock.sendall(message)
            message = b""
            if not left:
                break
    _context, answer = assoc.dimse.get_msg(block=True)
    if answer is None:
        assoc._handle_no_response()  # send_c_store()'s own reaction
        return Dataset()
    if type(answer) is not C_STORE or answer.MessageIDBeingRespondedTo != message_id:
        log.error("the destination answered a C-STORE with another message: aborted")
        assoc.abort()
        return Dataset()
    return assoc._check_received_status(answer)  # as send_c_store() reads it
