"""The service's worker processes and what it remembers of a round between its stages.

Workers are forked by a ProcessPoolExecutor; `new_pool` makes them safe to lose together
with the gateway (see `_init_worker`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from gateway.pipeline.files import EngineSettings, init_worker
from gateway.pipeline.round_files import RoundResult, count_boxes
from gateway.stores.spool_rounds import StudyRound

# Processing that fails for the environment's sake (a full disk, a store locked, a worker
# killed) is tried again 1, 2, 4 ... s later, at most PROCESS_RETRY_MAX_SECONDS apart; the
# PROCESS_MAX_ATTEMPTS-th failure (about an hour of them) holds the round, kept whole, until
# `quarantine release round-N`. Each failure shows in /metrics and `quarantine list`.
PROCESS_MAX_ATTEMPTS = 20
PROCESS_RETRY_INITIAL_SECONDS = 1.0
PROCESS_RETRY_MAX_SECONDS = 300.0


def processing_retry_delay(failures: int) -> float | None:
    """Seconds to wait after a round's `failures`th failed processing, or None: hold it."""
    if failures >= PROCESS_MAX_ATTEMPTS:
        return None
    delay = PROCESS_RETRY_INITIAL_SECONDS * 2 ** min(max(failures - 1, 0), 32)
    return min(delay, PROCESS_RETRY_MAX_SECONDS)


def failure_text(exc: BaseException) -> str:
    """A failed attempt as logs and state.db show it: the type and the system's words,
    never a file name or a value."""
    strerror = exc.strerror if isinstance(exc, OSError) else None
    return f"processing failed ({type(exc).__name__}{': ' + strerror if strerror else ''})"


@dataclass
class RoundWork:
    """What the service remembers of a round between its stages (for the audit record).

    `attempt` numbers its processing attempts in this process: an answer that belongs to
    an earlier attempt is ignored, so it can never complete, or fail, a later one.
    `failure` is the attempt's (kind, why) once one of its chunks failed. `study_hash` is
    the study's keyed hash (`Spool.uid_hash`), what logs and the audit name it by.
    """

    round: StudyRound
    study_hash: str
    processed: RoundResult | None = None
    attempt: int = 0
    pending: int = 0
    parts: list[RoundResult] = field(default_factory=list)
    failure: tuple[str, str] | None = None
    streamed: list[RoundResult] = field(default_factory=list)  # on arrival (state.db parts)
    destinations: list[str] = field(default_factory=list)  # names its outbox had files for

    def audit_fields(
        self, *, instances_out: int, profile: str, forward_seconds: float, **forward: object
    ) -> dict[str, object]:
        """The round's audit record (no patient data: hashes, pseudonyms, counts)."""
        done = self.processed
        return {
            "round": self.round.id,
            "study_hash": self.study_hash,
            "pseudo_study_uids": list(done.study_uids) if done else [],
            "instances_in": done.instances_in if done else self.round.instances,
            "instances_out": instances_out,
            "instances_quarantined": done.quarantined if done else None,
            "quarantine_reasons": sorted(set(done.reasons)) if done else [],
            "pixel_boxes": dict(done.pixel_boxes) if done else {},
            "dropped_by_rule": dict(done.dropped) if done else {},
            "profile": profile,
            "processing_seconds": round(done.seconds, 3) if done else None,
            "forward_seconds": forward_seconds,
            **forward,
        }


def combined(parts: list[RoundResult]) -> RoundResult:
    return RoundResult(
        instances_in=sum(p.instances_in for p in parts),
        written=sum(p.written for p in parts),
        quarantined=sum(p.quarantined for p in parts),
        study_uids=tuple(sorted({uid for p in parts for uid in p.study_uids})),
        seconds=max((p.seconds for p in parts), default=0.0),
        reasons=tuple(reason for p in parts for reason in p.reasons),
        pixel_boxes=count_boxes(dict(p.pixel_boxes) for p in parts),
        dropped=count_boxes(dict(p.dropped) for p in parts),
    )


# Workers yield the CPU to the receiving process: a modality waits for each acknowledgement,
# while de-identification streams behind it and catches up when the sending stops.
WORKER_NICE = 15


def _init_worker(settings: EngineSettings) -> None:
    """Pool initializer: a worker must not outlive the gateway, nor hold its ports.

    A forked worker inherits the DICOM and HTTP listening sockets. When only the gateway's
    main process dies (the OOM killer's pick, `kill -9 MAINPID` outside systemd), workers
    blocked on the task queue would live on, holding both ports, and the restarted gateway
    could not bind them ("Address already in use"). So each worker puts /dev/null over the
    socket descriptors it inherited (not close: a stale socket object of the parent's may
    close that number later) and exits within a second of its parent.
    """
    drop_inherited_sockets()
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    parent = os.getppid()
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True
    ).start()
    init_worker(settings)
    _warm_up(settings)


def _warm_up(settings: EngineSettings) -> None:
    """Load now what the first instance would otherwise load on its study's clock: the
    recognizer's word lists (about 0.3 s a worker, measured). Loading them frees more than
    it keeps, and glibc holds freed heap for reuse: it is handed back (12 MiB a worker)."""
    recognizer = settings.free_text.build()
    if recognizer is not None:
        recognizer.lexicon  # noqa: B018 (loaded on first use)
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def drop_inherited_sockets() -> None:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # no /proc: nothing to do here
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in names:
            with contextlib.suppress(OSError, ValueError):
                if int(name) != null and os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                    os.dup2(null, int(name))
    finally:
        os.close(null)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)  # the gateway is gone; its restart processes this round again


WARM_UP_WAIT_SECONDS = 30.0  # at most, for a new pool's first worker to be ready


def new_pool(
    settings: EngineSettings,
    workers: int,
    fork_guard: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> ProcessPoolExecutor:
    """A pool whose workers are all forked now, inside `fork_guard`.

    A child of fork() has only the forking thread; a lock another thread held at that
    instant stays held in the child for ever. SQLite's own mutexes are such locks: a worker
    forked while a receiving thread was inside SQLite hung at its first mapping write, and
    its study was never processed (8 hangs in 300 forks, measured with three threads
    writing). The service's guard is `Spool.held_still` (no thread of it is in SQLite).
    The executor would otherwise fork at its first task, whenever that comes.
    """
    with fork_guard():
        executor = ProcessPoolExecutor(
            max_workers=workers, initializer=_init_worker, initargs=(settings,)
        )
        first = executor.submit(int)  # the fork start method launches every worker now
    # Ready once a worker has loaded what the first study needs (`_warm_up`; the others
    # load theirs at the same time), so that the first instance does not wait for it. A
    # worker that cannot start shows at the first real task, as before.
    with contextlib.suppress(Exception):
        first.result(timeout=WARM_UP_WAIT_SECONDS)
    return executor


# Instances per worker task: a large study is spread over all workers, in about four tasks
# per worker so that none idles while the last long chunk finishes; 8 to 64 instances a task.
CHUNK = 64
MIN_CHUNK = 8


def chunk_size(instances: int, workers: int) -> int:
    return max(MIN_CHUNK, min(CHUNK, -(-instances // max(1, workers * 4))))


class WorkerPool:
    """The service's worker processes. A worker that dies breaks its whole executor, so the
    pool is replaced as a whole; its generation tells a task of the old pool from one of
    the new, and only the first report of a death replaces it."""

    def __init__(
        self,
        settings: EngineSettings,
        workers: int,
        fork_guard: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self._settings, self._workers, self._fork_guard = settings, workers, fork_guard
        self._lock = threading.Lock()
        self._executor = new_pool(settings, workers, fork_guard)
        self.generation = 0

    def current(self) -> tuple[ProcessPoolExecutor, int]:
        with self._lock:
            return self._executor, self.generation

    def replace(self, generation: int) -> None:
        """A worker of `generation` died: start a new pool, unless that was done already."""
        with self._lock:
            if generation != self.generation:
                return
            old = self._executor
            self._executor = new_pool(self._settings, self._workers, self._fork_guard)
            self.generation += 1
        old.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        self.current()[0].shutdown(wait=True, cancel_futures=True)
