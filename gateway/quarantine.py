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


def new_entry_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


def put(
    storage_dir: Path, source: Path, *, reason: str, stage: str, message: str, origin: str
) -> QuarantineEntry:
    """Copy `source` into a new quarantine entry with its reason; the source is left as is.

    The entry is assembled in a temporary folder and renamed into place, so a crash never
    leaves an entry without its reason.
    """
    root = quarantine_root(storage_dir)
    root.mkdir(parents=True, exist_ok=True)
    entry_id = new_entry_id()
    staging = root / f".tmp-{entry_id}"
    staging.mkdir(mode=0o700)
    shutil.copyfile(source, staging / ORIGINAL_NAME)
    created = time.time()
    record = {
        "id": entry_id,
        "reason": reason,
        "stage": stage,
        "message": message,
        "origin": origin,
        "created": created,
    }
    (staging / REASON_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    final = root / entry_id
    os.replace(staging, final)
    return QuarantineEntry(entry_id, final, reason, stage, message, created)


def entries(storage_dir: Path) -> list[QuarantineEntry]:
    """Every complete entry, oldest first."""
    root = quarantine_root(storage_dir)
    found: list[QuarantineEntry] = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        reason_file = folder / REASON_NAME
        if folder.name.startswith(".") or not reason_file.is_file():
            continue
        record = json.loads(reason_file.read_text(encoding="utf-8"))
        found.append(
            QuarantineEntry(
                record["id"],
                folder,
                record["reason"],
                record["stage"],
                record["message"],
                record["created"],
            )
        )
    return found
