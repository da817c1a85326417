"""`make bench`: every speed figure of the gateway in one table, from one run on this machine.

Rates are only comparable when taken on the same machine at the same time, so this runs the
yardstick (DCMTK storescu -> storescp) beside the gateway on the same files and prints each
rate with its ratio to that passthrough:

  DCMTK passthrough       storescu -> storescp, one association, best of 2 (bench/e2e.py)
  DCMTK fsyncing          storescu -> storescp fsyncing each file before it answers (an
                          LD_PRELOAD shim, bench/dcmtk_fsync.py): what the promise
                          "acknowledged = on disk" costs native code on this disk
  spool write only        `Spool.store` in a loop (sealed slot, one fsync, state.db row):
                          the floor under the receive rate that "acknowledged = on disk" sets
  pynetdicom floor        storescu -> a pynetdicom AE whose C-STORE handler does nothing: what
                          the library costs any Python SCP before the gateway does anything
  gateway receive         storescu -> gateway: every instance acknowledged = fsynced in the spool
  gateway end to end      storescu -> gateway -> DCMTK storescp (an AE destination), and
                          -> a folder destination: first instance sent to last one written,
                          minus the quiet period that declares the study complete if the
                          last one waited for it (streamed instances do not)
  engine                  de-identify + verify gate only, and read + that + encode, 1 process
                          = per core (bench/engine.py)
  OCR                     burned-in text detection, frames/s in 1 process (bench/pixels.py)
  peak RSS                the service process, its largest worker, and their sum
  streaming               time to the first and last instance forwarded, one sender and 4
                          concurrent ones, mixed study sizes (bench/streaming.py)

for two workloads: realistic CT (512x512 16-bit slices) and tiny instances (per-instance
overhead). It prints figures and never judges them beyond naming the issue's targets; the
machine and its load average are printed with them, since other work skews every figure.

    .venv/bin/python bench/run.py [--ct 300] [--tiny 2000] [--workers 2] [--quiet 0.5]
        [--streaming-quiet 1] [--no-streaming]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e  # bench/ is not a package
import engine
import streaming
from dcmtk_fsync import dcmtk_fsync_seconds
from pynetdicom_floor import pynetdicom_floor
from service_harness import create_secret  # on sys.path since e2e

from gateway.keys.keyed_hash import KeyedHash
from gateway.stores.spool import Spool

MIB = 2**20
TARGET_RECEIVE = 1 / 2  # issue 8: receive >= 1/2 of DCMTK's passthrough
TARGET_END_TO_END = 1 / 3  # end to end >= 1/3
TARGET_RSS = 500e6  # peak RSS < 500 MB


@dataclass
class Column:
    """Every figure of one workload."""

    load: e2e.Workload
    dcmtk: e2e.Passthrough
    gateway: list[e2e.GatewayRun] = field(default_factory=list)
    spool_only: float = 0.0  # instances/s: Spool.store alone, the durable-write floor
    pynetdicom_only: float = 0.0  # instances/s: a do-nothing pynetdicom SCP, the library's floor
    dcmtk_fsync: float | None = None  # instances/s: storescp fsyncing each file (None: no cc)
    engine_only: float = 0.0  # instances/s, 1 process
    engine_round_trip: float = 0.0
    ocr: dict[str, float] = field(default_factory=dict)  # frame kind -> frames/s, 1 process


# --- measuring ---------------------------------------------------------------------------------


def engine_rates(load: e2e.Workload, sample: int) -> tuple[float, float]:
    """(de-identify + verify only, read + de-identify + verify + encode), instances/s."""
    paths = [str(p) for p in load.files[: max(1, sample)]]
    only_seconds, only = engine.time_engine_only(paths)
    trip_seconds, trip = engine.time_single(paths)
    if only.quarantined or trip.quarantined:
        print(f"note: the engine quarantined {only.quarantined} of {len(paths)} instances")
    return len(paths) / max(only_seconds, 1e-9), len(paths) / max(trip_seconds, 1e-9)


def spool_rate(load: e2e.Workload, sample: int, folder: Path) -> float:
    """Instances/s of `Spool.store` alone (a sealed slot and one fsync, the move into its
    round and the state.db row): the floor under the receive rate that the promise
    "acknowledged = on disk" sets."""
    blobs = [p.read_bytes() for p in load.files[: max(1, sample)]]
    spool = Spool(folder / "spool-only", KeyedHash(os.urandom(32)))
    try:
        e2e.settle_disk()
        started = time.perf_counter()
        for index, blob in enumerate(blobs):
            spool.store(
                blob,
                sop_instance_uid=f"2.25.{index + 1}",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                study_uid="2.25.999",
                transfer_syntax="1.2.840.10008.1.2.1",
                calling_ae="BENCH",
            )
        seconds = time.perf_counter() - started
    finally:
        spool.close()
    return len(blobs) / max(seconds, 1e-9)


def ocr_rates(frames: int, kinds: list[str]) -> dict[str, float]:
    """Frames/s of text detection + box choice per frame kind, or {} without Tesseract."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # as the worker pool runs Tesseract
    import pixels  # Pillow and the OCR stage, only when asked for

    missing = pixels.is_available()
    if missing is not None or frames < 1:
        print(f"OCR not measured: {missing or 'no frames asked for'}")
        return {}
    makers = {
        "ct": ("CT-like 512x512", pixels.ct_frame),
        "us": ("US 640x480", pixels.ultrasound_frame),
    }
    rates = {}
    for kind in kinds:
        label, make = makers[kind]
        rates[label], _ = pixels.frames_per_second([make(i) for i in range(frames)], 1)
    return rates


def measure(args: argparse.Namespace, root: Path) -> list[Column]:
    secret = create_secret(root / "keys")
    columns = []
    shapes = (("ct", args.ct, args.ct_size, 1), ("tiny", args.tiny, args.tiny_size, 2))
    for name, count, size, seed in shapes:
        if count < 1:
            continue
        folder = root / name
        started = time.perf_counter()
        label = f"{name} {count} x {size}x{size}"
        load = e2e.make_workload(folder / "in", label, count, size, seed)
        print(
            f"{load.name}: generated {load.size_bytes / MIB:.1f} MiB in "
            f"{time.perf_counter() - started:.1f} s (not timed)",
            flush=True,
        )
        # The yardstick every ratio divides by: the better of two runs, so that a moment of
        # other load on the machine does not flatter the gateway.
        tries = [e2e.passthrough(folder / f"dcmtk{i}", load) for i in range(2)]
        column = Column(load, min(tries, key=lambda run: run.seconds))
        print(
            f"{load.name}: DCMTK passthrough " + ", ".join(f"{run.seconds:.2f} s" for run in tries),
            flush=True,
        )
        synced = dcmtk_fsync_seconds(folder, load)
        column.dcmtk_fsync = load.count / synced if synced else None
        column.pynetdicom_only = load.count / pynetdicom_floor(load)
        for destination in ("ae", "folder") if args.folder else ("ae",):
            run = e2e.through_gateway(
                folder / destination,
                secret,
                load,
                destination=destination,
                quiet=args.quiet,
                workers=args.workers,
                timeout=args.timeout,
            )
            column.gateway.append(run)
            print(
                f"{load.name}: gateway -> {run.destination}: receive {run.receive_seconds:.2f} s, "
                f"end to end {run.end_to_end_seconds:.2f} s (forwarding "
                f"{run.forward_seconds:.2f} s of it)",
                flush=True,
            )
        column.spool_only = spool_rate(load, args.engine_sample, folder)
        column.engine_only, column.engine_round_trip = engine_rates(load, args.engine_sample)
        columns.append(column)
        shutil.rmtree(folder, ignore_errors=True)  # keep the disk footprint to one workload
    if columns:
        columns[0].ocr = ocr_rates(args.ocr_frames, args.ocr_kinds.split(","))
    return columns


# --- the table ---------------------------------------------------------------------------------

_LABEL = 46
_CELL = 28


def _rate_cell(rate: float, per_instance_bytes: float | None, dcmtk_rate: float) -> str:
    mb = f"{rate * per_instance_bytes / 1e6:7.1f}" if per_instance_bytes is not None else " " * 7
    shown = f"{rate:8.0f}" if rate >= 10 else f"{rate:8.2f}"
    ratio = rate / dcmtk_rate
    return f"{shown} {mb} {ratio:7.2f}x" if ratio >= 0.1 else f"{shown} {mb} {ratio:7.3f}x"


def _row(label: str, cells: list[str]) -> str:
    return f"{label:<{_LABEL}}|" + "|".join(f" {cell:<{_CELL - 1}}" for cell in cells)


def table(columns: list[Column], args: argparse.Namespace) -> list[str]:
    heads = [f"{c.load.name} ({c.load.size_bytes / MIB:.0f} MiB)" for c in columns]
    lines = [
        _row("", heads),
        _row("measurement", [f"{'inst/s':>8} {'MB/s':>7} {'vs DCMTK':>8}" for _ in columns]),
        "-" * (_LABEL + _CELL * len(columns) + len(columns)),
    ]
    dcmtk = [c.load.count / c.dcmtk.seconds for c in columns]
    sizes = [c.load.size_bytes / c.load.count for c in columns]

    def rates(label: str, values: list[float | None], with_mb: bool = True) -> None:
        cells = [
            "-" if v is None else _rate_cell(v, size if with_mb else None, base)
            for v, size, base in zip(values, sizes, dcmtk, strict=True)
        ]
        lines.append(_row(label, cells))

    rates("DCMTK storescu -> storescp (passthrough)", dcmtk)
    rates("DCMTK storescp fsyncing each file", [c.dcmtk_fsync for c in columns])
    rates("spool durable write only (receive floor)", [c.spool_only for c in columns])
    rates("pynetdicom SCP doing nothing (its floor)", [c.pynetdicom_only for c in columns])
    rates(
        "gateway receive (ack = fsynced in spool)",
        [c.load.count / c.gateway[0].receive_seconds for c in columns],
    )
    for index, destination in enumerate(("DCMTK storescp (AE)", "folder")):
        if all(len(c.gateway) > index for c in columns):
            rates(
                f"gateway end to end -> {destination}",
                [c.load.count / max(c.gateway[index].end_to_end_seconds, 1e-9) for c in columns],
            )
    rates("engine: de-identify + verify, per core", [c.engine_only for c in columns])
    rates("engine: read+deid+verify+encode, per core", [c.engine_round_trip for c in columns])
    for kind in columns[0].ocr:
        rates(
            f"OCR frames/s per core ({kind})",
            [c.ocr.get(kind) for c in columns],
            with_mb=False,
        )
    lines.append(lines[2])

    def plain(label: str, values: list[str]) -> None:
        lines.append(_row(label, [f"{v:>8}" for v in values]))

    plain(
        "gateway CPU per received instance, ms",
        [f"{1000 * c.gateway[0].receive_cpu_seconds / c.load.count:.2f}" for c in columns],
    )
    for index, destination in enumerate(("storescp", "folder")):
        if all(len(c.gateway) > index for c in columns):
            plain(
                f"end to end -> {destination}: s (forwarding s)",
                [
                    f"{c.gateway[index].end_to_end_seconds:.2f} "
                    f"({c.gateway[index].forward_seconds:.2f})"
                    for c in columns
                ],
            )
    peaks = [_peaks(c) for c in columns]
    plain("peak RSS, service process, MiB", [f"{p.main / MIB:.0f}" for p in peaks])
    plain(
        "peak RSS, largest worker process, MiB",
        [f"{p.largest_worker / MIB:.0f}" for p in peaks],
    )
    plain("peak RSS, service + workers summed, MiB", [f"{p.summed / MIB:.0f}" for p in peaks])
    return lines


def _peaks(column: Column) -> e2e.RssPeaks:
    """The largest figures over the column's gateway runs."""
    merged = e2e.RssPeaks()
    for run in column.gateway:
        merged.main = max(merged.main, run.rss.main)
        merged.summed = max(merged.summed, run.rss.summed)
        merged.workers.update(run.rss.workers)
    return merged


def targets(columns: list[Column]) -> list[str]:
    """The issue's targets, next to what this run measured (a reading aid, not a test)."""
    out = []
    for c in columns:
        base = c.load.count / c.dcmtk.seconds
        receive = c.load.count / c.gateway[0].receive_seconds / base
        e2e_ratio = min(c.load.count / max(r.end_to_end_seconds, 1e-9) for r in c.gateway) / base
        summed = _peaks(c).summed
        out.append(
            f"{c.load.name}: receive {receive:.2f}x (target >= {TARGET_RECEIVE:.2f}x: "
            f"{_met(receive >= TARGET_RECEIVE)}), slowest end to end {e2e_ratio:.2f}x "
            f"(>= {TARGET_END_TO_END:.2f}x: {_met(e2e_ratio >= TARGET_END_TO_END)}), "
            f"summed peak RSS {summed / MIB:.0f} MiB "
            f"(< {TARGET_RSS / MIB:.0f} MiB = 500 MB: {_met(summed < TARGET_RSS)})"
            + (
                f"; DCMTK's storescp fsyncing each file: {c.dcmtk_fsync / base:.2f}x"
                if c.dcmtk_fsync
                else ""
            )
        )
    return out


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


# --- machine -----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def dcmtk_version() -> str:
    assert e2e.STORESCP is not None
    found = subprocess.run([e2e.STORESCP, "--version"], capture_output=True, text=True, timeout=10)
    first = found.stdout.splitlines()[0] if found.stdout else ""
    return first.replace("$dcmtk:", "").strip(" $") or "DCMTK ?"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct", type=int, default=300, help="CT instances (300)")
    parser.add_argument("--ct-size", type=int, default=512, help="CT rows = columns (512)")
    parser.add_argument("--tiny", type=int, default=2000, help="tiny instances (2000)")
    parser.add_argument("--tiny-size", type=int, default=16, help="tiny rows = columns (16)")
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes (2)")
    parser.add_argument("--quiet", type=float, default=0.5, help="study quiet period, s (0.5)")
    parser.add_argument(
        "--no-folder", dest="folder", action="store_false", help="skip the folder-destination run"
    )
    parser.add_argument(
        "--engine-sample", type=int, default=100, help="instances the engine figures use (100)"
    )
    parser.add_argument("--ocr-frames", type=int, default=2, help="frames per OCR kind (2)")
    parser.add_argument("--ocr-kinds", default="ct,us", help="ct and/or us (ct,us)")
    parser.add_argument(
        "--no-streaming", dest="streaming", action="store_false", help="skip bench/streaming.py"
    )
    parser.add_argument(
        "--streaming-quiet", type=float, default=1.0, help="streaming quiet period, s (1)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="max wait per run, s")
    args = parser.parse_args(argv)
    if e2e.STORESCU is None or e2e.STORESCP is None:
        parser.error("DCMTK storescu and storescp are needed (apt-get install dcmtk)")
    if (
        args.workers < 1
        or min(args.quiet, args.streaming_quiet) <= 0
        or min(args.ct, args.tiny) < 0
    ):
        parser.error("--workers must be at least 1, --quiet positive, counts not negative")
    if not set(args.ocr_kinds.split(",")) <= {"ct", "us"}:
        parser.error("--ocr-kinds takes ct, us or ct,us")

    began = time.perf_counter()
    machine = (
        f"machine: {os.cpu_count()} cores, {cpu_model()}, {platform.machine()}; "
        f"Python {platform.python_version()}; {dcmtk_version()}; load average {load_average()}"
    )
    print(machine, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        columns = measure(args, Path(folder))
        plan = streaming.Plan(
            ct=args.ct,
            tiny=args.tiny,
            ct_size=args.ct_size,
            tiny_size=args.tiny_size,
            quiet=args.streaming_quiet,
            workers=args.workers,
            timeout=args.timeout,
        )
        wanted = args.streaming and bool(columns)
        flowing = streaming.measure(plan, Path(folder) / "streaming") if wanted else []
    if not columns:
        print("nothing measured: --ct and --tiny are both 0")
        return 0
    print()
    print(machine)
    print(
        f"workload: one study per column, synthetic CT slices (16-bit, Explicit VR Little "
        f"Endian), sent by storescu in one association; DCMTK: best of 2 runs (storescp "
        f"does not fsync); gateway: {args.workers} workers, "
        f"quiet period {args.quiet:g} s (subtracted from end to end where the last instance "
        f"waited for it), fsync per instance; "
        f"engine: first {args.engine_sample} instances; load average at the end "
        f"{load_average()}; {time.perf_counter() - began:.0f} s in all"
    )
    print()
    print("\n".join(table(columns, args)))
    print()
    print("\n".join(targets(columns)))
    if flowing:
        print()
        print("\n".join(streaming.table(flowing, plan)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
