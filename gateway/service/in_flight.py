"""Rounds a stage of this process is working on, and what is remembered of each.

A round is worked on by one stage at a time: a stage claims it before it starts and releases
it when its part is done, so the scheduler's next look cannot start it twice. Between the
stages the round's `RoundWork` keeps what the audit record needs.
"""

from __future__ import annotations

import threading

from gateway.service.worker_pool import RoundWork
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import StudyRound


class InFlight:
    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self.lock = threading.Lock()  # also guards the fields of each RoundWork
        self._work: dict[int, RoundWork] = {}
        self._busy: set[int] = set()
        self.streaming: dict[int, int] = {}  # round id -> arrival chunks with the workers
        self._whole: set[int] = set()  # claimed idle: the holder may clear the outbox

    def claim(self, round_id: int, *, idle: bool = False) -> bool:
        """True when no stage had the round: the caller now has it. `idle`: only when no
        arrival of it is with a worker either (the round's own processing waits for them)."""
        with self.lock:
            if round_id in self._busy or (idle and self.streaming.get(round_id)):
                return False
            self._busy.add(round_id)
            if idle:
                self._whole.add(round_id)
            return True

    def start_streaming(self, round_id: int) -> bool:
        """Count one more arrival chunk of the round with the workers; False while a stage
        holds the round whole (it may clear the outbox: the chunk's marks would outlive
        its copies)."""
        with self.lock:
            if round_id in self._whole:
                return False
            self.streaming[round_id] = self.streaming.get(round_id, 0) + 1
            return True

    def end_streaming(self, round_id: int) -> None:
        with self.lock:
            self.streaming[round_id] -= 1
            if not self.streaming[round_id]:
                del self.streaming[round_id]

    def release(self, round_id: int) -> None:
        with self.lock:
            self._busy.discard(round_id)
            self._whole.discard(round_id)

    def work(self, due: StudyRound) -> RoundWork:
        """The round's record, made on first sight (after a restart: at forwarding)."""
        with self.lock:
            if due.id not in self._work:
                self._work[due.id] = RoundWork(due, self._spool.uid_hash(due.study_uid))
            return self._work[due.id]

    def forget(self, round_id: int) -> None:
        """The round has ended (forwarded, or held for an operator)."""
        with self.lock:
            self._work.pop(round_id, None)
