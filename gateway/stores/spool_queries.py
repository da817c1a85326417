"""The spool's read-only questions about its rounds (for metrics, commands and /healthz)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable

from gateway.stores.spool_rounds import RoundState, StudyRound

__all__ = ["RoundQueries"]


class RoundQueries:
    """Mixed into `Spool`."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    _rounds: Callable[..., list[StudyRound]]

    def retrying_rounds(self) -> list[StudyRound]:
        """Rounds whose processing failed and that wait to be processed again."""
        with self._lock:
            return self._rounds("r.state = ? AND r.attempts > 0", (RoundState.RECEIVING,))

    def next_retry_in(self, now: float | None = None) -> float:
        """Seconds until the earliest forward retry now waiting (0: none waits)."""
        moment = time.time() if now is None else now
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt) FROM rounds WHERE state = ? AND attempts > 0",
                (RoundState.FORWARDING,),
            ).fetchone()
        return max(0.0, float(row[0]) - moment) if row and row[0] is not None else 0.0

    def count_in(self, state: RoundState) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM rounds WHERE state = ?", (state,))
            return int(row.fetchone()[0])

    def rounds_in(self, state: RoundState) -> list[StudyRound]:
        with self._lock:
            return self._rounds("r.state = ?", (state,))

    def failed_rounds(self) -> list[StudyRound]:
        with self._lock:
            return self._rounds("r.state = ?", (RoundState.FAILED,))

    def get_round(self, round_id: int) -> StudyRound | None:
        with self._lock:
            found = self._rounds("r.id = ?", (round_id,))
        return found[0] if found else None

    def queue_depth(self) -> int:
        """Instances received and not yet forwarded."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

