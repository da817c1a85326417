"""The spool's records for streaming: instances are processed as they arrive, not when
their study is complete.

An acknowledged instance has `processed = 0` in state.db until a worker has written its
clean copy into the round's outbox (or quarantined it) and that outbox is fsynced; then the
service marks it `processed = 1`. The mark is committed without an fsync of its own: after
a power cut a lost mark only means the instance is processed again, into the same outbox
name (pseudonyms are keyed HMACs), and an outbox file the destination already confirmed is
never sent again (`forwarded`). Whenever a round's outbox is cleared (a failed or an
interrupted attempt), its marks are cleared with it, so nothing is left unprocessed and
unsent.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

from gateway.stores.spool_rounds import RoundState, SpooledInstance

__all__ = ["Arrivals"]


class Arrivals:
    """Mixed into `Spool`: the queries and marks of processing on arrival."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    spool_dir: Path
    outbox: Callable[[int], Path]

    def arrivals(
        self,
        limit: int,
        skip: Collection[tuple[int, str]] = (),
        max_attempts: int = 1 << 30,
        now: float | None = None,
    ) -> dict[int, list[SpooledInstance]]:
        """Up to `limit` acknowledged instances not yet processed, of rounds still receiving,
        not waiting out a failed attempt nor failed `max_attempts` times, oldest first, by
        round; `skip`: (round id, SOP Instance UID) pairs already with a worker."""
        moment = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT i.round_id, i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax, "
                "i.file FROM instances i JOIN rounds r ON r.id = i.round_id "
                "WHERE i.processed = 0 AND r.state = ? AND r.next_attempt <= ? "
                "AND r.attempts < ? ORDER BY i.received LIMIT ?",
                (RoundState.RECEIVING, moment, max_attempts, limit + len(skip)),
            ).fetchall()
        found: dict[int, list[SpooledInstance]] = {}
        taken = 0
        for round_id, uid, sop_class, syntax, file in rows:
            if (round_id, uid) in skip or taken >= limit:
                continue
            found.setdefault(round_id, []).append(
                SpooledInstance(uid, sop_class, syntax, self.spool_dir / file)
            )
            taken += 1
        return found

    def mark_processed(
        self, round_id: int, sop_instance_uids: Collection[str], part: str | None = None
    ) -> None:
        """These instances' clean copies (or quarantine entries) are durable; `part` is
        what the worker reported of them (kept for the round's audit record), recorded in
        the same transaction."""
        if not sop_instance_uids:
            return
        marks = [(round_id, uid) for uid in sop_instance_uids]
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "UPDATE instances SET processed = 1 WHERE round_id = ? "
                        "AND sop_instance_uid = ?",
                        marks,
                    )
                    if part is not None:
                        self._db.execute(
                            "INSERT INTO round_parts (round_id, part) VALUES (?, ?)",
                            (round_id, part),
                        )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def processed_parts(self, round_id: int) -> list[str]:
        """What `mark_processed` kept of the round's instances processed on arrival."""
        with self._lock:
            rows = self._db.execute(
                "SELECT part FROM round_parts WHERE round_id = ? ORDER BY rowid", (round_id,)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def arrivals_failed(self, round_id: int, attempts: int, retry_at: float, message: str) -> None:
        """Processing a receiving round's arrivals failed for the environment's sake: its
        arrivals wait until `retry_at` (the round is complete no earlier either)."""
        with self._lock:
            self._db.execute(
                "UPDATE rounds SET attempts = ?, next_attempt = ?, message = ? "
                "WHERE id = ? AND state = ?",
                (attempts, retry_at, message, round_id, RoundState.RECEIVING),
            )

    def hold_receiving(self, round_id: int, message: str) -> bool:
        """receiving -> held (its arrivals failed too often): the outbox is cleared and
        every instance is to be processed again once `quarantine release` lets it."""
        shutil.rmtree(self.outbox(round_id), ignore_errors=True)
        with self._lock:
            self._unmark_processed([round_id])
            cursor = self._db.execute(
                "UPDATE rounds SET state = ?, next_attempt = 0, last_received = 0, message = ? "
                "WHERE id = ? AND state = ?",
                (RoundState.HELD, message, round_id, RoundState.RECEIVING),
            )
            return cursor.rowcount == 1

    def _unmark_processed(self, round_ids: Collection[int]) -> None:
        """The rounds' outboxes were cleared: every instance is to be processed again.
        Called under the spool's lock."""
        self._db.executemany(
            "UPDATE instances SET processed = 0 WHERE round_id = ?", [(i,) for i in round_ids]
        )
        self._db.executemany(
            "DELETE FROM round_parts WHERE round_id = ?", [(i,) for i in round_ids]
        )
