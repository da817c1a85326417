"""The forwarding stage: clean instances to the destination as they clear, retries, the end.

While a study is still arriving, what its outbox already holds is sent (`send_ready`, asked
by the scheduler); a failed send of that kind only waits a little, in memory. Once the
round is closed and processed, `start` sends the rest: its failures are retried at times
kept in state.db, and its success ends the round.

One `Destination` interface for every kind of place a round can go (a DICOM AE, a folder,
later more): `send` takes the outbox files not yet confirmed and calls `on_stored` after
each one the destination has taken, so a retry or a restart sends only the rest.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.base.metrics import Metrics
from gateway.config.schema import DestinationConfig, RetryConfig
from gateway.net.folder import forward_to_folder
from gateway.net.kept_associations import KeptAssociations
from gateway.net.outcome import ForwardOutcome, ForwardResult
from gateway.net.scu import forward_to_ae
from gateway.pipeline.round_files import destination_folder
from gateway.pipeline.routing import DEFAULT_DESTINATION
from gateway.service.in_flight import InFlight
from gateway.service.worker_pool import RoundWork
from gateway.stores.audit import AuditLog
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import StudyRound

log = logging.getLogger(__name__)

FORWARD_THREADS = 4


class Destination(Protocol):
    """Where clean rounds go."""

    name: str

    def send(
        self, files: list[Path], on_stored: Callable[[Path], None], round_id: int | None = None
    ) -> ForwardResult:
        """Send `files` (of `round_id`); call `on_stored(path)` once the destination holds
        each one, so a retry sends only the rest. A destination where sending a file again
        is harmless may call it later, or for none (the stage counts what `sent` says)."""
        ...

    def round_done(self, round_id: int) -> None:
        """The round will send nothing more (what was kept open for it may go)."""

    def release_idle(self) -> None:
        """Let go of what has been kept open and unused too long (the scheduler asks)."""

    def close(self) -> None:
        """Shutdown."""


@dataclass
class AeDestination:
    """A DICOM AE (C-STORE, optionally over TLS): one association per study round, kept
    open between its batches while it arrives, released when the round ends or idles."""

    ae_title: str
    host: str
    port: int
    calling_ae: str
    ssl_context: ssl.SSLContext | None = None
    kept: KeptAssociations | None = field(default_factory=KeptAssociations)  # None: never

    @property
    def name(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def send(
        self, files: list[Path], on_stored: Callable[[Path], None], round_id: int | None = None
    ) -> ForwardResult:
        return forward_to_ae(
            files,
            ae_title=self.ae_title,
            host=self.host,
            port=self.port,
            calling_ae=self.calling_ae,
            ssl_context=self.ssl_context,
            on_stored=on_stored,
            kept=self.kept,
            key=round_id,
        )

    def round_done(self, round_id: int) -> None:
        if self.kept is not None:
            self.kept.release(round_id)

    def release_idle(self) -> None:
        if self.kept is not None:
            self.kept.release_idle()

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()


@dataclass
class FolderDestination:
    """A folder tree, written atomically and durably (idempotent: same names again)."""

    folder: Path

    @property
    def name(self) -> str:
        return f"folder {self.folder}"

    def send(
        self, files: list[Path], on_stored: Callable[[Path], None], round_id: int | None = None
    ) -> ForwardResult:
        """All marked once all are written; after a failure none are (the same names
        written again are harmless)."""
        result = forward_to_folder(files, self.folder)
        if result.outcome is ForwardOutcome.OK:
            for path in files:
                on_stored(path)
        return result

    def round_done(self, round_id: int) -> None:
        """Nothing is kept open for a folder."""

    def release_idle(self) -> None:
        """Nothing is kept open for a folder."""

    def close(self) -> None:
        """Nothing is kept open for a folder."""


_NOTHING = ForwardResult(ForwardOutcome.OK, 0, 0, "nothing to send")


def _destination_folders(outbox: Path) -> list[str]:
    """The names of the outbox's `to-NAME` folders (one scandir: Path.glob matched every
    instance file's name against the pattern after every chunk)."""
    try:
        with os.scandir(outbox) as entries:
            return [e.name for e in entries if e.name.startswith("to-") and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _unsent(
    folder: Path, prefix: str, done: set[str], skip: set[str] | frozenset[str]
) -> list[str]:
    """The names of the instance files in `folder` (sorted) that are neither confirmed
    (`done`) nor to be skipped, as `prefix + name`. One scandir of names: the outbox is
    listed again after every chunk a worker finishes, and making a Path of each of its
    files every time grew with the square of the study's size."""
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        name
        for name in names
        if name.endswith(".dcm")
        and not name.startswith(".")
        and prefix + name not in done
        and prefix + name not in skip
    )


def _together(results: list[tuple[str, ForwardResult]]) -> ForwardResult:
    """One result for a round sent to several destinations: refused where any refused,
    to be retried where any is to be retried (only what is unconfirmed goes again)."""
    if len(results) == 1:
        return results[0][1]
    outcomes = {result.outcome for _, result in results}
    outcome = next(o for o in (ForwardOutcome.FAIL, ForwardOutcome.RETRY, ForwardOutcome.OK)
                   if o in outcomes)  # fmt: skip
    shown = [(n, r) for n, r in results if r is not _NOTHING]
    return ForwardResult(
        outcome,
        sum(r.sent for _, r in results),
        sum(r.failed for _, r in results),
        "; ".join(f"{name}: {r.message}" for name, r in shown) or _NOTHING.message,
    )


def destination_for(
    config: DestinationConfig, calling_ae: str, ssl_context: ssl.SSLContext | None
) -> Destination:
    """The configured destination (validation left exactly one form set)."""
    if config.folder is not None:
        return FolderDestination(config.folder)
    assert config.ae_title and config.host and config.port
    idle = config.keep_open_seconds
    return AeDestination(config.ae_title, config.host, config.port, calling_ae, ssl_context,
                         KeptAssociations(idle) if idle > 0 else None)  # fmt: skip


class ForwardingStage:
    """Sends processed rounds on threads, retries them at their time (the scheduler asks),
    and ends a round: metrics, `spool.finish`, the audit record, then `after_study` (the
    site's hooks: it returns at once and never raises)."""

    def __init__(
        self,
        spool: Spool,
        destinations: Destination | dict[str, Destination],
        retry: RetryConfig,
        metrics: Metrics,
        audit: AuditLog,
        profile_name: str,
        in_flight: InFlight,
        after_study: Callable[[RoundWork, ForwardResult], None] = lambda _work, _result: None,
    ) -> None:
        if not isinstance(destinations, dict):
            destinations = {DEFAULT_DESTINATION: destinations}
        self.spool, self.destinations, self.retry = spool, destinations, retry
        self.destination = destinations[DEFAULT_DESTINATION]
        self.metrics, self.audit, self.profile_name = metrics, audit, profile_name
        self.in_flight, self.after_study = in_flight, after_study
        self._threads = ThreadPoolExecutor(FORWARD_THREADS, thread_name_prefix="forward")
        self._early_waits: dict[int, tuple[int, float]] = {}  # round -> (failures, until)
        # A refusal that sending again cannot help (0xCxxx): the round is not sent again
        # while it arrives, and its close ends in the failed state without a resend.
        self._early_refusals: dict[int, tuple[ForwardResult, set[str]]] = {}
        # Receiving rounds with clean instances in the outbox not yet sent (`written`): the
        # outbox is looked at only then, not five times a second for every round.
        self._unsent: set[int] = set()
        self._unsent_lock = threading.Lock()

    def written(self, round_id: int) -> None:
        """Clean instances of a receiving round are now in its outbox."""
        with self._unsent_lock:
            self._unsent.add(round_id)

    def send_ready(self, receiving: StudyRound) -> None:
        """Send what the outbox of a round still receiving holds and was not sent yet."""
        failures, until = self._early_waits.get(receiving.id, (0, 0.0))
        with self._unsent_lock:
            if receiving.id not in self._unsent or time.monotonic() < until:
                return
            if not self.in_flight.claim(receiving.id):
                return
            self._unsent.discard(receiving.id)  # what is written from now on: next time
        try:
            self._threads.submit(self._send_early, receiving.id, failures)
        except RuntimeError:  # shutting down
            self.in_flight.release(receiving.id)

    def _send_early(self, round_id: int, failures: int) -> None:
        try:
            result, unconfirmed = self._send_unsent(round_id)
            if result.outcome is not ForwardOutcome.OK:
                self.written(round_id)  # still unsent: again after the wait
            if result.outcome is ForwardOutcome.OK:
                self._early_waits.pop(round_id, None)
            elif result.outcome is ForwardOutcome.FAIL:
                self._early_refusals[round_id] = (result, unconfirmed)
                self._early_waits[round_id] = (failures + 1, math.inf)
                log.warning("round %d: the destination refused an instance (%s); the study "
                            "waits for its close", round_id, result.message)  # fmt: skip
            else:
                delay = min(self.retry.initial_seconds * 2**failures, self.retry.max_seconds)
                self._early_waits[round_id] = (failures + 1, time.monotonic() + delay)
                log.warning("round %d: sending as instances clear failed (%s); again in %.0f s",
                            round_id, result.message, delay)  # fmt: skip
        except Exception:
            self.written(round_id)
            log.exception("round %d: sending as instances clear crashed", round_id)
        finally:
            self.in_flight.release(round_id)

    def _send_unsent(
        self, round_id: int, skip: set[str] | frozenset[str] = frozenset()
    ) -> tuple[ForwardResult, set[str]]:
        """The outbox files their destinations have not confirmed (less `skip`), sent to
        each destination in turn; marks as they go. With the names of those sent and not
        confirmed. A named destination's files are marked as `to-NAME/FILE`."""
        done = self.spool.forwarded(round_id)
        outbox = self.spool.outbox(round_id)
        results: list[tuple[str, ForwardResult]] = []
        unconfirmed: set[str] = set()
        for name, destination in self.destinations.items():
            folder = destination_folder(outbox, name)
            prefix = "" if folder == outbox else f"{folder.name}/"
            files = [folder / name for name in _unsent(folder, prefix, done, skip)]
            if not files and results:
                continue
            marked: list[Path] = []

            def stored(path: Path, prefix: str = prefix, marked: list[Path] = marked) -> None:
                self.spool.mark_forwarded(round_id, prefix + path.name)
                self.metrics.instances_forwarded.inc()
                marked.append(path)

            result = destination.send(files, stored, round_id) if files else _NOTHING
            self.metrics.instances_forwarded.inc(max(result.sent - len(marked), 0))
            results.append((name, result))
            unconfirmed |= {prefix + f.name for f in files} - {prefix + f.name for f in marked}
        known = {destination_folder(outbox, name).name for name in self.destinations}
        orphans = sorted(name for name in _destination_folders(outbox) if name not in known)
        if orphans:  # written for a destination the configuration no longer names
            gone = ", ".join(name.removeprefix("to-") for name in orphans)
            results.append((gone, ForwardResult(
                ForwardOutcome.FAIL, 0, 0, "no destination of that name is configured now"
            )))  # fmt: skip
        result = _together(results)
        if done:
            result = ForwardResult(result.outcome, result.sent + len(done), result.failed,
                                   f"{result.message} ({len(done)} sent earlier)")  # fmt: skip
        return result, unconfirmed

    def start(self, due: StudyRound) -> None:
        """Send `due` (a round whose outbox is ready, or whose retry time has come)."""
        if not self.in_flight.claim(due.id):
            return
        work = self.in_flight.work(due)
        work.round = due
        try:
            self._threads.submit(self._forward, work)
        except RuntimeError:  # shutting down
            self.in_flight.release(due.id)

    def shutdown(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        for destination in self.destinations.values():
            destination.close()

    def release_idle(self) -> None:
        """Associations kept open for rounds that sent nothing for a while are released."""
        for destination in self.destinations.values():
            destination.release_idle()

    def _round_done(self, round_id: int) -> None:
        for destination in self.destinations.values():
            destination.round_done(round_id)

    def _forward(self, work: RoundWork) -> None:
        round_id = work.round.id
        started = time.monotonic()
        self._early_waits.pop(round_id, None)
        refused = self._early_refusals.pop(round_id, None)
        try:
            # Resumed: what the destination already confirmed (sent as instances cleared,
            # before a retry or a crash) is not sent again.
            if refused is None:
                result, _ = self._send_unsent(round_id)
            else:  # the rest goes; the refused instances wait in the failed state
                refusal, refused_names = refused
                rest, _ = self._send_unsent(round_id, skip=refused_names)
                result = refusal if rest.outcome is ForwardOutcome.OK else rest
        except Exception as exc:  # a bug must not kill the forwarding thread silently
            log.exception("round %d: forwarding crashed", round_id)
            result = ForwardResult(ForwardOutcome.RETRY, 0, 0, type(exc).__name__)
        seconds = time.monotonic() - started
        try:
            if result.outcome is ForwardOutcome.OK:
                self.finish(work, result, seconds)
            else:
                self._retry_later(work, result)
        finally:
            self.in_flight.release(round_id)

    def _retry_later(self, work: RoundWork, result: ForwardResult) -> None:
        attempts = work.round.attempts + 1
        self.metrics.failures.labels(stage="forward").inc()
        if result.outcome is ForwardOutcome.FAIL or attempts >= self.retry.max_attempts:
            log.error("round %d: forwarding failed after %d attempts: %s",
                      work.round.id, attempts, result.message)  # fmt: skip
            self.spool.forward_failed(work.round.id, attempts, None, result.message)
            work.destinations = self._destinations_used(work.round.id)
            self._audit(work, result, "failed", 0.0)
            self._round_done(work.round.id)
            return
        delay = min(self.retry.initial_seconds * 2 ** (attempts - 1), self.retry.max_seconds)
        self.metrics.forward_retries.inc()
        log.warning("round %d: forwarding attempt %d failed (%s); next in %.0f s",
                    work.round.id, attempts, result.message, delay)  # fmt: skip
        self.spool.forward_failed(work.round.id, attempts, time.time() + delay, result.message)

    def finish(self, work: RoundWork, result: ForwardResult, seconds: float) -> None:
        """The round is done: everything clean is at the destination (or there was none)."""
        # Counted first: once the queue shows empty, the count already says forwarded.
        self.metrics.studies_forwarded.inc()
        self._round_done(work.round.id)
        work.destinations = self._destinations_used(work.round.id)
        self.spool.finish(work.round.id)
        self._audit(work, result, "forwarded", seconds)
        self.in_flight.forget(work.round.id)
        log.info("study %s round %d forwarded: %d instances",
                 work.study_hash, work.round.id, result.sent)  # fmt: skip
        self.after_study(work, result)

    def _destinations_used(self, round_id: int) -> list[str]:
        """Names of the destinations the round's outbox holds files for."""
        outbox = self.spool.outbox(round_id)
        return [
            name
            for name in self.destinations
            if any(destination_folder(outbox, name).glob("*.dcm"))
        ]

    def _audit(self, work: RoundWork, result: ForwardResult, outcome: str, seconds: float) -> None:
        self.audit.record(
            "study_round",
            **work.audit_fields(
                instances_out=result.sent,
                profile=self.profile_name,
                forward_seconds=round(seconds, 3),
                destination=self.destination.name,
                destinations={n: self.destinations[n].name for n in work.destinations},
                result=outcome,
                message=result.message,
            ),
        )
