"""Streamed receive: a C-STORE data set goes into a file as its fragments arrive.

pynetdicom (3.0) assembles a DIMSE message in memory before anyone sees it, so a 2 GiB
multi-frame costs 2 GiB in the receiving process. Its `_config.STORE_RECV_CHUNKED_DATASET`
writes the data set into a file instead, and that mechanism is used here as it is: the file
sits in the message's `_data_set_file` slot, pynetdicom's decoder writes each data fragment
into it, the C-STORE handler finds it as `event.dataset_path`, and pynetdicom closes and
unlinks what is left of it after the handler. Only who opens that file, and when, is ours,
because the switch cannot keep the spool's guarantees:

- its NamedTemporaryFile is created in the system temp folder, often another file system
  (the spool would copy, not rename, and its recovery never sees a leftover), and the
  switch is process-wide, for every SCP of the process;
- its File Meta is written by pydicom from the request's raw UIDs: ~0.4 ms an instance,
  not `file_meta`'s bytes for a padded UID, a warning quoting an odd UID in the log, and
  an empty one raises on the reader thread (an abort, not a 0xC210 answer);
- a write error (a full disk) raises on the reader thread: the association is aborted
  without the 0xA700 answer, and the file is left behind.

So `receive_into_files` wraps one association's `receive_primitive`: when the first
fragment of a C-STORE data set comes, it asks `open_file` for the file (the SCP gives a
spool `IncomingFile`: in the spool's tmp folder, headed by the SCP's File Meta, writes that
never raise) and puts it in that slot. Written for pynetdicom 3.0.4 (`PATCHES_APPLY`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.pdu_primitives import P_DATA

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.events import Event

__all__ = ["DataSetFile", "OpenFile", "discard_unserved", "receive_into_files", "received_file"]

log = logging.getLogger(__name__)


class DataSetFile(Protocol):
    """Where one data set is written: `write` must not raise (see `IncomingFile`)."""

    path: Path

    def write(self, data: bytes) -> int: ...
    def close(self) -> None: ...
    def discard(self) -> None: ...


# (Affected SOP Class UID, Affected SOP Instance UID, both as the command set holds them,
# and the transfer syntax of the message's presentation context) -> the file.
OpenFile = Callable[[Any, Any, str], DataSetFile]


class _Slot:
    """What pynetdicom expects in a message's `_data_set_file` (a NamedTemporaryFile):
    `write`, `file.flush()` after each fragment, `close` and `name` after the handler."""

    def __init__(self, target: DataSetFile) -> None:
        self.target = target
        self.name = str(target.path)
        self.file = self

    def write(self, data: bytes) -> int:
        return self.target.write(data)

    def flush(self) -> None:
        """Nothing: the target writes unbuffered."""

    def close(self) -> None:
        self.target.close()


def receive_into_files(assoc: Association, open_file: OpenFile) -> None:
    """Write this association's C-STORE data sets into files from `open_file` as they
    arrive. Call it on EVT_CONN_OPEN, before anything is received."""
    dimse = assoc.dimse
    dimse.receive_primitive = types.MethodType(  # type: ignore[method-assign]
        _receiver(type(dimse).receive_primitive, open_file), dimse
    )


def received_file(event: Event) -> DataSetFile | None:
    """The file this C-STORE's data set was written into; None when it was received in
    memory (no data set, or an association `receive_into_files` was not applied to)."""
    slot = getattr(event.request, "_dataset_file", None)
    return slot.target if isinstance(slot, _Slot) else None


def discard_unserved(assoc: Association) -> None:
    """Remove the files of data sets that will never be answered: one cut off in transfer
    (an abort, a refusal, a dropped connection) and any complete message left queued."""
    slots = [getattr(assoc.dimse.message, "_data_set_file", None)]
    with contextlib.suppress(queue.Empty):
        for _ in range(assoc.dimse.msg_queue.qsize() + 1):
            _context_id, primitive = assoc.dimse.msg_queue.get_nowait()
            slots.append(getattr(primitive, "_dataset_file", None))
    for slot in slots:
        if isinstance(slot, _Slot):
            slot.target.discard()


def _receiver(
    original: Callable[[DIMSEServiceProvider, P_DATA], None],
    open_file: OpenFile,
) -> Callable[[DIMSEServiceProvider, P_DATA], None]:
    def receive_primitive(self: DIMSEServiceProvider, primitive: P_DATA) -> None:
        """pynetdicom's `receive_primitive`, one fragment (PDV) at a time: a command set's
        last fragment and the data set's first may share a P-DATA, and the file must be in
        place between them. (pynetdicom's own loop drops what follows a message's last
        fragment in the same P-DATA; one at a time, nothing is dropped.)"""
        values = primitive.presentation_data_value_list
        if len(values) == 1:
            _open_if_first(self, values[0][1], open_file)
            original(self, primitive)
            return
        for value in values:
            single = P_DATA()
            single._presentation_data_value_list = [value]  # as decoded: not re-validated
            _open_if_first(self, value[1], open_file)
            original(self, single)

    return receive_primitive


def _open_if_first(
    dimse: DIMSEServiceProvider,
    fragment: bytes,
    open_file: OpenFile,
) -> None:
    """Before the first data set fragment of a C-STORE request (its command set decoded,
    no file yet), put the file from `open_file` in the message's slot."""
    message = dimse.message
    # PS3.8 E.2: bit 0 of the message control header is set for a command fragment.
    if not fragment or fragment[0] & 1 or not isinstance(message, C_STORE_RQ):
        return
    if message._data_set_file is not None:
        return
    context = dimse.assoc._accepted_cx.get(message.context_id)
    if context is None or not context.transfer_syntax:
        return  # pynetdicom refuses such a message; keep its own handling
    command = message.command_set
    try:
        target = open_file(
            command.get("AffectedSOPClassUID"),
            command.get("AffectedSOPInstanceUID"),
            str(context.transfer_syntax[0]),
        )
    except Exception as exc:  # never on the reader thread: received in memory instead
        log.error("could not open a file for a data set: %s", type(exc).__name__)
        return
    message._data_set_file = _Slot(target)  # type: ignore[assignment]
    message._data_set_path = target.path
