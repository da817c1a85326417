"""Holds what could not be made safe, with a reason, inside the storage folder.

Layout: `<storage_dir>/quarantine/<id>/original.dcm` (the input exactly as received) and
`<id>/reason.json` (reason code, stage, message, time; never patient data, never the input
file name, which may itself carry a name). The quarantine is never under an output folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.base.durable import create_folder, create_private_file, fsync_directory, fsync_file
from gateway.keys.keyed_hash import KeyedHash

QUARANTINE_DIR = "quarantine"
ORIGINAL_NAME = "original.dcm"
REASON_NAME = "reason.json"


@dataclass(frozen=True)
class QuarantineEntry:
    id: str
    path: Path
    reason: str
    stage: str
    message: str
    created: float


def quarantine_root(storage_dir: Path) -> Path:
    return Path(storage_dir) / QUARANTINE_DIR


def new_entry_id(token: str | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + (token or secrets.token_hex(4))


def _source_key(
    source: Path, reason: str, stage: str, origin: str, keyed_hash: KeyedHash
) -> str:
    """Names one input file (path, size, modification time) held for one reason.

    The service quarantines from the spool, whose files are written once; a round processed
    again after a crash finds its instance already held and adds no second entry. Keyed: an
    input's path may carry a name, and a spool file's is a hash of its SOP Instance UID.
    """
    status = source.stat()
    text = f"{origin}\0{source.resolve()}\0{status.st_size}\0{status.st_mtime_ns}"
    return keyed_hash(f"{text}\0{stage}\0{reason}", 64)


def put(
    storage_dir: Path,
    source: Path,
    *,
    reason: str,
    stage: str,
    message: str,
    origin: str,
    keyed_hash: KeyedHash,
) -> QuarantineEntry:
    """Copy `source` into a new quarantine entry with its reason (or return the entry that
    already holds this very file for this reason); the source is left as is.

    The entry is assembled in a temporary folder and renamed into place, so a crash never
    leaves an entry without its reason. It is durable when this returns (both files, the
    entry's folder and the quarantine folder fsynced): the caller may then delete the
    only other copy, the spool's, and a power cut cannot lose an acknowledged original.
    """
    root = quarantine_root(storage_dir)
    create_folder(root)
    key = _source_key(source, reason, stage, origin, keyed_hash)
    for held in root.glob(f"*-{key[:16]}"):
        found = _read_entry(held)
        if found is not None and found[1].get("source_key") == key:
            # Made by an attempt that may have died before its fsyncs (a round processed
            # again after a crash): made durable now, before the spool copy can go.
            _make_durable(found[0].path)
            return found[0]
    entry_id = new_entry_id(key[:16])
    staging = root / f".tmp-{entry_id}"
    staging.mkdir(mode=0o700)
    created = time.time()
    record = {
        "id": entry_id,
        "reason": reason,
        "stage": stage,
        "message": message,
        "origin": origin,
        "created": created,
        "source_key": key,
    }
    try:
        shutil.copyfile(source, staging / ORIGINAL_NAME)
        fsync_file(staging / ORIGINAL_NAME)
        text = json.dumps(record, indent=2) + "\n"
        create_private_file(staging / REASON_NAME, text.encode("utf-8"))
        fsync_directory(staging)
        final = root / entry_id
        os.replace(staging, final)
        fsync_directory(root)
    except BaseException:
        # A full disk must not leave half an entry that fills it further; the caller keeps
        # the original (the spool, the input folder) and tries again later.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return QuarantineEntry(entry_id, final, reason, stage, message, created)


def _make_durable(entry: Path) -> None:
    for name in (ORIGINAL_NAME, REASON_NAME):
        fsync_file(entry / name)
    fsync_directory(entry)
    fsync_directory(entry.parent)


def remove_staging(storage_dir: Path) -> int:
    """Delete entries a crash left half-made (`.tmp-*`); the service calls it at start-up,
    when no worker can be assembling one. The spool still holds their originals."""
    root = quarantine_root(storage_dir)
    staged = list(root.glob(".tmp-*")) if root.is_dir() else []
    for folder in staged:
        shutil.rmtree(folder, ignore_errors=True)
    return len(staged)


def entries(storage_dir: Path) -> list[QuarantineEntry]:
    """Every complete entry, oldest first."""
    root = quarantine_root(storage_dir)
    found: list[QuarantineEntry] = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        read = _read_entry(folder)
        if read is not None:
            found.append(read[0])
    return found


def _read_entry(folder: Path) -> tuple[QuarantineEntry, dict[str, object]] | None:
    reason_file = folder / REASON_NAME
    if folder.name.startswith(".") or not reason_file.is_file():
        return None
    record = json.loads(reason_file.read_text(encoding="utf-8"))
    entry = QuarantineEntry(
        record["id"], folder, record["reason"], record["stage"], record["message"],
        record["created"],
    )
    return entry, record


def purge(storage_dir: Path, older_than_days: float | None = None) -> int:
    """Delete quarantined instances (all, or those older than N days); returns how many."""
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    removed = 0
    for entry in entries(storage_dir):
        if cutoff is None or entry.created < cutoff:
            shutil.rmtree(entry.path)
            removed += 1
    return removed


def remove(storage_dir: Path, entry_id: str) -> None:
    """Delete one quarantined instance (`purge` for a single entry). KeyError: no such entry."""
    folder = quarantine_root(storage_dir) / entry_id
    if not entry_id or "/" in entry_id or entry_id.startswith(".") or not folder.is_dir():
        raise KeyError(entry_id)
    shutil.rmtree(folder)


class Requeue(Protocol):
    """Where a released instance goes back: the spool (`Spool.store`)."""

    def store(
        self,
        encoded: bytes,
        *,
        sop_instance_uid: str,
        sop_class_uid: str,
        study_uid: str,
        transfer_syntax: str,
        calling_ae: str,
    ) -> None: ...


def release(storage_dir: Path, entry_id: str, spool: Requeue) -> None:
    """Put a quarantined instance back into the spool, to be processed again.

    For an instance held after a profile or software fix. The entry is removed only once
    the spool has the instance durably. KeyError: no such entry; ValueError: the original
    cannot be read as an instance.
    """
    folder = quarantine_root(storage_dir) / entry_id
    original = folder / ORIGINAL_NAME
    if not entry_id or "/" in entry_id or not original.is_file():
        raise KeyError(entry_id)
    from pydicom import dcmread

    try:
        header = dcmread(original, stop_before_pixels=True, force=True)
        sop_instance_uid = str(header.SOPInstanceUID)
        sop_class_uid = str(header.SOPClassUID)
        study_uid = str(header.get("StudyInstanceUID", "") or "")
        syntax = str(header.file_meta.TransferSyntaxUID)
    except Exception as exc:
        raise ValueError(f"the original is not a readable instance ({type(exc).__name__})") from exc
    spool.store(
        original.read_bytes(),
        sop_instance_uid=sop_instance_uid,
        sop_class_uid=sop_class_uid,
        study_uid=study_uid,
        transfer_syntax=syntax,
        calling_ae="QUARANTINE",
    )
    shutil.rmtree(folder)
