"""The processing stage: instances through the worker pool into their round's outbox.

Instances are processed as they arrive (`take_arrivals`, asked by the scheduler a few times
a second): the acknowledged instances not yet processed go to the workers in chunks, and
each chunk's instances are marked processed once their outbox copies are durable. When the
study's quiet period has passed, `start` closes the round: what is left unprocessed goes
to the workers too, and the round moves on to forwarding. A large round is cut into chunks
spread over every worker. A failure that is the environment's (a full disk, a dead worker)
makes the round's arrivals wait a growing delay; at the close it processes the whole round
again, and holds it after the last allowed attempt. An instance's own trouble is never a
failure here: it goes to the quarantine alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool

from gateway.base.metrics import Metrics
from gateway.pipeline.round_files import RoundResult, process_round
from gateway.service import worker_pool
from gateway.service.in_flight import InFlight
from gateway.service.worker_pool import (
    CHUNK,
    RoundWork,
    WorkerPool,
    chunk_size,
    combined,
    failure_text,
    processing_retry_delay,
)
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import RoundState, StudyRound

log = logging.getLogger(__name__)

# Arrival chunks with the workers at once, per worker: enough that none idles between two
# looks of the scheduler, few enough that a closing round is not queued behind many.
ARRIVAL_CHUNKS_PER_WORKER = 2


class ProcessingStage:
    """`start(due)` runs a round whose quiet period has passed; `on_empty(work)` is told of
    a processed round with nothing clean to send (its originals are in the quarantine);
    `on_written(round_id)`, of clean instances of a receiving round now in its outbox."""

    def __init__(
        self,
        spool: Spool,
        pool: WorkerPool,
        workers: int,
        metrics: Metrics,
        in_flight: InFlight,
        stopping: threading.Event,
        on_empty: Callable[[RoundWork], None],
        on_written: Callable[[int], None] = lambda _round_id: None,
    ) -> None:
        self.spool, self.pool, self.workers, self.metrics = spool, pool, workers, metrics
        self.in_flight, self.stopping, self.on_empty = in_flight, stopping, on_empty
        self.on_written = on_written
        self.on_chunk_done: Callable[[], None] = lambda: None  # room for the next chunk
        self._with_workers: set[tuple[int, str]] = set()  # (round, SOP UID) of arrivals
        self._failures_lock = threading.Lock()
        self._arrival_chunks = 0

    # -- on arrival -------------------------------------------------------------------------

    def worker_idle(self) -> bool:
        """Whether a worker has no arrival chunk: a new arrival should be taken at once.
        Otherwise it waits for a chunk to end, and goes with the others that came meanwhile
        (fewer, larger chunks while the workers are busy: less work per instance here)."""
        with self.in_flight.lock:
            return self._arrival_chunks < self.workers

    def take_arrivals(self) -> None:
        """Hand acknowledged, unprocessed instances of receiving rounds to the workers."""
        with self.in_flight.lock:
            room = self.workers * ARRIVAL_CHUNKS_PER_WORKER - self._arrival_chunks
            busy = set(self._with_workers)
        if self.stopping.is_set():
            return
        self._hold_exhausted()
        if room <= 0:
            return
        found = self.spool.arrivals(
            room * CHUNK, skip=busy, max_attempts=worker_pool.PROCESS_MAX_ATTEMPTS
        )
        pool, generation = self.pool.current()
        for round_id, instances in found.items():
            size = chunk_size(len(instances), self.workers)
            for start in range(0, len(instances), size):
                if room <= 0:
                    return
                chunk = instances[start : start + size]
                uids = [instance.sop_instance_uid for instance in chunk]
                paths = [instance.path for instance in chunk]
                if not self.in_flight.start_streaming(round_id):
                    break  # the round is being closed or held: its close takes these
                now = self.spool.get_round(round_id)
                if now is None or now.state is not RoundState.RECEIVING:
                    self.in_flight.end_streaming(round_id)  # closed since it was looked up
                    break
                work = self.in_flight.work(now)
                with self.in_flight.lock:
                    self._with_workers.update((round_id, uid) for uid in uids)
                    self._arrival_chunks += 1
                    attempt = work.attempt
                try:
                    future = pool.submit(process_round, paths, self.spool.outbox(round_id))
                except (BrokenProcessPool, RuntimeError) as exc:
                    if isinstance(exc, BrokenProcessPool):
                        self.pool.replace(generation)
                    self._arrivals_ended(work, attempt, uids, None, generation)
                    return
                future.add_done_callback(
                    lambda f, w=work, a=attempt, u=uids, g=generation: self._arrivals_ended(  # type: ignore[misc]
                        w, a, u, f, g
                    )
                )
                room -= 1

    def _arrivals_ended(
        self,
        work: RoundWork,
        attempt: int,
        uids: list[str],
        future: Future[RoundResult] | None,
        generation: int,
    ) -> None:
        """An arrival chunk is done: its instances are marked processed, or (a failure of
        the environment) the round's arrivals wait a growing delay."""
        round_id = work.round.id
        failure: tuple[str, str] | None = ("cut short", "interrupted")
        result: RoundResult | None = None
        if future is not None:
            try:
                result, failure = future.result(), None
            except BrokenProcessPool:
                failure = ("crash", "a worker process died")
            except CancelledError:
                pass
            except Exception as exc:
                failure = ("failure", failure_text(exc))
        if failure and failure[0] == "crash" and not self.stopping.is_set():
            self.pool.replace(generation)
        try:
            if result is not None and attempt == work.attempt:
                self.spool.mark_processed(round_id, uids, result.to_json())
                if result.written:
                    self.on_written(round_id)
            elif failure is not None and failure[0] != "cut short":
                self._arrivals_failed(work, failure[1])
        except Exception:  # a full disk: the marks are not made, the instances run again
            log.exception("round %d: recording processed arrivals failed", round_id)
        finally:
            with self.in_flight.lock:
                self._with_workers.difference_update((round_id, uid) for uid in uids)
                self._arrival_chunks -= 1
            self.in_flight.end_streaming(round_id)
            self.on_chunk_done()

    def _arrivals_failed(self, work: RoundWork, why: str) -> None:
        """As a failed attempt of the round's close: counted, retried after a growing
        delay, and the last allowed failure holds the round (`_hold_exhausted`)."""
        with self._failures_lock:  # chunks of one batch fail together: one failure
            current = self.spool.get_round(work.round.id)
            if current is None or current.attempts >= worker_pool.PROCESS_MAX_ATTEMPTS:
                return  # the hold is on its way
            if current.next_attempt > time.time():
                return  # another chunk's failure counted already
            self._count_arrivals_failure(work, current.attempts + 1, why)

    def _count_arrivals_failure(self, work: RoundWork, failures: int, why: str) -> None:
        self.metrics.failures.labels(stage="worker").inc()
        delay = processing_retry_delay(failures)
        if delay is not None:
            self.metrics.process_retries.inc()
            log.error("round %d: %s (failure %d); processing it again in %.0f s",
                      work.round.id, why, failures, delay)  # fmt: skip
        self.spool.arrivals_failed(work.round.id, failures, time.time() + (delay or 0.0), why)

    def _hold_exhausted(self) -> None:
        """Receiving rounds whose arrivals failed the last allowed time are held, once no
        chunk of theirs is with a worker and no stage has them."""
        for exhausted in self.spool.retrying_rounds():
            if exhausted.attempts < worker_pool.PROCESS_MAX_ATTEMPTS:
                continue
            if not self.in_flight.claim(exhausted.id, idle=True):
                continue
            try:
                if self.spool.hold_receiving(exhausted.id, exhausted.message):
                    log.error("round %d: %s; held after %d failed attempts until `quarantine "
                              "release round-%d`", exhausted.id, exhausted.message,
                              exhausted.attempts, exhausted.id)  # fmt: skip
                    self.in_flight.forget(exhausted.id)
            finally:
                self.in_flight.release(exhausted.id)

    # -- the round's close ------------------------------------------------------------------

    def heal(self) -> None:
        """A round left `processing` with no work in flight (its state change failed, e.g.
        on a full disk) goes back to `receiving`, so it runs again once the cause is gone."""
        for stuck in self.spool.rounds_in(RoundState.PROCESSING):
            if self.in_flight.claim(stuck.id, idle=True):
                try:
                    log.warning("round %d: processing was interrupted; running it again", stuck.id)
                    self.spool.process_again(stuck.id, "interrupted", delayed=True)
                finally:
                    self.in_flight.release(stuck.id)

    def start(self, due: StudyRound) -> None:
        """Close `due` (its quiet period has passed): process what is left, then forward."""
        if due.attempts >= worker_pool.PROCESS_MAX_ATTEMPTS:
            self._hold_exhausted()  # its arrivals failed the last allowed time
            return
        if not self.in_flight.claim(due.id, idle=True):
            return
        try:
            files = self.spool.claim(due.id)
        except Exception:
            self.in_flight.release(due.id)
            raise
        if files is None:
            self.in_flight.release(due.id)
            return
        self.metrics.studies_completed.inc()
        work = self.in_flight.work(due)
        with self.in_flight.lock:
            work.round, work.parts, work.failure = due, [], None
            work.attempt += 1
            attempt = work.attempt
        log.info("study %s round %d complete: %d instances, %d left to process",
                 work.study_hash, due.id, due.instances, len(files))  # fmt: skip
        # What was processed on arrival, as state.db kept it (also from before a restart).
        streamed = [RoundResult.from_json(p) for p in self.spool.processed_parts(due.id)]
        with self.in_flight.lock:
            work.streamed = streamed
        if not files:
            self._processed(work, combined(streamed))
            return
        paths = [instance.path for instance in files]
        # A large study is spread over every worker, in chunks, so one study uses them all.
        size = chunk_size(len(paths), self.workers)
        chunks = [paths[i : i + size] for i in range(0, len(paths), size)] or [[]]
        work.pending = len(chunks)
        outbox = self.spool.outbox(due.id)
        pool, generation = self.pool.current()
        for index, chunk in enumerate(chunks):
            try:
                future = pool.submit(process_round, chunk, outbox)
            except BrokenProcessPool:
                failure = ("crash", "a worker process died")
            except RuntimeError:  # the pool was shut down: stopping, or replaced just now
                failure = ("cut short", "interrupted")
            else:
                future.add_done_callback(
                    lambda f, a=attempt, g=generation: self._chunk_done(work, a, f, g)  # type: ignore[misc]
                )
                continue
            self._chunks_ended(work, attempt, len(chunks) - index, failure, generation)
            return

    def _chunk_done(
        self, work: RoundWork, attempt: int, future: Future[RoundResult], generation: int
    ) -> None:
        try:
            ended: RoundResult | tuple[str, str] = future.result()
        except BrokenProcessPool:
            ended = ("crash", "a worker process died")
        except CancelledError:  # the pool shut down under it (stop, or replaced)
            ended = ("cut short", "interrupted")
        except Exception as exc:  # the environment's (an instance's trouble holds it alone)
            ended = ("failure", failure_text(exc))
        self._chunks_ended(work, attempt, 1, ended, generation)

    def _chunks_ended(
        self,
        work: RoundWork,
        attempt: int,
        count: int,
        ended: RoundResult | tuple[str, str],
        generation: int,
    ) -> None:
        """`count` chunks of an attempt are done (a result, or a (kind, why) failure).

        The attempt ends when every chunk of it has: only then is the round processed
        again or forwarded, so no chunk of a failed attempt still writes into its outbox.
        """
        if isinstance(ended, tuple) and ended[0] == "crash" and not self.stopping.is_set():
            self.pool.replace(generation)  # a dead worker breaks the whole executor
        with self.in_flight.lock:
            if attempt != work.attempt:
                return
            if isinstance(ended, RoundResult):
                work.parts.append(ended)
            elif work.failure is None or work.failure[0] == "cut short":
                work.failure = ended  # the first real failure is the one counted
            work.pending -= count
            if work.pending:
                return
            failure = work.failure
        if failure is None:
            self._processed(work, combined(work.streamed + work.parts))
        else:
            self._attempt_failed(work, *failure)

    def _processed(self, work: RoundWork, result: RoundResult) -> None:
        round_id = work.round.id
        try:
            work.processed = result
            self.metrics.processing_seconds.observe(result.seconds)
            self.metrics.instances_quarantined.inc(result.quarantined)
            if result.quarantined:
                self.metrics.failures.labels(stage="deid").inc(result.quarantined)
            self.spool.processed(round_id)
            outbox = self.spool.outbox(round_id)
            if not (outbox.is_dir() and any(outbox.rglob("*.dcm"))):  # incl. to-NAME/
                self.on_empty(work)
        finally:
            self.in_flight.release(round_id)

    def _attempt_failed(self, work: RoundWork, kind: str, why: str) -> None:
        """A failed attempt quarantines nothing and loses nothing: the round runs again.

        A failure is counted in state.db and the round waits a growing delay before its
        next attempt (`processing_retry_delay`); the last allowed failure holds it until
        `quarantine release round-N`. An attempt cut short (a stop, another round's worker
        death) is not a failure. If even the state change fails (a full disk), `heal`
        retries it on a later tick.
        """
        round_id = work.round.id
        with self.in_flight.lock:
            work.streamed = []  # the outbox is cleared: every instance runs again
        try:
            if kind == "cut short" or self.stopping.is_set():
                self.spool.process_again(round_id, why)
                return
            self.metrics.failures.labels(stage="worker").inc()
            failures = work.round.attempts + 1
            delay = processing_retry_delay(failures)
            if delay is None:
                log.error("round %d: %s; held after %d failed attempts until `quarantine "
                          "release round-%d`", round_id, why, failures, round_id)  # fmt: skip
                self.spool.processing_failed(round_id, failures, None, why)
                self.in_flight.forget(round_id)
                return
            self.metrics.process_retries.inc()
            log.error("round %d: %s (failure %d); processing it again in %.0f s",
                      round_id, why, failures, delay)  # fmt: skip
            self.spool.processing_failed(round_id, failures, time.time() + delay, why)
        finally:
            self.in_flight.release(round_id)
