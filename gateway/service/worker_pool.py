"""The service's worker processes and what it remembers of a round between its stages.

Workers are forked by a ProcessPoolExecutor; `new_pool` makes them safe to lose together
with the gateway (see `_init_worker`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from gateway.pipeline.files import EngineSettings, RoundResult, count_boxes, init_worker
from gateway.stores.spool_rounds import StudyRound


@dataclass
class RoundWork:
    """What the service remembers of a round between its stages (for the audit record)."""

    round: StudyRound
    processed: RoundResult | None = None
    crashes: int = 0
    pending: int = 0
    parts: list[RoundResult] = field(default_factory=list)
    failed: bool = False


def combined(parts: list[RoundResult]) -> RoundResult:
    return RoundResult(
        instances_in=sum(p.instances_in for p in parts),
        written=sum(p.written for p in parts),
        quarantined=sum(p.quarantined for p in parts),
        study_uids=tuple(sorted({uid for p in parts for uid in p.study_uids})),
        seconds=max((p.seconds for p in parts), default=0.0),
        reasons=tuple(reason for p in parts for reason in p.reasons),
        pixel_boxes=count_boxes(dict(p.pixel_boxes) for p in parts),
    )


def _init_worker(settings: EngineSettings) -> None:
    """Pool initializer: a worker must not outlive the gateway, nor hold its ports.

    A forked worker inherits the DICOM and HTTP listening sockets. When only the gateway's
    main process dies (the OOM killer's pick, `kill -9 MAINPID` outside systemd), workers
    blocked on the task queue would live on, holding both ports, and the restarted gateway
    could not bind them ("Address already in use"). So each worker puts /dev/null over the
    socket descriptors it inherited (not close: a stale socket object of the parent's may
    close that number later) and exits within a second of its parent.
    """
    _drop_inherited_sockets()
    parent = os.getppid()
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True
    ).start()
    init_worker(settings)


def _drop_inherited_sockets() -> None:
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


def new_pool(settings: EngineSettings, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(settings,))
