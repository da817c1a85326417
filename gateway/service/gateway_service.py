"""`dicom-gateway run`: the stages wired together, and nothing else.

receive (net/scp) -> spool -> scheduler (quiet period: the round is complete) -> processing
(worker pool: de-identify, pixels, verify, outbox) -> forwarding (a `Destination`) ->
spool.finish. Every state change goes through the spool's state.db, so a restart at any
instant resumes without loss, and a round is forwarded only from its outbox, which holds
nothing that did not pass the verify gate.
"""

from __future__ import annotations

import logging
import signal
import ssl
import threading
from typing import TYPE_CHECKING

from gateway.base.metrics import Metrics
from gateway.net.outcome import ForwardOutcome, ForwardResult
from gateway.net.scp import start_scp, stop_scp
from gateway.pipeline.routing import DEFAULT_DESTINATION
from gateway.service import sdnotify
from gateway.service.forwarding import (
    AeDestination,
    Destination,
    ForwardingStage,
    destination_for,
)
from gateway.service.hooks import AfterStudyHooks, StudyForwarded
from gateway.service.in_flight import InFlight
from gateway.service.processing import ProcessingStage
from gateway.service.scheduler import Scheduler
from gateway.service.sender_process import ProcessDestination
from gateway.service.worker_pool import RoundWork, WorkerPool
from gateway.site import Site
from gateway.stores import quarantine
from gateway.stores.audit import AUDIT_FILE, AuditLog
from gateway.stores.pull_index import report_for
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import RoundState
from gateway.stores.storage_dir import open_storage_dir

if TYPE_CHECKING:
    from flask import Flask

    from gateway.config.schema import HttpConfig

log = logging.getLogger(__name__)


def _http_tls(http: HttpConfig) -> ssl.SSLContext | None:
    """TLS 1.2 or later on the HTTP port when `http.tls` is set (checked at config load)."""
    if http.tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(http.tls.cert, http.tls.key)
    return context


class GatewayService:
    """Owns the SCP, the spool, the stages, the scheduler and the HTTP endpoints."""

    def __init__(self, site: Site) -> None:
        """`site` comes from `gateway.site.load_site`: the service starts only on a site
        whose profile, secret, keys, TLS files and pixel settings passed every check."""
        config = site.config
        self.config = config
        self.tls = site.tls
        self.profile = site.profile
        self.settings = site.engine_settings()
        open_storage_dir(config.storage_dir)
        self.spool = Spool(
            config.storage_dir, self.settings.keyed_hash(), durability=config.spool.durability
        )
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
        self._stopping = threading.Event()
        in_flight = InFlight(self.spool)
        self.destination = self._own_process(
            destination_for(config.destination, config.listen.ae_title, self.tls.client)
        )
        destinations = {DEFAULT_DESTINATION: self.destination} | {
            name: self._own_process(
                destination_for(named, config.listen.ae_title, self.tls.named.get(name))
            )
            for name, named in config.destinations.items()
        }
        self.hooks = AfterStudyHooks(config.hooks.after_study, self.audit)
        self.forwarding = ForwardingStage(
            self.spool, destinations, config.destination.retry, self.metrics, self.audit,
            self.profile.name, in_flight, after_study=self._after_study,
        )  # fmt: skip
        self._pool = WorkerPool(self.settings, config.workers, self.spool.held_still)
        self.processing = ProcessingStage(
            self.spool, self._pool, config.workers, self.metrics, in_flight, self._stopping,
            on_empty=self._nothing_to_forward,
            on_written=self.forwarding.written,
        )  # fmt: skip
        self.scheduler = Scheduler(
            self.spool,
            config.study.quiet_seconds,
            self.metrics,
            heal=self.processing.heal,
            process=self.processing.start,
            forward=self.forwarding.start,
            take_arrivals=self.processing.take_arrivals,
            send_ready=self.forwarding.send_ready,
            housekeeping=self.forwarding.release_idle,
            storage_dir=config.storage_dir,
            purge_after_days=config.quarantine.purge_after_days,
        )
        # A finished chunk wakes the arrivals look at once; so does a recorded instance
        # while a worker has nothing to do.
        self.processing.on_chunk_done = self.scheduler.nudge_arrivals
        self.spool.on_recorded = self._arrived
        self.scp = None
        self.http = None

    def _arrived(self) -> None:
        if self.processing.worker_idle():
            self.scheduler.nudge_arrivals()

    def _after_study(self, work: RoundWork, result: ForwardResult) -> None:
        """The site's after-study hooks, given the round's pseudonymous facts only."""
        if not self.hooks.configured:
            return
        done = work.processed
        try:
            event = StudyForwarded(
                pseudo_study_uids=done.study_uids if done else (),
                study_hash=work.study_hash,
                round=work.round.id,
                instances_out=result.sent,
                instances_quarantined=done.quarantined if done else 0,
                destination=", ".join(work.destinations) or "none",
                result="forwarded",
                report=report_for(self.config.storage_dir, work.study_hash),
            )
        except ValueError as exc:  # a value the hook may not be given: none is
            log.warning("round %d: after-study hook not run (%s)", work.round.id, exc)
            return
        self.hooks.study_forwarded(event)

    def _nothing_to_forward(self, work: RoundWork) -> None:
        """Every instance of the round went to the quarantine: the round is done."""
        done = ForwardResult(ForwardOutcome.OK, 0, 0, "nothing to forward")
        self.forwarding.finish(work, done, 0.0)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        # The listener first: once /healthz answers, senders can connect.
        self.scp = start_scp(
            self.config.listen, self.spool, self.metrics, ssl_context=self.tls.server
        )
        http = self.config.http
        self.http = self.metrics.start_http(
            http.host, http.port, self.healthy, app=self._console(), ssl_context=_http_tls(http)
        )
        self.scheduler.start()
        log.info(
            "gateway running: %d workers, quiet period %.1f s, destination %s",
            self.config.workers,
            self.config.study.quiet_seconds,
            self.destination.name,
        )
        if self.config.spool.durability == "process":
            log.warning("spool.durability is process: acknowledged instances survive a crash "
                        "of the gateway, not a power cut")  # fmt: skip
        listen = self.config.listen
        sdnotify.status(
            f"{listen.ae_title} listening on {listen.host}:{listen.port}; "
            f"destination {self.destination.name}"
        )
        sdnotify.ready()

    def _own_process(self, destination: Destination) -> Destination:
        """An AE destination sends from a child process of its own (`sender_process`),
        forked now, before the service's threads start."""
        if isinstance(destination, AeDestination):
            return ProcessDestination(destination, self.spool.held_still)
        return destination

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: stop accepting, finish open associations and in-flight work, flush state."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        sdnotify.stopping()
        sdnotify.status("draining")
        if self.scp is not None:
            stop_scp(self.scp, timeout)
        self.scheduler.stop()
        self._pool.shutdown()
        self.forwarding.shutdown()
        self.hooks.shutdown(timeout=min(timeout, 10.0))
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

    def _console(self) -> Flask | None:
        """The web console's application, when `http.console` is on (docs/console.md)."""
        if not self.config.http.console:
            return None
        from gateway.console.app import ConsoleContext, Destination, create_app

        config = self.config
        listen = config.listen
        kinds = {DEFAULT_DESTINATION: config.destination} | dict(config.destinations)
        context = ConsoleContext(
            storage_dir=config.storage_dir,
            spool=self.spool,
            audit=self.audit,
            settings=self.settings,
            listening=f"{listen.ae_title}@{listen.host}:{listen.port}",
            healthy=self.healthy,
            destinations=[
                Destination(name, "folder" if d.is_folder else "DICOM AE")
                for name, d in kinds.items()
            ],
            users_file=config.http.users,
            pixel_rules=config.deid.pixel_rules,
            https=config.http.tls is not None,
        )
        log.info("web console on the HTTP port")
        return create_app(context)

    def healthy(self) -> bool:
        """/healthz: the SCP is listening and the spool takes files."""
        listening = self.scp is not None and not self._stopping.is_set()
        return listening and self.spool.writable()
