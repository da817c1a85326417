"""Retrieving a batch of instances of one series: C-MOVE to the gateway's own AE, or C-GET
into a private folder whose files `relay` then hands on to the running gateway by C-STORE.

A batch asks for a list of SOP Instance UIDs at IMAGE level (UID list matching, PS3.4
C.2.2.2.2), so that a resumed run asks only for what is missing. A C-MOVE batch is done
when the archive reports no failed sub-operation; with failures, the instances its Failed SOP
Instance UID List does not name are done (an archive that does not list them has the batch
asked for again, whole, next time). A C-GET batch knows each instance it received.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from gateway.base.durable import create_private_file
from gateway.keys.keyed_hash import KeyedHash
from gateway.net.outcome import ForwardOutcome
from gateway.net.scu import MAX_CONTEXTS, forward_to_ae
from gateway.pull.association import Peer, PullError
from gateway.pull.query import InstanceRef

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

__all__ = [
    "BatchResult",
    "Receiver",
    "batches",
    "clear",
    "get_batch",
    "get_setup",
    "move_batch",
    "relay",
]

_PENDING = (0xFF00, 0xFF01)
_NATIVE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # Explicit, Implicit VR Little Endian
# Every syntax pynetdicom knows, the native ones first: the archive sends what it holds.
_SYNTAXES = [*_NATIVE, *(ts for ts in ALL_TRANSFER_SYNTAXES if ts not in _NATIVE)]


@dataclass
class BatchResult:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    status: int = -1
    received: list[str] = field(default_factory=list)  # C-GET: SOP Instance UIDs stored
    # The final response's Failed SOP Instance UID List (0008,0058), when the archive gave it.
    failed_uids: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.status in (0x0000, 0xB000) and self.failed == 0

    def moved(self, asked: Sequence[str]) -> list[str]:
        """Of the SOP Instance UIDs `asked`, those the C-MOVE delivered: all when nothing
        failed; when some failed and the archive listed exactly which, the others; else
        none (the batch is asked for again whole)."""
        if self.ok:
            return list(asked)
        listed = self.failed_uids
        counted = self.completed + self.warning + self.failed == len(asked)
        if self.status != 0xB000 or listed is None or not counted or len(listed) != self.failed:
            return []
        failed = set(listed)
        return [uid for uid in asked if uid not in failed] if failed <= set(asked) else []


def batches(instances: Sequence[InstanceRef], size: int) -> Iterator[list[InstanceRef]]:
    """Up to `size` instances of one series at a time (a UID list below one series)."""
    by_series: dict[str, list[InstanceRef]] = {}
    for instance in instances:
        by_series.setdefault(instance.series_uid, []).append(instance)
    for members in by_series.values():
        for start in range(0, len(members), size):
            yield members[start : start + size]


def _identifier(batch: Sequence[InstanceRef]) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = batch[0].study_uid
    if batch[0].series_uid:
        identifier.SeriesInstanceUID = batch[0].series_uid
    uids = [i.sop_instance_uid for i in batch]
    identifier.SOPInstanceUID = uids if len(uids) > 1 else uids[0]
    return identifier


def _collect(responses: Iterator[tuple[Dataset, Dataset | None]], what: str) -> BatchResult:
    result = BatchResult()
    for status, identifier_back in responses:
        if not status:
            raise PullError(f"{what}: no response from the source (connection lost or timed out)")
        result.status = int(status.get("Status", -1))
        for name, attr in (
            ("completed", "NumberOfCompletedSuboperations"),
            ("failed", "NumberOfFailedSuboperations"),
            ("warning", "NumberOfWarningSuboperations"),
        ):
            value = status.get(attr, None)
            if value is not None:
                setattr(result, name, int(value))
        if result.status not in _PENDING:
            listed = identifier_back.get("FailedSOPInstanceUIDList") if identifier_back else None
            if listed is not None:
                values = [listed] if isinstance(listed, str) else list(listed)
                result.failed_uids = [str(v) for v in values if str(v)]
            return result
    raise PullError(f"{what}: the retrieve ended without a final response")


def move_batch(assoc: Association, batch: Sequence[InstanceRef], destination: str) -> BatchResult:
    """C-MOVE the batch to `destination` (the gateway's own AE title)."""
    responses = assoc.send_c_move(
        _identifier(batch), destination, StudyRootQueryRetrieveInformationModelMove
    )
    return _collect(responses, "C-MOVE")


# --- C-GET -------------------------------------------------------------------------------------


class Receiver:
    """Takes the C-STORE sub-operations of a C-GET: each instance as it was encoded, into
    `folder` (0600, fsynced), named by the keyed hash of its SOP Instance UID."""

    def __init__(self, folder: Path, keyed_hash: KeyedHash) -> None:
        self.folder = folder
        self.keyed_hash = keyed_hash
        self.files: dict[str, Path] = {}  # SOP Instance UID -> its file

    def on_store(self, event: evt.Event) -> int:
        sop = str(event.request.AffectedSOPInstanceUID)
        path = self.folder / f"{self.keyed_hash(sop)}.dcm"
        try:
            path.unlink(missing_ok=True)
            create_private_file(path, event.encoded_dataset(include_meta=True))
        except OSError:
            return 0xA700  # out of resources
        self.files[sop] = path
        return 0x0000


def get_setup(
    instances: Sequence[InstanceRef],
) -> tuple[list[PresentationContext], list[SCP_SCU_RoleSelectionNegotiation]]:
    """The C-GET context, and a storage context with the SCP role for each SOP class the
    study holds (the archive's C-FIND answers), else for pynetdicom's common storage list."""
    classes = sorted({i.sop_class_uid for i in instances if i.sop_class_uid})
    if not classes:
        classes = [str(c.abstract_syntax) for c in StoragePresentationContexts]
    classes = classes[: MAX_CONTEXTS - 1]
    contexts = [build_context(StudyRootQueryRetrieveInformationModelGet)]
    contexts += [build_context(uid, _SYNTAXES) for uid in classes]
    roles = [build_role(uid, scp_role=True) for uid in classes]
    return contexts, roles


def get_batch(assoc: Association, batch: Sequence[InstanceRef], receiver: Receiver) -> BatchResult:
    before = set(receiver.files)
    responses = assoc.send_c_get(_identifier(batch), StudyRootQueryRetrieveInformationModelGet)
    result = _collect(responses, "C-GET")
    result.received = [sop for sop in receiver.files if sop not in before]
    return result


def relay(
    receiver: Receiver,
    gateway: Peer,
    calling_ae: str,
    on_forwarded: Callable[[str], None],
) -> int:
    """C-STORE every received file to the running gateway; `on_forwarded(sop)` for each it
    acknowledged, whose file then goes. Returns how many it did not take."""
    by_path = {path: sop for sop, path in receiver.files.items()}

    def stored(path: Path) -> None:
        sop = by_path[path]
        on_forwarded(sop)
        receiver.files.pop(sop, None)
        path.unlink(missing_ok=True)

    if not by_path:
        return 0
    result = forward_to_ae(
        list(by_path),
        ae_title=gateway.ae_title,
        host=gateway.address,
        port=gateway.port,
        calling_ae=calling_ae,
        timeout=gateway.timeout,
        ssl_context=gateway.ssl_context,
        server_hostname=gateway.host if gateway.ssl_context is not None else None,
        on_stored=stored,
    )
    if result.outcome is ForwardOutcome.RETRY and receiver.files:
        raise PullError(f"handing instances on to the {gateway}: {result.message}")
    return len(receiver.files)


def clear(folder: Path) -> None:
    """Remove what an earlier, interrupted C-GET left (fetched again: nothing was lost)."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.iterdir():
        if leftover.is_file():
            os.unlink(leftover)
