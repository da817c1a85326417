"""What a pull run has done, durably, so that a run started again skips what is done.

One JSON file per run, `storage_dir/pull/<run-id>.state.json`, replaced whole at every
change (written to a new 0600 file, fsynced, renamed over the old one, folder fsynced): a
kill at any instant leaves the old state or the new one. Studies and instances are named by
keyed hashes only. A study that is complete keeps only its counts; one cut off halfway
keeps the hashes of the instances it already has, so that only the rest is asked for.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.base.durable import create_folder, create_private_file, fsync_directory

__all__ = ["RunState", "StudyState", "write_json"]

_VERSION = 1


@dataclass
class StudyState:
    status: str = "pending"  # pending | partial | complete | failed
    expected: int | None = None
    retrieved: int = 0
    failed: int = 0
    modalities: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # instance hashes, while not complete


@dataclass
class RunState:
    run_id: str
    path: Path
    created: str = ""
    runs: int = 0
    studies: dict[str, StudyState] = field(default_factory=dict)

    @staticmethod
    def open(folder: Path, run_id: str) -> RunState:
        """The run's saved state, or a new one (not yet written)."""
        path = folder / f"{run_id}.state.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            return RunState(run_id, path, created=now)
        if data.get("version") != _VERSION or data.get("run_id") != run_id:
            raise ValueError(f"{path}: not a state file of run {run_id}")
        studies = {key: StudyState(**value) for key, value in data["studies"].items()}
        return RunState(run_id, path, data["created"], int(data.get("runs", 0)), studies)

    def study(self, study_hash: str) -> StudyState:
        return self.studies.setdefault(study_hash, StudyState())

    def save(self) -> None:
        """Write-then-rename, both fsynced. Raises OSError."""
        data = {
            "version": _VERSION,
            "run_id": self.run_id,
            "created": self.created,
            "runs": self.runs,
            "studies": {key: asdict(value) for key, value in self.studies.items()},
        }
        write_json(self.path, data)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as `path` (0600), whole or not at all: a new file fsynced, renamed over the
    old one, its folder fsynced. Raises OSError."""
    folder = path.parent
    create_folder(folder)
    staged = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
    create_private_file(staged, json.dumps(data, indent=1).encode("utf-8") + b"\n")
    try:
        os.replace(staged, path)
    except OSError:
        staged.unlink(missing_ok=True)
        raise
    fsync_directory(folder)
