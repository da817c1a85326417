"""Bulk `anonymize` on Dask workers: instances/s for 1, 2 and 4 workers, beside the local pool.

Sizing a back-catalogue run needs the scaling curve: this writes a synthetic CT folder (not
timed) and runs the offline mode over it, each run into a new output folder:

  local     `anonymize --workers N` (the process pool), N = 1 and 2
  dask      `anonymize --cluster local:N` (a LocalCluster of N worker processes, one thread
            each), N = 1, 2 and 4; the cluster's start and stop are timed apart

A run's time is `anonymize_folder`'s (the walk, the workers' checks and site loading, every
file, the summary), the same figure the summary line prints as `seconds`; each row is the
best of `--repeat` runs, since other work on the machine skews any one. It prints figures
and never judges them; on a machine with C cores the curve flattens past C workers.

    .venv/bin/python bench/cluster.py [--instances 400] [--rows 512] [--dask 1,2,4]
        [--local 1,2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from service_harness import create_secret

from gateway.offline import Summary, anonymize_folder
from gateway.offline_cluster import ClusterRunner, SiteKey, connect
from gateway.pipeline.files import EngineSettings
from gateway.site import load_site
from gateway.tools.synthetic import make_ct_study

SERIES = 4  # the folder holds this many studies (one series each) of equal size


def _site(root: Path) -> tuple[Path, EngineSettings]:
    secret = create_secret(root / "keys")
    config = root / "gateway.yaml"
    config.write_text(
        f"site_id: BENCH-SITE\nstorage_dir: var\nkeys:\n  secret: {secret}\n", encoding="utf-8"
    )
    return config, load_site(config).engine_settings()


def _check(summary: Summary, instances: int) -> None:
    if summary.written != instances:
        print(f"note: {summary.written} of {instances} written ({summary.line()})")


def _local(folder: Path, out: Path, settings: EngineSettings, workers: int) -> Summary:
    summary = anonymize_folder(folder, out, settings, workers)
    shutil.rmtree(out)  # 400 slices are 200 MiB: one output at a time
    return summary


def _dask(
    folder: Path, out: Path, config: Path, settings: EngineSettings, workers: int
) -> tuple[Summary, float]:
    """The run's summary, and the seconds the cluster took to start and stop."""
    started = time.perf_counter()
    with connect(f"local:{workers}") as client, open(os.devnull, "w") as quiet:
        ready = time.perf_counter() - started
        key = SiteKey.for_site(config, None, settings)
        runner = ClusterRunner(client, key, folder, progress=quiet)
        summary = anonymize_folder(folder, out, settings, runner=runner)
        closing = time.perf_counter()
    shutil.rmtree(out)
    return summary, ready + time.perf_counter() - closing


def _counts(text: str) -> list[int]:
    numbers = [int(part) for part in text.split(",") if part.strip()]
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of worker counts, each >= 1")
    return numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400, help="CT slices (default 400)")
    parser.add_argument("--rows", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--dask", type=_counts, default=[1, 2, 4], help="default 1,2,4")
    parser.add_argument("--local", type=_counts, default=[1, 2], help="default 1,2")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many (default 2)")
    args = parser.parse_args(argv)
    if args.instances < SERIES or args.rows < 8 or args.repeat < 1:
        parser.error(f"--instances must be at least {SERIES}, --rows 8, --repeat 1")
    logging.basicConfig(level=logging.WARNING)
    import distributed  # noqa: F401  (sets its loggers' levels when imported)

    logging.getLogger("distributed").setLevel(logging.WARNING)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"load average {os.getloadavg()[0]:.1f} at the start"
    )
    rows: list[tuple[str, int, float, float, int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as temporary:
        root = Path(temporary)
        folder = root / "in"
        started = time.perf_counter()
        each = args.instances // SERIES
        for number in range(SERIES):
            count = each if number < SERIES - 1 else args.instances - each * (SERIES - 1)
            make_ct_study(folder / f"study{number}", instances=count, rows=args.rows,
                          columns=args.rows, seed=number)  # fmt: skip
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
        print(
            f"folder: {args.instances} CT instances {args.rows}x{args.rows} 16-bit in "
            f"{SERIES} studies, {size:.0f} MiB, made in {time.perf_counter() - started:.1f} s "
            "(not timed)"
        )
        config, settings = _site(root / "site")
        for workers in args.local:
            runs = [
                _local(folder, root / f"out-local-{workers}-{n}", settings, workers)
                for n in range(args.repeat)
            ]
            best = min(runs, key=lambda summary: summary.seconds)
            _check(best, args.instances)
            rows.append(("local --workers", workers, best.seconds, 0.0, best.written))
        for workers in args.dask:
            found = [
                _dask(folder, root / f"out-dask-{workers}-{n}", config, settings, workers)
                for n in range(args.repeat)
            ]
            best, overhead = min(found, key=lambda run: run[0].seconds)
            _check(best, args.instances)
            rows.append(("--cluster local:N", workers, best.seconds, overhead, best.written))
    print()
    print(
        f"{'mode':<18} {'N':>3} {'seconds':>8} {'inst/s':>8} {'x N=1':>6} {'cluster up+down s':>18}"
    )
    first: dict[str, float] = {}
    for mode, workers, seconds, overhead, written in rows:
        rate = written / seconds if seconds else float("inf")
        first.setdefault(mode, rate)
        extra = f"{overhead:>18.1f}" if mode.startswith("--cluster") else f"{'':>18}"
        print(
            f"{mode:<18} {workers:>3} {seconds:>8.2f} {rate:>8.1f} "
            f"{rate / first[mode]:>6.2f} {extra}"
        )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
