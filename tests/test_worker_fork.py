"""The service's workers are forked at one known moment, inside a guard, never later.

A fork() child has only the forking thread: a lock another thread held at that instant is
held in the child for ever. SQLite's mutexes are such locks, and the receiving threads are
inside SQLite all the time, so a worker forked at the executor's first task (whenever an
instance arrived) could hang at its first mapping write with its study never processed.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service_harness import create_secret, make_site

from gateway.service.worker_pool import WorkerPool
from gateway.site import load_site
from gateway.stores.spool import Spool


def test_every_worker_is_forked_inside_the_guard_when_the_pool_is_made(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination={"folder": str(tmp_path / "out")}, workers=2)  # fmt: skip
    settings = load_site(site.config).engine_settings()
    spool = Spool(tmp_path / "storage", settings.keyed_hash())
    forked_inside: list[int] = []  # new child processes, per use of the guard

    @contextmanager
    def guard() -> Iterator[None]:
        with spool.held_still():
            before = set(multiprocessing.active_children())
            yield
            forked_inside.append(len(set(multiprocessing.active_children()) - before))

    pool = WorkerPool(settings, 2, guard)
    try:
        assert forked_inside == [2]
        executor, generation = pool.current()
        assert executor.submit(sum, [1, 2]).result(timeout=60) == 3
        pool.replace(generation)  # a worker died: the new pool is forked the same way
        assert forked_inside == [2, 2]
        assert pool.current()[0].submit(sum, [3, 4]).result(timeout=60) == 7
    finally:
        pool.shutdown()
        spool.close()
