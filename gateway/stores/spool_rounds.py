"""The spool's records in `state.db`: the schema, how it is opened, and the round types.

Kept apart from `spool.py` (which writes, claims and deletes the files) so the state
machine's vocabulary — `RoundState`, `StudyRound`, `SpooledInstance` — can be read and
imported without the file handling. The database runs in WAL mode with synchronous=FULL:
a state row committed here survives a crash or a power cut, which is what lets the SCP
acknowledge an instance once its row is in.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

__all__ = [
    "STATE_DB",
    "RoundState",
    "SpooledInstance",
    "StudyRound",
    "open_state_db",
    "select_rounds",
]

STATE_DB = "state.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rounds_by_study ON rounds (study_uid, state);
CREATE INDEX IF NOT EXISTS rounds_by_state ON rounds (state);
CREATE TABLE IF NOT EXISTS instances (
    round_id INTEGER NOT NULL REFERENCES rounds (id),
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    received REAL NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (round_id, sop_instance_uid)
);
CREATE TABLE IF NOT EXISTS forwarded (
    round_id INTEGER NOT NULL REFERENCES rounds (id),
    file TEXT NOT NULL,
    PRIMARY KEY (round_id, file)
);
-- What the workers reported of the instances processed on arrival (counts, pseudonymous
-- study UIDs; no patient data), so the round's audit record is whole after a restart.
CREATE TABLE IF NOT EXISTS round_parts (
    round_id INTEGER NOT NULL REFERENCES rounds (id),
    part TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS round_parts_by_round ON round_parts (round_id);
"""


class RoundState(StrEnum):
    # Instances are processed as they arrive (instances.processed); attempts > 0: processing
    # failed that often; next_attempt: when it is tried again.
    RECEIVING = "receiving"
    PROCESSING = "processing"
    FORWARDING = "forwarding"  # attempts, next_attempt: the forward retries
    FAILED = "failed"  # forwarding gave up; `quarantine release round-N` forwards again
    HELD = "held"  # processing gave up; `quarantine release round-N` processes again


@dataclass(frozen=True)
class SpooledInstance:
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    path: Path


@dataclass(frozen=True)
class StudyRound:
    id: int
    study_uid: str
    state: RoundState
    first_received: float
    last_received: float
    attempts: int
    next_attempt: float
    message: str
    instances: int


def open_state_db(path: Path) -> sqlite3.Connection:
    """`state.db`, created if new, in autocommit mode (the spool's transactions are explicit).

    One connection is shared by the spool's threads under its lock; the busy timeout is for
    another process (a quarantine command) that may hold the write lock.
    """
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(instances)")}
    if "processed" not in columns:  # a state.db of a release before streaming
        db.execute("ALTER TABLE instances ADD COLUMN processed INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX IF NOT EXISTS instances_to_process ON instances (processed, round_id)")
    return db


def select_rounds(
    db: sqlite3.Connection, where: str, args: tuple[object, ...] = ()
) -> list[StudyRound]:
    """The rounds matching `where` (on `rounds r`), oldest first, with their instance counts."""
    rows = db.execute(
        "SELECT r.id, r.study_uid, r.state, r.first_received, r.last_received, r.attempts, "
        "r.next_attempt, r.message, (SELECT COUNT(*) FROM instances i WHERE i.round_id = r.id) "
        f"FROM rounds r WHERE {where} ORDER BY r.id",
        args,
    ).fetchall()
    return [
        StudyRound(row[0], row[1], RoundState(row[2]), *row[3:8], instances=row[8]) for row in rows
    ]
