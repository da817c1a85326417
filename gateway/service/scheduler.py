"""The service's only clock: every timed decision of `run` is a job here.

- instances acknowledged since the last look go to processing, and what a receiving
  round's outbox holds goes to forwarding (`arrivals`): when an instance is recorded or a
  worker's chunk is done (`nudge_arrivals`, at most every ARRIVALS_MIN_SECONDS), and five
  times a second anyway;
- rounds whose quiet period has passed are closed by processing (and rounds whose
  processing retry time has come: the spool answers both as due);
- processed rounds, and failed forwards whose retry time has come, go to forwarding;
- associations kept open for a round and idle too long are released (`housekeeping`);
- with `quarantine.purge_after_days`, quarantined originals older than that are deleted,
  once an hour.

The stages themselves keep no timers: a retry is a time written in state.db that a later
tick finds due, so a restart keeps every schedule.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from gateway.base.metrics import Metrics
from gateway.stores import quarantine
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import RoundState, StudyRound

log = logging.getLogger(__name__)

ARRIVALS_EVERY_SECONDS = 0.2
# Two looks for arrivals at least this far apart: each is two state.db queries under the
# spool's lock, which the SCP needs for every instance it records.
ARRIVALS_MIN_SECONDS = 0.02
PURGE_EVERY_SECONDS = 3600.0
STORAGE_LOG_EVERY_SECONDS = 60.0


class Scheduler:
    def __init__(
        self,
        spool: Spool,
        quiet_seconds: float,
        metrics: Metrics,
        *,
        heal: Callable[[], None],
        process: Callable[[StudyRound], None],
        forward: Callable[[StudyRound], None],
        take_arrivals: Callable[[], None] = lambda: None,
        send_ready: Callable[[StudyRound], None] = lambda _round: None,
        housekeeping: Callable[[], None] = lambda: None,
        storage_dir: Path,
        purge_after_days: float | None = None,
    ) -> None:
        self.spool, self.quiet_seconds, self.metrics = spool, quiet_seconds, metrics
        self._heal, self._process, self._forward = heal, process, forward
        self._take_arrivals, self._send_ready = take_arrivals, send_ready
        self._housekeeping = housekeeping
        self._storage_dir, self._purge_after_days = storage_dir, purge_after_days
        self._aps = BackgroundScheduler(daemon=True)
        self._arrivals_loop = _Nudged(
            self.arrivals, ARRIVALS_EVERY_SECONDS, ARRIVALS_MIN_SECONDS, name="arrivals"
        )
        self._stopped = False
        self._storage_logged = -math.inf

    @property
    def tick_seconds(self) -> float:
        """A quarter of the quiet period, between 0.2 and 1 s: a study is taken at most
        that long after its quiet period ends."""
        return max(0.2, min(1.0, self.quiet_seconds / 4))

    def start(self) -> None:
        self._aps.add_job(self.tick, "interval", seconds=self.tick_seconds,
                          max_instances=1, coalesce=True, id="rounds")  # fmt: skip
        if self._purge_after_days is not None:
            self._aps.add_job(self.purge_quarantine, "interval", seconds=PURGE_EVERY_SECONDS,
                              max_instances=1, coalesce=True, id="quarantine-purge",
                              next_run_time=datetime.now())  # fmt: skip
        self._aps.start()
        self._arrivals_loop.start()

    def stop(self) -> None:
        self._stopped = True
        self._arrivals_loop.stop()
        if self._aps.running:  # start() may have failed before it
            self._aps.shutdown(wait=True)

    def nudge_arrivals(self) -> None:
        """Look for arrivals soon (an instance was recorded, a chunk is done): a stream's
        instance goes on as soon as it can, not at the next fifth of a second."""
        self._arrivals_loop.nudge()

    def arrivals(self) -> None:
        """New instances to the workers; clean ones of studies still arriving on their way."""
        self._guarded(self._arrivals)

    def _arrivals(self) -> None:
        self._take_arrivals()
        for receiving in self.spool.rounds_in(RoundState.RECEIVING):
            self._send_ready(receiving)

    def tick(self) -> None:
        """Hand every due round to its stage."""
        self._guarded(self._tick)

    def _tick(self) -> None:
        self._heal()
        for due in self.spool.due_rounds(self.quiet_seconds):
            self._process(due)
        for due in self.spool.forward_due():
            self._forward(due)
        self._housekeeping()

    def _guarded(self, job: Callable[[], None]) -> None:
        if self._stopped:
            return
        try:
            job()
        except (OSError, sqlite3.OperationalError) as exc:
            # A full or failing disk: everything stays where it is and the next tick tries
            # again; one line a minute, not a traceback four times a second.
            self.metrics.failures.labels(stage="storage").inc()
            now = time.monotonic()
            if now - self._storage_logged >= STORAGE_LOG_EVERY_SECONDS:
                self._storage_logged = now
                log.error("storage unusable, work waits: %s", exc)
        except Exception:
            log.exception("scheduler job failed")

    def purge_quarantine(self) -> int:
        """Delete quarantined originals older than `purge_after_days`; how many went."""
        if self._purge_after_days is None or self._stopped:
            return 0
        try:
            removed = quarantine.purge(self._storage_dir, self._purge_after_days)
        except OSError as exc:
            log.error("quarantine purge failed: %s", exc.strerror or type(exc).__name__)
            return 0
        if removed:
            log.info("quarantine: %d entries older than %g days purged",
                     removed, self._purge_after_days)  # fmt: skip
        return removed


class _Nudged(threading.Thread):
    """Runs `job` when nudged, never twice within `shortest` s, and every `longest` s
    without a nudge. Nudges during a run bring one more run, not one each."""

    def __init__(self, job: Callable[[], None], longest: float, shortest: float, name: str):
        super().__init__(name=name, daemon=True)
        self._job, self._longest, self._shortest = job, longest, shortest
        self._nudged = threading.Event()
        self._stopping = threading.Event()

    def nudge(self) -> None:
        self._nudged.set()

    def run(self) -> None:
        last = -math.inf
        while not self._stopping.is_set():
            self._nudged.wait(self._longest)
            early = last + self._shortest - time.monotonic()
            if self._stopping.wait(max(early, 0.0)):
                return
            self._nudged.clear()
            last = time.monotonic()
            self._job()

    def stop(self) -> None:
        self._stopping.set()
        self._nudged.set()
        if self.is_alive():
            self.join(timeout=30)
