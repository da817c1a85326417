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

- the DUL reactor waits in select() for the peer's bytes or for a primitive to send
  (`dul_wakeup`), instead of napping 1 ms between looks;
- the acceptor reactor waits on the message queue itself, so a complete C-STORE is served
  the moment the DUL hands it over, and only checks release/abort/idle between messages;
- `recv` reads up to 256 KiB per call (the same bytes, fewer calls);
- when pynetdicom's logger is off below WARNING (as `dicom-gateway run` sets it), its
  standard logging handlers are unbound: they format every PDU and DIMSE message for
  INFO/DEBUG lines nobody sees;
- a plain C-STORE response is encoded directly (`store_response`).

The replacement reactor is a copy of pynetdicom's loop with the wait moved; it is used only
on the pynetdicom versions it was checked against (`PATCHES_APPLY`), other versions keep
the stock reactor and lose only speed (and the receive limits below).

Acceptor limits (`ReceiveLimits`, from `listen.*`). The PDU reader, a copy of pynetdicom's
`_read_pdu_data`, asks a `MessageMeter` about each PDU header before reading the body and
about each P-DATA-TF before pynetdicom buffers it: a refused PDU is never read, a data set
over the limit is answered 0xA700 and aborted. The first-request deadline bounds the wait
for the A-ASSOCIATE-RQ (`receive_pdu`), every read before the first P-DATA-TF (`recv`: a
trickling peer gains nothing) and the wait for a request once associated (the reactor).

Streamed receive (`pynetdicom_receive`, with `open_file`): each C-STORE data set is written
into a spool file as its fragments arrive, never held whole; what an ended association
leaves unanswered is removed.

C-STORE on the DUL thread (`store_fast_path`, with `serve_store`): a plain C-STORE request
is taken off the P-DATA-TF bytes, written into its file and answered by the thread that
read it, without pynetdicom's PDU objects, state machine, DIMSE decoding or the two thread
hand-overs; anything else is handed to pynetdicom's DIMSE layer as before. Its DUL does
not nap between PDUs.

Requestor speed. `send_files_as_stored` makes C-STORE stream a file's encoded bytes instead
of decoding and re-encoding it (the forwarder's reactor: `requestor_reactor`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import re
import socket
import struct
import time
import types
from typing import TYPE_CHECKING, Any, cast

import pynetdicom
from pynetdicom import _config, evt
from pynetdicom.association import LOGGER as PYNETDICOM_LOG
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from gateway.net.dul_wakeup import is_waking, wake_on_work
from gateway.net.pynetdicom_receive import OpenFile, discard_unserved, receive_into_files
from gateway.net.receive_limits import MessageMeter, ReceiveLimits, Refusal, p_data_pdu
from gateway.net.requestor_reactor import association_ended, idle_timed_out
from gateway.net.store_fast_path import FastStore, Serve, fast_store_of
from gateway.net.store_response import store_response, store_response_command

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


def tune_association(
    assoc: Association,
    limits: ReceiveLimits | None = None,
    open_file: OpenFile | None = None,
    serve_store: Serve | None = None,
) -> None:
    """Shorter DUL naps, an acceptor that waits on its queue, larger reads, no logging work
    for disabled log levels, direct C-STORE responses, `limits` enforced, data sets
    written into files from `open_file` as they arrive, and with `serve_store` (and
    `limits`) plain C-STORE requests served on the DUL thread (see above)."""
    tune_connection(assoc)
    if not PATCHES_APPLY:
        return
    if open_file is not None:
        receive_into_files(assoc, open_file)
    meter = MessageMeter(limits) if limits is not None else None
    fast = (
        FastStore(assoc, open_file, serve_store)
        if open_file is not None and serve_store is not None and FastStore.applies(assoc)
        else None
    )
    if fast is not None and is_waking(assoc):
        # The DUL naps after every turn that queued no event for its state machine, which
        # is every P-DATA-TF `fast` takes: 2-4 naps an instance. Its socket wait is where
        # it rests (dul_wakeup), so the nap only costs time.
        assoc.dul._run_loop_delay = 0
    assoc._run_reactor = types.MethodType(  # type: ignore[method-assign]
        functools.partial(_acceptor_reactor, meter=meter), assoc
    )
    dul = assoc.dul
    dul.receive_pdu = types.MethodType(  # type: ignore[method-assign]
        _receive_until_gone(type(dul).receive_pdu, meter), dul
    )
    if meter is not None:
        dul._read_pdu_data = types.MethodType(  # type: ignore[method-assign]
            functools.partial(_read_pdu_within_limits, meter=meter, fast=fast), dul
        )
        sock = dul.socket
        if sock is not None and sock.socket is not None:
            recv = functools.partial(_recv, meter=meter, stall=sock.socket.gettimeout())
            sock.recv = types.MethodType(recv, sock)  # type: ignore[method-assign]
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
        wake_on_work(assoc)


def send_files_as_stored() -> None:
    """Make `send_c_store(path)` send a file's encoded bytes, streamed in PDU-sized pieces,
    instead of decoding and re-encoding it: bit-preserving, fast, and a 2 GB multi-frame
    does not have to fit in memory.

    pynetdicom's documented switch for it lives in its `_config` module. Process-wide; it
    then requires an accepted context with the file's exact transfer syntax, which the
    forwarder checks before sending.
    """
    _config.STORE_SEND_CHUNKED_DATASET = True


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


def _recv(
    self: AssociationSocket,
    nr_bytes: int,
    meter: MessageMeter | None = None,
    stall: float | None = None,
) -> bytearray:
    """pynetdicom's `AssociationSocket.recv` (blocking until `nr_bytes` arrived, or fewer
    when the peer closes) with larger reads. Memory grows only with bytes received, never
    with the length a peer declares. Before the first request, each read also ends at the
    meter's deadline (TimeoutError, which pynetdicom takes for a closed connection)."""
    sock = self.socket
    assert sock is not None
    received = bytearray()
    while len(received) < nr_bytes:
        left = meter.seconds_left() if meter is not None else None
        if left is not None:
            if left <= 0:
                raise TimeoutError("first-request deadline passed")
            sock.settimeout(left if stall is None else min(stall, left))
        try:
            chunk = sock.recv(min(_RECV_CHUNK, nr_bytes - len(received)))
        finally:
            if left is not None:
                sock.settimeout(stall)
        if not chunk:
            break
        received += chunk
    return received


def _read_pdu_within_limits(
    self: DULServiceProvider, meter: MessageMeter, fast: FastStore | None = None
) -> None:
    """pynetdicom 3.0.4's `DULServiceProvider._read_pdu_data` (one PDU off the socket, its
    FSM event queued) with `meter` asked before the body is read and before pynetdicom sees
    a P-DATA-TF, which `fast` takes first when given. Events as there: Evt17 for a
    connection gone, Evt19 for an invalid PDU."""
    sock = cast("AssociationSocket", self.socket)
    try:
        bytestream = sock.recv(6)
        if len(bytestream) < 6:
            raise ConnectionError("closed between PDUs")
        pdu_type, _, pdu_length = struct.unpack(">BBL", bytestream)
        if pdu_type not in range(0x01, 0x08):
            self.event_queue.put("Evt19")
            return
        refusal = meter.check_header(pdu_type, pdu_length)
        if refusal is None:
            bytestream += sock.recv(pdu_length)
            if len(bytestream) != 6 + pdu_length:
                raise ConnectionError("closed inside a PDU")
            if pdu_type == 0x04:
                refusal = meter.count_p_data(memoryview(bytestream)[6:])
    except (OSError, TimeoutError):
        self.event_queue.put("Evt17")
        return
    if refusal is not None:
        _refuse(self, meter, refusal)
        return
    if pdu_type == 0x04 and fast is not None and fast.take(memoryview(bytestream)[6:]):
        return
    try:
        pdu, event = self._decode_pdu(bytestream)
    except Exception as exc:  # pynetdicom's own handling: an invalid PDU
        PYNETDICOM_LOG.error("Unable to decode the received PDU data: %s", type(exc).__name__)
        self.event_queue.put("Evt19")
        return
    self.event_queue.put(event)
    self._recv_pdu.put(pdu)


def _refuse(dul: DULServiceProvider, meter: MessageMeter, refusal: Refusal) -> None:
    """Answer the C-STORE in progress 0xA700 when asked to, send an A-ABORT and close: the
    rest of what the peer declared is never read. Runs on the DUL thread, which owns the
    socket's writes."""
    if meter.limits.on_refusal is not None:
        meter.limits.on_refusal(dul.assoc, refusal)
    sock = dul.socket
    answer = _out_of_resources_answer(dul) if refusal.out_of_resources else b""
    if sock is not None and sock.socket is not None:
        with contextlib.suppress(OSError):
            sock.socket.sendall(answer + refusal.abort_pdu())
            sock.socket.shutdown(socket.SHUT_RDWR)
    dul.event_queue.put("Evt17")  # as for a connection closed: A-P-ABORT to the acceptor


def _out_of_resources_answer(dul: DULServiceProvider) -> bytes:
    """A C-STORE-RSP 0xA700 (PS3.4 B.2.3) to the request being received, from its command
    set (complete before any data set fragment, PS3.7 9.3.1.1); empty for anything else."""
    fast = fast_store_of(dul.assoc)
    if fast is not None and fast.request is not None:
        request = fast.request
        answer = store_response(
            request.message_id, request.sop_class_uid, request.sop_instance_uid, 0xA700
        )
        return p_data_pdu(request.context_id, answer)
    message = dul.assoc.dimse.message
    command = getattr(message, "command_set", None)
    context_id = getattr(message, "context_id", None)
    if command is None or context_id is None or command.get("CommandField") != 0x0001:
        return b""
    try:
        response = C_STORE()
        response.MessageIDBeingRespondedTo = command.MessageID
        response.AffectedSOPClassUID = command.AffectedSOPClassUID
        response.AffectedSOPInstanceUID = command.AffectedSOPInstanceUID
        response.Status = 0xA700
        encoded = store_response_command(response)
    except (AttributeError, TypeError, ValueError):  # a command set missing its elements
        return b""
    return p_data_pdu(context_id, encoded) if encoded is not None else b""


def _receive_until_gone(
    original: Callable[[DULServiceProvider, bool, float | None], Any],
    meter: MessageMeter | None = None,
) -> Callable[[DULServiceProvider, bool, float | None], Any]:
    def receive_pdu(
        self: DULServiceProvider, wait: bool = False, timeout: float | None = None
    ) -> Any:
        """pynetdicom's `receive_pdu`, except that a wait ends once the DUL has stopped.

        A peer that connects and closes before its A-ASSOCIATE-RQ (a load-balancer probe, a
        port scan) stops the DUL with nothing queued, and the acceptor would hold the
        association slot until the ACSE timeout (30 s) ran out; a few probes would then
        keep modalities out. Nothing can arrive once the DUL thread has ended. A wait also
        ends (the connection closed) once the meter's first-request deadline has passed.
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
            if meter is not None and meter.expired():  # first: the DUL may have ended on it
                _give_up_waiting(self, meter)
                return None
            if self.ident is not None and not self.is_alive() and self.to_user_queue.empty():
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None

    return receive_pdu


def _give_up_waiting(dul: DULServiceProvider, meter: MessageMeter) -> None:
    if meter.limits.on_refusal is not None:
        meter.limits.on_refusal(dul.assoc, meter.first_request_missing())
    sock = dul.socket.socket if dul.socket is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _acceptor_reactor(self: Association, meter: MessageMeter | None = None) -> None:
    """The acceptor's reactor, then the end of any message cut off mid-transfer: its file
    (or, received in memory, up to listen.max_instance_size that the ended association's
    reference cycles would keep until a full garbage collection) goes."""
    try:
        _acceptor_loop(self, meter)
    finally:
        discard_unserved(self)
        if (fast := fast_store_of(self)) is not None:
            fast.discard()  # a request cut off on the fast route
        self.dimse.message = None


def _acceptor_loop(self: Association, meter: MessageMeter | None) -> None:
    """pynetdicom 3.0.4's `Association._run_reactor` for an acceptor, waiting on the DIMSE
    message queue instead of sleeping 1 ms before each look at it, and aborting when the
    meter's first-request deadline passes before a request began."""
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

        if association_ended(self):
            return

        if meter is not None and meter.expired():
            if meter.limits.on_refusal is not None:
                meter.limits.on_refusal(self, meter.first_request_missing())
            self.abort()
            self.kill()
            return

        if idle_timed_out(self):
            return
