"""C-STORE requests served on the association's DUL thread, straight from the P-DATA bytes.

pynetdicom (3.0.4) takes each received PDU through a PDU object, an event of its state
machine, a DIMSE message decoded with pydicom, a queue to the association's reactor thread,
an `Event`, the storage service class, a response primitive and a queue back to the DUL
thread, which encodes the answer. With the sender waiting for every answer, that route is
most of the time per instance: an SCP whose handler does nothing takes about 2.6 ms per
small instance and 3 ms per 512 KiB CT slice here, a third of DCMTK's storescp rate
(`make bench`, "pynetdicom floor").

`FastStore` serves a plain C-STORE request where its bytes are read, as DCMTK's storescp
does: a P-DATA-TF's fragments (PS3.8 9.3.5, E.2) are walked with struct; a command set that
is whole in one fragment and is a C-STORE-RQ with a data set, on an accepted storage
context, is decoded by hand (implicit VR little endian, PS3.7 6.3.1); its data set
fragments go into the file `open_file` gives as they come; after the last one the request
is handed to `serve` on the same thread and the answer is written to the socket at once.

Everything else stays pynetdicom's: a fragment of any other message (C-ECHO, a command set
split over fragments, a request on a context that is not for storage) is handed to its
DIMSE layer as its state machine would (DT-2), one fragment at a time, and a fragment that
breaks the protocol inside a request being served here (a command fragment, another
context) is an invalid PDU to its state machine (A-ABORT). Only in Sta6 (associated), and
only on associations with nothing bound to the receive events this bypasses.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pynetdicom import evt
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from gateway.net.pynetdicom_receive import DataSetFile, OpenFile
from gateway.net.receive_limits import p_data_pdu
from gateway.net.store_response import store_response

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["FastStore", "Serve", "StoreRequest", "fast_store_of"]

log = logging.getLogger(__name__)

_PDV = struct.Struct(">LBB")  # item length, presentation context ID, message control header
_ELEMENT = struct.Struct("<HHL")  # group, element, value length (implicit VR little endian)
_US = struct.Struct("<H")
_C_STORE_RQ = 0x0001
_NO_DATA_SET = 0x0101
# Receive events this path does not trigger: an association with handlers bound to any of
# them (pynetdicom's debug logging, a test's spy) keeps pynetdicom's route.
_BYPASSED = (evt.EVT_PDU_RECV, evt.EVT_DATA_RECV, evt.EVT_DIMSE_RECV)
# The command set elements a plain C-STORE-RQ needs (PS3.7 9.3.1.1).
_WANTED = {0x0002, 0x0100, 0x0110, 0x0800, 0x1000}


@dataclass
class StoreRequest:
    """One C-STORE-RQ being received: its command set's values, and its data set's file."""

    context_id: int
    message_id: int
    sop_class_uid: bytes  # as the command set holds them (padding included)
    sop_instance_uid: bytes
    transfer_syntax: str  # of the presentation context
    file: DataSetFile | None = field(default=None, repr=False)

    @property
    def uids(self) -> tuple[str, str]:
        """SOP Class and SOP Instance UID as text (Latin-1: never fails; a value that is no
        UID is refused by `serve`)."""
        return self.sop_class_uid.decode("latin-1"), self.sop_instance_uid.decode("latin-1")


# Spools the request and returns the status to answer with; must not raise.
Serve = Callable[["Association", StoreRequest], int]


def fast_store_of(assoc: Association) -> FastStore | None:
    """The `FastStore` installed on this association, if any."""
    fast = getattr(assoc, "_gateway_fast_store", None)
    return fast if isinstance(fast, FastStore) else None


class FastStore:
    """The C-STORE route of one association; used from its DUL thread only (`discard` and
    `request` are also read from the reactor thread once the association has ended)."""

    def __init__(self, assoc: Association, open_file: OpenFile, serve: Serve) -> None:
        self.assoc = assoc
        self.open_file = open_file
        self.serve = serve
        self.request: StoreRequest | None = None
        self._storage_contexts: dict[int, str | None] = {}
        assoc._gateway_fast_store = self  # type: ignore[attr-defined]

    @staticmethod
    def applies(assoc: Association) -> bool:
        """Whether nothing bound to this association needs pynetdicom's receive route."""
        return not any(assoc.get_handlers(event) for event in _BYPASSED)

    def take(self, body: memoryview) -> bool:
        """Handle one P-DATA-TF's variable field; False (nothing done) outside Sta6, where
        pynetdicom's state machine must see the PDU."""
        dul = self.assoc.dul
        if dul.state_machine.current_state != "Sta6":
            return False
        offset, end = 0, len(body)
        while offset < end:
            if offset + _PDV.size > end:
                return self._invalid()
            length, context_id, control = _PDV.unpack_from(body, offset)
            stop = offset + 4 + length
            if length < 2 or stop > end:
                return self._invalid()
            fragment = body[offset + _PDV.size : stop]
            offset = stop
            if self.request is not None:
                if not self._data(context_id, control, fragment):
                    return self._invalid()
                continue
            if self.assoc.dimse.message is None and control == 0x03:
                self.request = self._begin(context_id, fragment)
                if self.request is not None:
                    continue
            self._to_pynetdicom(context_id, control, fragment)
        return True

    def discard(self) -> None:
        """Remove the file of a request cut off by the association's end."""
        request, self.request = self.request, None
        if request is not None and request.file is not None:
            request.file.discard()

    # --- one request -----------------------------------------------------------------------

    def _begin(self, context_id: int, command: memoryview) -> StoreRequest | None:
        """A request of ours when `command` is a C-STORE-RQ with a data set on a storage
        context; None for anything pynetdicom should have."""
        transfer_syntax = self._storage_context(context_id)
        if transfer_syntax is None:
            return None
        values = _command_values(command)
        if values is None or _us(values[0x0100]) != _C_STORE_RQ:
            return None
        if _us(values[0x0800]) == _NO_DATA_SET:
            return None
        message_id = _us(values[0x0110])
        if message_id is None:
            return None
        request = StoreRequest(
            context_id, message_id, values[0x0002], values[0x1000], transfer_syntax
        )
        try:
            request.file = self.open_file(*request.uids, transfer_syntax)
        except Exception as exc:  # never on the DUL thread: pynetdicom's route instead
            log.error("could not open a file for a data set: %s", type(exc).__name__)
            return None
        return request

    def _data(self, context_id: int, control: int, fragment: memoryview) -> bool:
        """One fragment of the request's data set; False when it breaks the protocol."""
        request = self.request
        assert request is not None and request.file is not None
        if control & 0x01 or context_id != request.context_id:
            return False
        request.file.write(fragment)
        if control & 0x02:
            self.request = None
            self._answer(request)
        return True

    def _answer(self, request: StoreRequest) -> None:
        try:
            status = self.serve(self.assoc, request)
        except Exception as exc:  # `serve` must answer; if it did not, still answer
            log.error("C-STORE handler failed: %s", type(exc).__name__)
            status = 0xC211
            if request.file is not None:
                request.file.discard()
        command = store_response(
            request.message_id, request.sop_class_uid, request.sop_instance_uid, status
        )
        socket = self.assoc.dul.socket
        if socket is not None:
            socket.send(p_data_pdu(request.context_id, command))  # Evt17 if it fails

    # --- what stays pynetdicom's -----------------------------------------------------------

    def _storage_context(self, context_id: int) -> str | None:
        """The transfer syntax of an accepted storage context, None for any other."""
        if context_id not in self._storage_contexts:
            context = self.assoc._accepted_cx.get(context_id)
            syntax = None
            if context is not None and context.transfer_syntax and context.abstract_syntax:
                with contextlib.suppress(Exception):
                    kind = uid_to_service_class(context.abstract_syntax)
                    if isinstance(kind, type) and issubclass(kind, StorageServiceClass):
                        syntax = str(context.transfer_syntax[0])
            self._storage_contexts[context_id] = syntax
        return self._storage_contexts[context_id]

    def _to_pynetdicom(self, context_id: int, control: int, fragment: memoryview) -> None:
        """One fragment to pynetdicom's DIMSE layer, as its DT-2 action would pass it."""
        single = P_DATA()
        single._presentation_data_value_list = [[context_id, bytes((control,)) + fragment]]
        self.assoc.dimse.receive_primitive(single)

    def _invalid(self) -> bool:
        """A malformed or out-of-order fragment: an invalid PDU to the state machine (it
        sends an A-ABORT); the request cut off is discarded."""
        self.discard()
        self.assoc.dul.event_queue.put("Evt19")
        return True


def _command_values(command: memoryview) -> dict[int, bytes] | None:
    """The wanted elements of an implicit VR little-endian command set; None when it is not
    one (another group, a length past the end) or lacks one of them."""
    values: dict[int, bytes] = {}
    offset, end = 0, len(command)
    while offset < end:
        if offset + _ELEMENT.size > end:
            return None
        group, element, length = _ELEMENT.unpack_from(command, offset)
        offset += _ELEMENT.size
        if group != 0x0000 or offset + length > end:
            return None
        if element in _WANTED:
            values[element] = bytes(command[offset : offset + length])
        offset += length
    return values if len(values) == len(_WANTED) else None


def _us(value: bytes) -> int | None:
    return _US.unpack(value)[0] if len(value) == 2 else None
