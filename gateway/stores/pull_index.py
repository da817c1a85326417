"""Which `pull` run a study came from, for the after-study hook: `storage_dir/pull/by-study/`.

`pull` writes one small file per study it retrieves, named by the study's keyed hash (the
same hash the audit's round records carry) and holding the path of the run's report; the
service reads it when the study's round is forwarded, so a hook is given the report's path.
Nothing in it is patient data: a keyed hash as the name, a path as the content.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

BY_STUDY = Path("pull") / "by-study"
_HASH_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz")


def note_study(storage_dir: Path, study_hash: str, report: Path) -> None:
    """Remember that `study_hash` is being pulled by the run whose report is `report`.
    Advisory: written whole (rename), not synced; raises OSError."""
    if not study_hash or not set(study_hash) <= _HASH_CHARS:
        raise ValueError("a study hash is lower-case letters and digits")
    folder = storage_dir / BY_STUDY
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    staged = folder / f".{study_hash}.{secrets.token_hex(4)}.tmp"
    staged.write_text(str(report), encoding="utf-8")
    os.replace(staged, folder / study_hash)


def report_for(storage_dir: Path, study_hash: str) -> str | None:
    """The report path `pull` noted for `study_hash`, or None."""
    if not study_hash or not set(study_hash) <= _HASH_CHARS:
        return None
    try:
        text = (storage_dir / BY_STUDY / study_hash).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text and "\n" not in text and len(text) <= 1024 else None
