"""Aiming a SIGKILL at a phase of the running gateway, and telling which phase it hit.

The phase is read from outside, as an administrator could: state.db (read-only) for the
rounds' states and the instance rows, /proc/PID/task/*/syscall for a thread inside a write
or sync on state.db or its WAL.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from service_harness import Gateway, Site, child_pids

PHASES = ("receive", "deid", "forward", "db-write")
AIM_SECONDS = 6.0
ORPHAN_SECONDS = 3.0  # a worker whose gateway died exits within a second (workers.py)
# x86_64 system call numbers of the writes that make state.db durable.
_WRITE_CALLS = {1: "write", 18: "pwrite64", 20: "writev", 74: "fsync", 75: "fdatasync"}
_DB_NAMES = ("state.db", "state.db-wal", "state.db-journal")


@dataclass(frozen=True)
class Snapshot:
    rounds: Counter[str]
    instances: int
    db_write: str  # "" or the call (e.g. "fdatasync") a gateway thread is making on state.db


def _db_write(pid: int) -> str:
    """A system call on state.db or its WAL that a gateway thread is inside right now."""
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "syscall").read_text().split()
        except OSError:
            continue
        if not fields or fields[0] in ("running", "-1") or int(fields[0]) not in _WRITE_CALLS:
            continue
        try:
            target = os.readlink(f"/proc/{pid}/fd/{int(fields[1], 16)}")
        except (OSError, ValueError):
            continue
        if target.endswith(_DB_NAMES):
            return _WRITE_CALLS[int(fields[0])]
    return ""


class Watcher:
    """Reads state.db (read-only) and /proc to tell which phase the gateway is in."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._db: sqlite3.Connection | None = None

    def _query(self) -> tuple[Counter[str], int]:
        if self._db is None:
            path = self.site.storage / "state.db"
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        rounds = Counter(
            {
                state: n
                for state, n in self._db.execute(
                    "SELECT state, COUNT(*) FROM rounds GROUP BY state"
                )
            }
        )
        instances = int(self._db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
        return rounds, instances

    def snapshot(self, pid: int) -> Snapshot:
        try:
            rounds, instances = self._query()
        except sqlite3.Error:
            rounds, instances = Counter(), -1
        return Snapshot(rounds, instances, _db_write(pid))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def classify(now: Snapshot, before: Snapshot | None, sending: bool) -> str:
    if now.db_write:
        return "db-write"
    if now.rounds.get("forwarding"):
        return "forward"
    if now.rounds.get("processing"):
        return "deid"
    if sending and before is not None and now.instances != before.instances:
        return "receive"
    return "idle"


def kill_all(gateway: Gateway, main_only: bool = False) -> int:
    """SIGKILL the gateway and, at once, every process it started (its workers); or
    (`main_only`) the main process alone, leaving the workers to notice. Returns how many
    workers outlived it by more than ORPHAN_SECONDS (then killed here)."""
    children = child_pids(gateway.pid)
    with suppress(ProcessLookupError):
        os.kill(gateway.pid, signal.SIGKILL)
    if not main_only:
        for pid in children:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    gateway.process.wait(timeout=10)
    if not main_only:
        return 0
    deadline = time.monotonic() + ORPHAN_SECONDS
    while time.monotonic() < deadline and any(_running_gateway(pid) for pid in children):
        time.sleep(0.05)
    survivors = [pid for pid in children if _running_gateway(pid)]
    for pid in survivors:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(survivors)


def _running_gateway(pid: int) -> bool:
    """Still running (not a zombie) and still a gateway process (not a reused PID)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" and b"dicom-gateway" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False


def aim_and_kill(
    gateway: Gateway,
    watcher: Watcher,
    sending: threading.Event,
    target: str,
    rng: random.Random,
    main_only: bool = False,
) -> tuple[str, int]:
    """Wait (bounded) for `target`, kill inside it, return the phase observed at the kill."""
    before: Snapshot | None = None
    deadline = time.monotonic() + AIM_SECONDS
    delay = rng.uniform(0.0, 0.03)
    if target == "db-write":
        # /proc alone, as fast as it can be read: a commit's write and sync take about 1 ms,
        # so the kill follows the sighting at once (it may land just after the call returns).
        while time.monotonic() < deadline and gateway.alive():
            if _db_write(gateway.pid):
                return "db-write", kill_all(gateway, main_only)
            time.sleep(0.0001)
    while target != "db-write" and time.monotonic() < deadline and gateway.alive():
        now = watcher.snapshot(gateway.pid)
        if classify(now, before, sending.is_set()) == target:
            time.sleep(delay)
            break
        before = now
        time.sleep(0.002)
    last = watcher.snapshot(gateway.pid)
    observed = classify(last, before, sending.is_set())
    return observed, kill_all(gateway, main_only)
