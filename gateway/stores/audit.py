"""Append-only JSON-lines audit trail: what the gateway did, never whom it was about.

Callers pass only pseudonyms, counts, durations, reason codes and hashes (e.g. of an
original UID) as fields; never a name, an original identifier, a date of birth or any
other patient data. The log is for showing, after the fact, that every study received was
either forwarded clean or quarantined with a reason. This module is a leaf: it imports
nothing from the `gateway` package.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path
from typing import Any

from gateway.base.durable import fsync_directory

AUDIT_FILE = "audit.jsonl"  # in storage_dir

__all__ = ["AuditLog"]

_RESERVED = frozenset({"ts", "event"})


class AuditLog:
    """One JSON object per line, appended and fsynced before `record` returns.

    The file is opened for each record (O_APPEND, one write per line), so an external log
    rotation that moves the file is followed at the next record, and two processes (the
    service and a `quarantine` command) appending at once do not tear each other's lines.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, event: str, **fields: Any) -> None:
        """Append `{"ts": <UTC ISO 8601>, "event": event, **fields}` as one line, durably.

        `fields` must hold only pseudonyms, counts, durations, reason codes and hashes.
        Values JSON cannot represent (paths, datetimes) are written as their `str()`.
        """
        clash = _RESERVED.intersection(fields)
        if clash:
            raise ValueError(f"audit field names reserved: {', '.join(sorted(clash))}")
        entry = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "event": event,
            **fields,
        }
        line = (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self._append(line)

    def _append(self, line: bytes) -> None:
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)  # the new directory entry must survive a crash too

