"""`dicom-gateway run`: the stages wired together.

receive (net/scp) -> spool -> quiet period (scheduler tick) -> worker pool (de-identify,
verify, outbox) -> forward (net/scu or folder) -> spool.finish. Every state change goes
through the spool's state.db, so a restart at any instant resumes without loss, and a round
is forwarded only from its outbox, which holds nothing that did not pass the verify gate.
"""

from __future__ import annotations

import logging
import math
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler

from gateway.base.metrics import Metrics
from gateway.net.folder import forward_to_folder
from gateway.net.outcome import ForwardOutcome, ForwardResult
from gateway.net.scp import start_scp, stop_scp
from gateway.net.scu import forward_to_ae
from gateway.pipeline.files import RoundResult, process_round
from gateway.service import sdnotify
from gateway.service.worker_pool import (
    RoundWork,
    WorkerPool,
    chunk_size,
    combined,
    failure_text,
    processing_retry_delay,
)
from gateway.site import Site
from gateway.stores import quarantine
from gateway.stores.audit import AUDIT_FILE, AuditLog
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import RoundState, StudyRound
from gateway.stores.storage_dir import open_storage_dir

log = logging.getLogger(__name__)

FORWARD_THREADS = 4


class GatewayService:
    """Owns the SCP, the spool, the worker pool, the forwarders and the HTTP endpoints."""

    def __init__(self, site: Site) -> None:
        """`site` comes from `gateway.site.load_site`: the service starts only on a site
        whose profile, secret, keys, TLS files and pixel settings passed every check."""
        config = site.config
        self.config = config
        self.tls = site.tls
        self.profile = site.profile
        self.settings = site.engine_settings()
        open_storage_dir(config.storage_dir)
        self.spool = Spool(config.storage_dir, self.settings.keyed_hash())
        quarantine.remove_staging(config.storage_dir)  # half-made entries of a crash
        self.metrics = Metrics()
        self.metrics.measure_queue_depth(self.spool.queue_depth)
        self.metrics.measure(self.metrics.forward_next_attempt_seconds, self.spool.next_retry_in)
        self.metrics.measure(
            self.metrics.forward_failed_studies, lambda: self.spool.count_in(RoundState.FAILED)
        )
        self.metrics.measure(
            self.metrics.process_held_studies, lambda: self.spool.count_in(RoundState.HELD)
        )
        self.audit = AuditLog(config.storage_dir / AUDIT_FILE)
        self._pool = WorkerPool(self.settings, config.workers)
        self._forwarders = ThreadPoolExecutor(FORWARD_THREADS, thread_name_prefix="forward")
        self._lock = threading.Lock()
        self._work: dict[int, RoundWork] = {}
        self._busy: set[int] = set()
        self._scheduler = BackgroundScheduler(daemon=True)
        self._stopping = threading.Event()
        self._storage_logged = -math.inf
        self.scp = None
        self.http = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.http = self.metrics.start_http(
            self.config.http.host, self.config.http.port, self.healthy
        )
        self.scp = start_scp(
            self.config.listen, self.spool, self.metrics, ssl_context=self.tls.server
        )
        quiet = self.config.study.quiet_seconds
        tick = max(0.2, min(1.0, quiet / 4))
        self._scheduler.add_job(
            self.tick, "interval", seconds=tick, max_instances=1, coalesce=True, id="tick"
        )
        self._scheduler.start()
        log.info(
            "gateway running: %d workers, quiet period %.1f s, destination %s",
            self.config.workers,
            quiet,
            self._destination_name(),
        )
        listen = self.config.listen
        sdnotify.status(
            f"{listen.ae_title} listening on {listen.host}:{listen.port}; "
            f"destination {self._destination_name()}"
        )
        sdnotify.ready()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: stop accepting, finish open associations and in-flight work, flush state."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        sdnotify.stopping()
        sdnotify.status("draining")
        if self.scp is not None:
            stop_scp(self.scp, timeout)
        if self._scheduler.running:  # start() may have failed before it
            self._scheduler.shutdown(wait=True)
        self._pool.shutdown()
        self._forwarders.shutdown(wait=True, cancel_futures=True)
        if self.http is not None:
            self.http.shutdown()
        self.spool.close()
        log.info("gateway stopped")

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain."""
        stop = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            log.info("signal %d: draining", signum)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        # WatchdogSec= under systemd: pinged from this loop, so a hung main thread is restarted.
        watchdog = sdnotify.Watchdog()
        wake = min(1.0, watchdog.period or 1.0)
        try:
            self.start()
            while not stop.wait(wake):
                watchdog.ping_if_due()
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def healthy(self) -> bool:
        """/healthz: the SCP is listening and the spool takes files."""
        listening = self.scp is not None and not self._stopping.is_set()
        return listening and self.spool.writable()

    def _destination_name(self) -> str:
        dest = self.config.destination
        if dest.folder is not None:
            return f"folder {dest.folder}"
        return f"{dest.ae_title}@{dest.host}:{dest.port}"

    # -- the scheduler's tick: complete studies to workers, outboxes to forwarders -----------

    def tick(self) -> None:
        if self._stopping.is_set():
            return
        try:
            self._heal()
            for due in self.spool.due_rounds(self.config.study.quiet_seconds):
                self._start_processing(due)
            for due in self.spool.forward_due():
                self._start_forwarding(due)
        except (OSError, sqlite3.OperationalError) as exc:
            # A full or failing disk: everything stays where it is and the next tick tries
            # again; one line a minute, not a traceback four times a second.
            self.metrics.failures.labels(stage="storage").inc()
            now = time.monotonic()
            if now - self._storage_logged >= 60:
                self._storage_logged = now
                log.error("storage unusable, work waits: %s", exc)
        except Exception:
            log.exception("scheduler tick failed")

    def _heal(self) -> None:
        """A round left `processing` with no work in flight (its state change failed, e.g.
        on a full disk) goes back to `receiving`, so it runs again once the cause is gone."""
        for stuck in self.spool.rounds_in(RoundState.PROCESSING):
            if self._claim_busy(stuck.id):
                try:
                    log.warning("round %d: processing was interrupted; running it again", stuck.id)
                    self.spool.process_again(stuck.id, "interrupted", delayed=True)
                finally:
                    self._release_busy(stuck.id)

    def _claim_busy(self, round_id: int) -> bool:
        with self._lock:
            if round_id in self._busy:
                return False
            self._busy.add(round_id)
            return True

    def _release_busy(self, round_id: int) -> None:
        with self._lock:
            self._busy.discard(round_id)

    def _start_processing(self, due: StudyRound) -> None:
        if not self._claim_busy(due.id):
            return
        try:
            files = self.spool.claim(due.id)
        except Exception:
            self._release_busy(due.id)
            raise
        if files is None:
            self._release_busy(due.id)
            return
        self.metrics.studies_completed.inc()
        with self._lock:
            work = self._work.setdefault(due.id, RoundWork(due, self.spool.uid_hash(due.study_uid)))
            work.round, work.parts, work.failure = due, [], None
            work.attempt += 1
            attempt = work.attempt
        log.info("study %s round %d complete: %d instances", work.study_hash, due.id, len(files))
        paths = [instance.path for instance in files]
        # A large study is spread over every worker, in chunks, so one study uses them all.
        size = chunk_size(len(paths), self.config.workers)
        chunks = [paths[i : i + size] for i in range(0, len(paths), size)] or [[]]
        work.pending = len(chunks)
        outbox = self.spool.outbox(due.id)
        pool, generation = self._pool.current()
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
        if isinstance(ended, tuple) and ended[0] == "crash" and not self._stopping.is_set():
            self._pool.replace(generation)  # a dead worker breaks the whole executor
        with self._lock:
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
            self._processed(work, combined(work.parts))
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
            if result.written == 0:
                # Nothing clean to send: the originals are in the quarantine; the round is done.
                done = ForwardResult(ForwardOutcome.OK, 0, 0, "nothing to forward")
                self._finish(work, done, 0.0)
        finally:
            self._release_busy(round_id)

    def _attempt_failed(self, work: RoundWork, kind: str, why: str) -> None:
        """A failed attempt quarantines nothing and loses nothing: the round runs again.

        A failure is counted in state.db and the round waits a growing delay before its
        next attempt (`processing_retry_delay`); the last allowed failure holds it until
        `quarantine release round-N`. An attempt cut short (a stop, another round's worker
        death) is not a failure. If even the state change fails (a full disk), `_heal`
        retries it on a later tick.
        """
        round_id = work.round.id
        try:
            if kind == "cut short" or self._stopping.is_set():
                self.spool.process_again(round_id, why)
                return
            self.metrics.failures.labels(stage="worker").inc()
            failures = work.round.attempts + 1
            delay = processing_retry_delay(failures)
            if delay is None:
                log.error("round %d: %s; held after %d failed attempts until `quarantine "
                          "release round-%d`", round_id, why, failures, round_id)  # fmt: skip
                self.spool.processing_failed(round_id, failures, None, why)
                with self._lock:
                    self._work.pop(round_id, None)
                return
            self.metrics.process_retries.inc()
            log.error("round %d: %s (failure %d); processing it again in %.0f s",
                      round_id, why, failures, delay)  # fmt: skip
            self.spool.processing_failed(round_id, failures, time.time() + delay, why)
        finally:
            self._release_busy(round_id)

    def _start_forwarding(self, due: StudyRound) -> None:
        if not self._claim_busy(due.id):
            return
        with self._lock:
            work = self._work.setdefault(due.id, RoundWork(due, self.spool.uid_hash(due.study_uid)))
        work.round = due
        try:
            self._forwarders.submit(self._forward, work)
        except RuntimeError:
            self._release_busy(due.id)

    def _forward(self, work: RoundWork) -> None:
        round_id = work.round.id
        started = time.monotonic()
        done: set[str] = set()
        try:
            # Resumed: what the destination already confirmed (before a retry or a crash)
            # is not sent again.
            done = self.spool.forwarded(round_id)
            files = sorted(
                f for f in self.spool.outbox(round_id).glob("*.dcm") if f.name not in done
            )
            result = self._send(files, lambda path: self._stored(round_id, path))
            if done:
                result = ForwardResult(
                    result.outcome,
                    result.sent + len(done),
                    result.failed,
                    f"{result.message} ({len(done)} sent by earlier attempts)",
                )
        except Exception as exc:  # a bug must not kill the forwarding thread silently
            log.exception("round %d: forwarding crashed", round_id)
            result = ForwardResult(ForwardOutcome.RETRY, 0, 0, type(exc).__name__)
        seconds = time.monotonic() - started
        try:
            if result.outcome is ForwardOutcome.OK:
                self._finish(work, result, seconds)
            else:
                self._retry_later(work, result)
        finally:
            self._release_busy(round_id)

    def _stored(self, round_id: int, path: Path) -> None:
        self.spool.mark_forwarded(round_id, path.name)
        self.metrics.instances_forwarded.inc()

    def _send(self, files: list[Path], on_stored: Callable[[Path], None]) -> ForwardResult:
        dest = self.config.destination
        if dest.folder is not None:
            result = forward_to_folder(files, dest.folder)  # idempotent: same names again
            self.metrics.instances_forwarded.inc(result.sent)
            return result
        assert dest.ae_title and dest.host and dest.port
        return forward_to_ae(
            files,
            ae_title=dest.ae_title,
            host=dest.host,
            port=dest.port,
            calling_ae=self.config.listen.ae_title,
            ssl_context=self.tls.client,
            on_stored=on_stored,
        )

    def _retry_later(self, work: RoundWork, result: ForwardResult) -> None:
        retry = self.config.destination.retry
        attempts = work.round.attempts + 1
        self.metrics.failures.labels(stage="forward").inc()
        if result.outcome is ForwardOutcome.FAIL or attempts >= retry.max_attempts:
            log.error(
                "round %d: forwarding failed after %d attempts: %s",
                work.round.id,
                attempts,
                result.message,
            )
            self.spool.forward_failed(work.round.id, attempts, None, result.message)
            self._audit(work, result, "failed", 0.0)
            return
        delay = min(retry.initial_seconds * 2 ** (attempts - 1), retry.max_seconds)
        self.metrics.forward_retries.inc()
        log.warning(
            "round %d: forwarding attempt %d failed (%s); next in %.0f s",
            work.round.id,
            attempts,
            result.message,
            delay,
        )
        self.spool.forward_failed(work.round.id, attempts, time.time() + delay, result.message)

    def _finish(self, work: RoundWork, result: ForwardResult, seconds: float) -> None:
        # Counted first: once the queue shows empty, the count already says forwarded.
        self.metrics.studies_forwarded.inc()
        self.spool.finish(work.round.id)
        self._audit(work, result, "forwarded", seconds)
        with self._lock:
            self._work.pop(work.round.id, None)
        log.info(
            "study %s round %d forwarded: %d instances", work.study_hash, work.round.id,
            result.sent,
        )

    def _audit(self, work: RoundWork, result: ForwardResult, outcome: str, seconds: float) -> None:
        self.audit.record(
            "study_round",
            **work.audit_fields(
                instances_out=result.sent,
                profile=self.profile.name,
                forward_seconds=round(seconds, 3),
                destination=self._destination_name(),
                result=outcome,
                message=result.message,
            ),
        )
