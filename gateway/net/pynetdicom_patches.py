"""Every change to pynetdicom's associations that reaches past its public API, in one place.

These depend on pynetdicom's internals, so pyproject.toml pins the series they were written
for (`pynetdicom>=3.0.4,<3.1`) and `PATCHES_APPLY` says whether the installed version is in
it. The server side (the accept loop, the drain) is in `pynetdicom_server`.

Acceptor speed. pynetdicom (3.0.4) polls: the association's reactor sleeps 1 ms between
looks at the DIMSE message queue, the DUL reactor 1 ms between looks at the socket, and a
PDU is read 4 KiB per `recv` call. With the sender waiting for each C-STORE answer, those
naps add up to a large share of the time per small instance, and a 128 KiB PDU costs 32
system calls. `tune_association` (called from EVT_CONN_OPEN, before the association starts)
replaces them on that one association:

- the DUL reactor naps `DUL_POLL_SECONDS` instead of 1 ms (a few percent of a core per
  open association);
- the acceptor reactor waits on the message queue itself, so a complete C-STORE is served
  the moment the DUL hands it over, and only checks release/abort/idle between messages;
- `recv` reads up to 256 KiB per call (the same bytes, fewer calls);
- when pynetdicom's logger is off below WARNING (as `dicom-gateway run` sets it), its
  standard logging handlers are unbound: they format every PDU and DIMSE message for
  INFO/DEBUG lines nobody sees;
- a plain C-STORE response (a status, no comment) is encoded directly (7 fixed elements,
  PS3.7 9.3.1.2) instead of through a pydicom Dataset written twice (~0.5 ms each).

The replacement reactor is a copy of pynetdicom's loop with the wait moved; it is used only
on the pynetdicom versions it was checked against (`PATCHES_APPLY`), other versions keep
the stock reactor and lose only speed.

Requestor correctness. `install_reactor_gate` keeps the forwarder's reactor parked while it
sends a study (see `ReactorGate`), and `send_files_as_stored` makes C-STORE stream a file's
encoded bytes instead of decoding and re-encoding it.
"""

from __future__ import annotations

import logging
import queue
import re
import struct
import threading
import time
import types
from typing import TYPE_CHECKING, Any, cast

import pynetdicom
from pynetdicom import _config, evt
from pynetdicom.association import LOGGER as PYNETDICOM_LOG
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

if TYPE_CHECKING:
    from collections.abc import Callable

    from pynetdicom.association import Association
    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.dul import DULServiceProvider
    from pynetdicom.transport import AssociationSocket

__all__ = [
    "DUL_POLL_SECONDS",
    "PATCHES_APPLY",
    "WRITTEN_FOR",
    "ReactorGate",
    "install_reactor_gate",
    "reactor_gate",
    "send_files_as_stored",
    "store_response_command",
    "tune_association",
    "tune_connection",
]

DUL_POLL_SECONDS = 0.0001
# The pynetdicom series the patches below copy and replace code from: [3.0.4, 3.1), the
# same range as the pin in pyproject.toml.
WRITTEN_FOR = ((3, 0, 4), (3, 1))


def _in_written_series(version: str) -> bool:
    """Whether a pynetdicom version string ("3.0.4", "3.1.0.dev0") lies in WRITTEN_FOR."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    low, high = WRITTEN_FOR
    return low <= numbers < high


PATCHES_APPLY = _in_written_series(pynetdicom.__version__)
# How long the acceptor waits for a message before it checks release, abort and the idle
# timer: pynetdicom's own nap, so those are noticed as fast as before.
_MESSAGE_WAIT_SECONDS = 0.001
_RECV_CHUNK = 1 << 18
# How often a wait for the peer's next PDU checks that the connection is still there.
_GONE_CHECK_SECONDS = 0.2
_LOGGING_EVENTS = (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT, evt.EVT_PDU_RECV, evt.EVT_PDU_SENT)


def tune_association(assoc: Association) -> None:
    """Shorter DUL naps, an acceptor that waits on its queue, larger reads, no logging work
    for disabled log levels, direct C-STORE responses (see above)."""
    tune_connection(assoc)
    if not PATCHES_APPLY:
        return
    assoc._run_reactor = types.MethodType(_acceptor_reactor, assoc)  # type: ignore[method-assign]
    dul = assoc.dul
    dul.receive_pdu = types.MethodType(  # type: ignore[method-assign]
        _receive_until_gone(type(dul).receive_pdu), dul
    )
    dimse = assoc.dimse
    dimse.send_msg = types.MethodType(  # type: ignore[method-assign]
        _sender(type(dimse).send_msg), dimse
    )


def tune_connection(assoc: Association) -> None:
    """What helps a requestor (the forwarder) as much as an acceptor: shorter DUL naps, no
    logging work for disabled log levels, larger reads. Call it on EVT_CONN_OPEN."""
    assoc.dul._run_loop_delay = DUL_POLL_SECONDS
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
        for event in _LOGGING_EVENTS:
            for handler, _args in list(cast("list[Any]", assoc.get_handlers(event))):
                if getattr(handler, "__module__", "") == "pynetdicom._handlers":
                    assoc.unbind(event, handler)
    sock = assoc.dul.socket
    if sock is not None and PATCHES_APPLY:
        sock.recv = types.MethodType(_recv, sock)  # type: ignore[method-assign]


def send_files_as_stored() -> None:
    """Make `send_c_store(path)` send a file's encoded bytes, streamed in PDU-sized pieces,
    instead of decoding and re-encoding it: bit-preserving, fast, and a 2 GB multi-frame
    does not have to fit in memory.

    pynetdicom's documented switch for it lives in its `_config` module. Process-wide; it
    then requires an accepted context with the file's exact transfer syntax, which the
    forwarder checks before sending.
    """
    _config.STORE_SEND_CHUNKED_DATASET = True


class ReactorGate(threading.Event):
    """Stands in for pynetdicom's reactor checkpoint to keep the reactor parked while we send.

    pynetdicom (3.0.4) pauses its association reactor around each send_c_store() and restarts
    it afterwards, but the next send_c_store() only waits on a flag that the restarted reactor
    may not have reset yet; with a fast peer the reactor then takes our C-STORE response off
    the queue ("Received unexpected C-STORE service message") and we wait for the DIMSE
    timeout. While `held`, the restart is a no-op, so from the first request on the reactor
    stays parked until the study is sent. It only serves requests that the peer initiates,
    which a Storage SCP does not send, and aborts are still seen by send_c_store().
    """

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        super().set()

    def set(self) -> None:
        if not self.held:
            super().set()

    def release_hold(self) -> None:
        self.held = False
        super().set()


def install_reactor_gate(assoc: Association) -> None:
    """Put a `ReactorGate` in place of the association's reactor checkpoint (the private
    `_reactor_checkpoint` Event). Call it on EVT_CONN_OPEN, before the reactor loop starts;
    an association without that Event keeps its own."""
    if isinstance(getattr(assoc, "_reactor_checkpoint", None), threading.Event):
        assoc._reactor_checkpoint = ReactorGate()


def reactor_gate(assoc: Association) -> ReactorGate | None:
    """The gate `install_reactor_gate` put on this association, if it did."""
    gate = getattr(assoc, "_reactor_checkpoint", None)
    return gate if isinstance(gate, ReactorGate) else None


def _sender(
    original: Callable[[DIMSEServiceProvider, Any, int], None],
) -> Callable[[DIMSEServiceProvider, Any, int], None]:
    def send_msg(self: DIMSEServiceProvider, primitive: Any, context_id: int) -> None:
        """pynetdicom's `send_msg`, with plain C-STORE responses encoded directly."""
        command = store_response_command(primitive)
        maximum = self.maximum_pdu_size
        if (
            command is None
            or (maximum and len(command) + 6 > maximum)  # PDV header: 4 length + 2
            or self.assoc.get_handlers(evt.EVT_DIMSE_SENT)
        ):
            original(self, primitive, context_id)
            return
        pdata = P_DATA()
        # Message control header 0x03: a command, last fragment (PS3.8 E.2).
        pdata.presentation_data_value_list = [[context_id, b"\x03" + command]]
        self.dul.send_pdu(pdata)

    return send_msg


_US = struct.Struct("<HHLH")  # tag, 4-byte length, US value (implicit VR little endian)
_UL = struct.Struct("<HHLL")


def store_response_command(primitive: Any) -> bytes | None:
    """The implicit VR little-endian command set of a C-STORE-RSP carrying only a status
    (what pynetdicom encodes for it, byte for byte), or None for any other message."""
    if type(primitive) is not C_STORE or primitive.MessageIDBeingRespondedTo is None:
        return None
    status = primitive.Status
    if (
        not isinstance(status, int)
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
        or primitive.AffectedSOPClassUID is None
        or primitive.AffectedSOPInstanceUID is None
    ):
        return None
    body = b"".join(
        (
            _uid_element(0x0002, str(primitive.AffectedSOPClassUID)),
            _US.pack(0x0000, 0x0100, 2, 0x8001),  # Command Field: C-STORE-RSP
            _US.pack(0x0000, 0x0120, 2, primitive.MessageIDBeingRespondedTo),
            _US.pack(0x0000, 0x0800, 2, 0x0101),  # Command Data Set Type: no data set
            _US.pack(0x0000, 0x0900, 2, status),
            _uid_element(0x1000, str(primitive.AffectedSOPInstanceUID)),
        )
    )
    return _UL.pack(0x0000, 0x0000, 4, len(body)) + body


def _uid_element(element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def _recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """pynetdicom's `AssociationSocket.recv` (blocking until `nr_bytes` arrived, or fewer
    when the peer closes) with larger reads. Memory grows only with bytes received, never
    with the length a peer declares."""
    sock = self.socket
    assert sock is not None
    received = bytearray()
    while len(received) < nr_bytes:
        chunk = sock.recv(min(_RECV_CHUNK, nr_bytes - len(received)))
        if not chunk:
            break
        received += chunk
    return received


def _receive_until_gone(
    original: Callable[[DULServiceProvider, bool, float | None], Any],
) -> Callable[[DULServiceProvider, bool, float | None], Any]:
    def receive_pdu(
        self: DULServiceProvider, wait: bool = False, timeout: float | None = None
    ) -> Any:
        """pynetdicom's `receive_pdu`, except that a wait ends once the DUL has stopped.

        A peer that connects and closes before its A-ASSOCIATE-RQ (a load-balancer probe, a
        port scan) stops the DUL with nothing queued, and the acceptor would hold the
        association slot until the ACSE timeout (30 s) ran out; a few probes would then
        keep modalities out. Nothing can arrive once the DUL thread has ended.
        """
        if not wait:
            return original(self, False, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _GONE_CHECK_SECONDS
            if deadline is not None:
                left = max(0.0, min(left, deadline - time.monotonic()))
            primitive = original(self, True, left)
            if primitive is not None:
                return primitive
            if self.ident is not None and not self.is_alive() and self.to_user_queue.empty():
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None

    return receive_pdu


def _acceptor_reactor(self: Association) -> None:
    """pynetdicom 3.0.4's `Association._run_reactor` for an acceptor, waiting on the DIMSE
    message queue instead of sleeping 1 ms before each look at it."""
    self._is_paused = False
    messages = self.dimse.msg_queue
    while not self._kill:
        # Paused while a send_*() of ours runs (pynetdicom's checkpoint, kept as is).
        self._is_paused = True
        self._reactor_checkpoint.wait()
        self._is_paused = False

        try:
            context_id, msg = messages.get(timeout=_MESSAGE_WAIT_SECONDS)
        except queue.Empty:
            msg = None
        if msg:
            self._serve_request(msg, cast(int, context_id))
            continue  # more messages first; release and abort come after them on the wire

        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            PYNETDICOM_LOG.info("Association Released")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return

        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)  # so that EVT_ACSE_RECV fires for subscribers
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return

        if not self.dul.is_alive():
            self.kill()
            return

        if self.dul.idle_timer_expired():
            PYNETDICOM_LOG.error("Network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return
