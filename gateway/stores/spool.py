"""The durable per-study buffer between the SCP and the worker pool, and its state machine.

Guarantee: `store()` and `store_file()` (`spool_intake`) return only when the instance is
safe from a power cut (`spool.durability: fsync`): its file, sealed, is on disk (one fsync),
and its row in `state.db` is committed; a row that a power cut loses is recorded again from
the sealed file at the next start (`spool_seal`, `spool_recovery`). Files live under
`spool/<round>/`; the state of every study round lives in SQLite (WAL). A round is one
batch of a study: instances that arrive while an earlier round of the same study is being
processed start a new round, processed and forwarded on its own, so nothing is lost or
mixed with half-processed state.

Round states::

    receiving --quiet period--> processing --outbox written--> forwarding --OK--> (deleted)
        ^                           |                              |  RETRY: backoff
        +-- crash, failure: backoff-+                              +--> failed --release-->
        |                           | too many failures                 forwarding
        +--------- release ------ held

On start-up the spool recovers (`spool_recovery`): `processing` rounds go back to
`receiving` (their outbox is cleared and they are processed again), sealed files state.db
lost are recorded again, and files never acknowledged are removed.

Forwarding is resumable: each instance the destination confirmed is recorded at once
(`mark_forwarded`), and a later attempt, after a retry or a crash, sends only the rest. What
can still arrive twice is an instance the destination stored in the moment before its mark
was committed (one per forwarding thread at a crash).

The schema of `state.db` and the round types are in `spool_rounds`; this module keeps the
files and the transitions.
"""

from __future__ import annotations

import logging
import math
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.base.durable import create_private_file, fsync_directory
from gateway.keys.keyed_hash import KeyedHash
from gateway.stores.spool_arrivals import Arrivals
from gateway.stores.spool_intake import Intake, SpoolWriteError
from gateway.stores.spool_queries import RoundQueries
from gateway.stores.spool_recovery import DONE_SUFFIX, Recovery
from gateway.stores.spool_rounds import (
    STATE_DB,
    RoundState,
    SpooledInstance,
    StudyRound,
    open_state_db,
    select_rounds,
)
from gateway.stores.spool_seal import Slots

__all__ = ["OUTBOX_DIR", "SPOOL_DIR", "Spool", "SpoolWriteError"]

log = logging.getLogger(__name__)

SPOOL_DIR = "spool"
OUTBOX_DIR = "outbox"
_TMP = "tmp"
_SLOTS = "slots"
WRITABLE_CACHE_SECONDS = 1.5  # how long a /healthz answer about the spool's disk holds


def _nothing() -> None:
    pass


class Spool(Intake, Arrivals, RoundQueries, Recovery):
    """Instances on disk plus the state of every study round, safe across crashes."""

    def __init__(
        self,
        storage_dir: Path,
        keyed_hash: KeyedHash | None,
        *,
        recover: bool = True,
        durability: str = "fsync",
    ) -> None:
        """Open (and create) the spool. `keyed_hash` names its files (None: a command that
        stores nothing, `quarantine list`). `recover=False` for a command that runs beside
        the service: crash recovery belongs to the service's start alone. `durability`
        (`spool.durability`): "fsync", an acknowledged instance survives a power cut;
        "process", it survives the gateway's crash (no sync while receiving)."""
        if durability not in ("fsync", "process"):
            raise ValueError(f"unknown durability {durability!r}")
        self._sync = durability == "fsync"
        self.storage_dir = Path(storage_dir)
        self._keyed_hash = keyed_hash
        self.spool_dir = self.storage_dir / SPOOL_DIR
        self.outbox_root = self.storage_dir / OUTBOX_DIR
        self._tmp = self.spool_dir / _TMP
        for folder in (self.storage_dir, self.spool_dir, self._tmp, self.outbox_root):
            folder.mkdir(parents=True, exist_ok=True)
        self._slots = Slots(self.spool_dir / _SLOTS, sync=self._sync)
        self._lock = threading.Lock()
        self._intake_lock = threading.Lock()
        self._intake_queue = []
        self.on_recorded = _nothing  # see Intake.on_recorded
        self._writable_lock = threading.Lock()
        self._writable, self._writable_at = False, -math.inf
        self._db = open_state_db(self.storage_dir / STATE_DB)
        if recover:
            self._recover()

    # -- receiving (the rest is in spool_intake) --------------------------------------------

    def uid_hash(self, uid: str, length: int = 16) -> str:
        """What file names and logs carry instead of an original UID (keyed: see KeyedHash)."""
        if self._keyed_hash is None:
            raise RuntimeError("the spool was opened without the site secret's keyed hash")
        return self._keyed_hash(uid, length)

    # -- the state machine -----------------------------------------------------------------

    def _rounds(self, where: str, args: tuple[object, ...] = ()) -> list[StudyRound]:
        return select_rounds(self._db, where, args)

    def due_rounds(self, quiet_seconds: float, now: float | None = None) -> list[StudyRound]:
        """Receiving rounds whose study has been quiet long enough to be complete."""
        moment = time.time() if now is None else now
        with self._lock:
            return self._rounds(
                "r.state = ? AND r.last_received <= ? AND r.next_attempt <= ?",
                (RoundState.RECEIVING, moment - quiet_seconds, moment),
            )

    def claim(self, round_id: int) -> list[SpooledInstance] | None:
        """receiving -> processing; the instances still to process (not processed on
        arrival), or None if it was not receiving."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE rounds SET state = ? WHERE id = ? AND state = ?",
                (RoundState.PROCESSING, round_id, RoundState.RECEIVING),
            )
            if cursor.rowcount != 1:
                return None
            rows = self._db.execute(
                "SELECT sop_instance_uid, sop_class_uid, transfer_syntax, file FROM instances "
                "WHERE round_id = ? AND processed = 0 ORDER BY received",
                (round_id,),
            ).fetchall()
        return [SpooledInstance(r[0], r[1], r[2], self.spool_dir / r[3]) for r in rows]

    def outbox(self, round_id: int) -> Path:
        """Where the worker writes the round's de-identified instances."""
        return self.outbox_root / str(round_id)

    def processed(self, round_id: int, message: str = "") -> None:
        """processing -> forwarding, due now: the outbox holds the clean instances."""
        self._set_state(round_id, RoundState.FORWARDING, RoundState.PROCESSING, 0, 0.0, message)

    def process_again(self, round_id: int, message: str, *, delayed: bool = False) -> None:
        """processing -> receiving: a worker died; nothing is lost, it runs again.

        Due at once, or (`delayed`) after another quiet period.
        """
        shutil.rmtree(self.outbox(round_id), ignore_errors=True)
        with self._lock:
            self._unmark_processed([round_id])
            self._db.execute(
                "UPDATE rounds SET state = ?, last_received = ?, message = ? "
                "WHERE id = ? AND state = ?",
                (
                    RoundState.RECEIVING,
                    time.time() if delayed else 0.0,
                    message,
                    round_id,
                    RoundState.PROCESSING,
                ),
            )

    def processing_failed(
        self, round_id: int, attempts: int, retry_at: float | None, message: str
    ) -> None:
        """processing -> receiving, due at `retry_at`, after its `attempts`th failure; or,
        with `retry_at` None, -> held until `quarantine release`. The spool keeps it all."""
        shutil.rmtree(self.outbox(round_id), ignore_errors=True)
        state = RoundState.HELD if retry_at is None else RoundState.RECEIVING
        with self._lock:
            self._unmark_processed([round_id])
            self._db.execute(
                "UPDATE rounds SET state = ?, attempts = ?, next_attempt = ?, last_received = 0,"
                " message = ? WHERE id = ? AND state = ?",
                (state, attempts, retry_at or 0.0, message, round_id, RoundState.PROCESSING),
            )

    def mark_forwarded(self, round_id: int, name: str) -> None:
        """The destination confirmed the outbox file `name`: never send it again.

        Committed with synchronous=NORMAL: in WAL mode that survives a crash of the process
        (SIGKILL, OOM) at the cost of a write, without an fsync per instance; a power cut
        can lose the last marks, and those instances are then sent again (never lost).
        """
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("INSERT OR IGNORE INTO forwarded VALUES (?, ?)", (round_id, name))
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def forwarded(self, round_id: int) -> set[str]:
        """Names of the round's outbox files the destination already confirmed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT file FROM forwarded WHERE round_id = ?", (round_id,)
            ).fetchall()
        return {str(row[0]) for row in rows}

    def forward_due(self, now: float | None = None) -> list[StudyRound]:
        moment = time.time() if now is None else now
        with self._lock:
            return self._rounds(
                "r.state = ? AND r.next_attempt <= ?", (RoundState.FORWARDING, moment)
            )

    def forward_failed(
        self, round_id: int, attempts: int, next_attempt: float | None, message: str
    ) -> None:
        """A failed forward: retry at `next_attempt`, or (None) wait in the failed state."""
        if next_attempt is None:
            self._set_state(
                round_id, RoundState.FAILED, RoundState.FORWARDING, attempts, 0.0, message
            )
        else:
            self._set_state(
                round_id,
                RoundState.FORWARDING,
                RoundState.FORWARDING,
                attempts,
                next_attempt,
                message,
            )

    def release(self, round_id: int) -> bool:
        """failed -> forwarding, due now (the `quarantine release` command)."""
        return self._set_state(round_id, RoundState.FORWARDING, RoundState.FAILED, 0, 0.0, "")

    def release_held(self, round_id: int) -> bool:
        """held -> receiving, due now, its failures forgotten (`quarantine release`)."""
        return self._set_state(round_id, RoundState.RECEIVING, RoundState.HELD, 0, 0.0, "")

    def finish(self, round_id: int) -> None:
        """A confirmed forward: delete the round's spool and outbox copies and its rows.

        The round's folder is renamed out of the way (and that synced) before its rows go:
        a sealed file the recovery finds unrecorded in a round's folder is then always an
        acknowledged instance whose row was lost, never one already forwarded.
        """
        folder = self.spool_dir / str(round_id)
        done = folder.with_name(folder.name + DONE_SUFFIX)
        if folder.is_dir():
            folder.rename(done)
            if self._sync:
                fsync_directory(self.spool_dir)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM instances WHERE round_id = ?", (round_id,))
            self._db.execute("DELETE FROM forwarded WHERE round_id = ?", (round_id,))
            self._db.execute("DELETE FROM round_parts WHERE round_id = ?", (round_id,))
            self._db.execute("DELETE FROM rounds WHERE id = ?", (round_id,))
            self._db.execute("COMMIT")
        shutil.rmtree(done, ignore_errors=True)
        shutil.rmtree(self.outbox(round_id), ignore_errors=True)

    def _set_state(
        self,
        round_id: int,
        new: RoundState,
        expected: RoundState,
        attempts: int,
        next_attempt: float,
        message: str,
    ) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE rounds SET state = ?, attempts = ?, next_attempt = ?, message = ? "
                "WHERE id = ? AND state = ?",
                (new, attempts, next_attempt, message, round_id, expected),
            )
            return cursor.rowcount == 1

    # -- health and recovery ---------------------------------------------------------------

    def writable(self) -> bool:
        """Can a file be created and synced in the spool? (/healthz) Asked again at most
        every `WRITABLE_CACHE_SECONDS`: a probe every request would be a sync every request."""
        now = time.monotonic()
        with self._writable_lock:
            if now - self._writable_at >= WRITABLE_CACHE_SECONDS:
                self._writable, self._writable_at = self._probe_writable(), now
            return self._writable

    def _probe_writable(self) -> bool:
        probe = self._tmp / f"health-{secrets.token_hex(4)}"
        try:
            create_private_file(probe, b"ok")
            return True
        except OSError:
            return False
        finally:
            probe.unlink(missing_ok=True)

    @contextmanager
    def held_still(self) -> Iterator[None]:
        """While this is held no thread of this process is inside SQLite (every use of
        state.db holds the same lock): the moment to fork a process that will use SQLite."""
        with self._lock:
            yield

    def close(self) -> None:
        self._slots.forget()
        with self._lock:
            self._db.close()
