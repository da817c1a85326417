"""How many instances per second the de-identification engine handles, on synthetic CT.

Sizing a gateway needs the engine's own throughput, apart from the network and the spool:
this generates a synthetic CT study (not timed) and times three things:

  single    one process: read the file with pydicom, `process_instance` (de-identify and
            the verify gate), encode with `dcmwrite` into memory;
  workers   the same in a pool of N processes, each building its engine once;
  engine    `process_instance` alone (no read, no write), one process.

It prints figures and never judges them: timings depend on the machine.

    .venv/bin/python bench/engine.py [--instances 500] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.instance import Clean, configure_pydicom, process_instance
from gateway.tools.synthetic import make_ct_study

# A fixed, obviously fake secret: the figures must not depend on key material.
BENCH_SECRET = bytes(range(32))
BENCH_SITE = "BENCH-SITE"
ROWS = COLUMNS = 512


@dataclass
class Tally:
    """Outcomes of a batch; a benchmark that quarantines everything measures the wrong path."""

    clean: int = 0
    quarantined: int = 0

    def __iadd__(self, other: Tally) -> Tally:
        self.clean += other.clean
        self.quarantined += other.quarantined
        return self


def build_engine() -> Engine:
    configure_pydicom()
    return default_profile().build_engine(Pseudonyms(BENCH_SECRET, BENCH_SITE))


def round_trip(path: str, engine: Engine) -> bool:
    """Read, de-identify and verify, encode: what the gateway does per instance."""
    ds = dcmread(path)
    outcome = process_instance(ds, engine)
    if not isinstance(outcome, Clean):
        return False
    buffer = BytesIO()
    dcmwrite(buffer, outcome.dataset, enforce_file_format=True)
    return True


def round_trip_all(paths: list[str], engine: Engine) -> Tally:
    tally = Tally()
    for path in paths:
        if round_trip(path, engine):
            tally.clean += 1
        else:
            tally.quarantined += 1
    return tally


# --- worker processes ----------------------------------------------------------------------

_worker_engine: Engine | None = None


def _init_worker() -> None:
    global _worker_engine
    _worker_engine = build_engine()


def _warm_up(seconds: float) -> int:
    """Holds a worker briefly so that every worker gets one and starts before timing."""
    time.sleep(seconds)
    return os.getpid()


def _worker_chunk(paths: list[str]) -> Tally:
    assert _worker_engine is not None
    return round_trip_all(paths, _worker_engine)


def chunks(items: list[str], count: int) -> list[list[str]]:
    """`count` contiguous, nearly equal slices (a study's files stay together, as in a pool)."""
    size, extra = divmod(len(items), count)
    out, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        if end > start:
            out.append(items[start:end])
        start = end
    return out


# --- the three measurements ------------------------------------------------------------------


def time_single(paths: list[str]) -> tuple[float, Tally]:
    engine = build_engine()
    round_trip(paths[0], engine)  # first-call costs (imports, caches) are not throughput
    started = time.perf_counter()
    tally = round_trip_all(paths, engine)
    return time.perf_counter() - started, tally


def time_workers(paths: list[str], workers: int) -> tuple[float, Tally]:
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        pids = set(pool.map(_warm_up, [0.3] * workers))
        if len(pids) < workers:
            print(f"note: only {len(pids)} of {workers} workers were warm before timing")
        started = time.perf_counter()
        tally = Tally()
        for part in pool.map(_worker_chunk, chunks(paths, workers * 4)):
            tally += part
        return time.perf_counter() - started, tally


def time_process(engine: Engine, readers: Iterable[Callable[[], Dataset]]) -> tuple[float, Tally]:
    """`process_instance` alone on each dataset a reader gives; reading is not timed."""
    spent = 0.0
    tally = Tally()
    for read in readers:
        ds = read()
        started = time.perf_counter()
        outcome = process_instance(ds, engine)
        spent += time.perf_counter() - started
        if isinstance(outcome, Clean):
            tally.clean += 1
        else:
            tally.quarantined += 1
    return spent, tally


def time_engine_only(paths: list[str]) -> tuple[float, Tally]:
    """`process_instance` alone: each file is read untimed, then de-identified and verified."""
    engine = build_engine()
    process_instance(dcmread(paths[0]), engine)
    return time_process(engine, (partial(dcmread, path) for path in paths))


# --- report ------------------------------------------------------------------------------------


def peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500, help="CT slices (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)
    if args.instances < 1 or args.workers < 1:
        parser.error("--instances and --workers must be at least 1")

    print(
        f"python {platform.python_version()}, pydicom {pydicom.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as folder:
        started = time.perf_counter()
        files = make_ct_study(Path(folder), instances=args.instances, rows=ROWS, columns=COLUMNS)
        paths = [str(p) for p in files]
        size_mib = sum(p.stat().st_size for p in files) / 2**20
        print(
            f"study: {args.instances} CT instances {ROWS}x{COLUMNS} 16-bit, {size_mib:.0f} MiB, "
            f"generated in {time.perf_counter() - started:.1f} s (not timed)"
        )
        runs = [
            ("read+deid+verify+write", 1, *time_single(paths)),
            (f"same, {args.workers} workers", args.workers, *time_workers(paths, args.workers)),
            ("deid+verify only", 1, *time_engine_only(paths)),
        ]

    print()
    print(f"{'measurement':<26} {'inst/s':>9} {'ms/inst':>9} {'inst/s/core':>12} {'outcome':>20}")
    for name, cores, seconds, tally in runs:
        done = tally.clean + tally.quarantined
        rate = done / seconds if seconds else float("inf")
        per = 1000.0 * seconds / max(1, done)
        outcome = f"{tally.clean} clean"
        if tally.quarantined:
            outcome += f", {tally.quarantined} quar."
        print(f"{name:<26} {rate:>9.1f} {per:>9.2f} {rate / cores:>12.1f} {outcome:>20}")
    print()
    print(
        f"peak RSS: main process {peak_rss_mib(resource.RUSAGE_SELF):.0f} MiB, "
        f"largest worker {peak_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
