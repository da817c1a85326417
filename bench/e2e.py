"""The running gateway against plain DCMTK: how much slower is "through the gateway"?

A PACS administrator sizing a gateway wants two figures: how fast a modality can push
into it (receive rate) and how long until the last instance of a study is at the research
archive (end to end). This compares both with DCMTK `storescu` -> `storescp` directly, on
the same machine and files, for two shapes of traffic:

  ct      one CT study of large slices (default 500 x 512x512 16-bit): bandwidth-bound
  small   one study of many tiny instances (default 2,000 x 16x16): per-instance overhead

For each: (a) storescu -> storescp (passthrough), (b) storescu -> `dicom-gateway run` ->
storescp: receive rate (first send to storescu exit), end-to-end time (first send to the
last file written by the destination, minus the quiet period that declares the study
complete), and the gateway's peak RSS (service plus worker processes, /proc every 100 ms).

It prints figures and never judges them; everything runs on 127.0.0.1.

    .venv/bin/python bench/e2e.py [--quick] [--ct 500] [--ct-size 512] [--small 2000]
                                  [--small-size 16] [--workers 2] [--quiet 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from service_harness import (
    STORESCP,
    STORESCU,
    child_pids,
    create_secret,
    dcmtk_env,
    free_port,
    make_site,
    rss_bytes,
    start_gateway,
    storescp_on,
    storescu_command,
    wait_until,
)

from gateway.synthetic import make_ct_study, random_patient

MIB = 2**20


@dataclass(frozen=True)
class Workload:
    name: str
    files: list[Path]

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def mib(self) -> float:
        return sum(p.stat().st_size for p in self.files) / MIB


@dataclass(frozen=True)
class Passthrough:
    seconds: float


@dataclass(frozen=True)
class ThroughGateway:
    receive_seconds: float
    end_to_end_seconds: float  # quiet period already subtracted
    peak_rss: int
    quarantined: float


# --- workloads --------------------------------------------------------------------------------


def make_workloads(root: Path, args: argparse.Namespace) -> list[Workload]:
    patient = random_patient(4242)
    loads = []
    for name, count, size, seed in (
        ("ct", args.ct, args.ct_size, 1),
        ("small", args.small, args.small_size, 2),
    ):
        if count < 1:
            continue
        started = time.perf_counter()
        files = make_ct_study(
            root / name, instances=count, rows=size, columns=size, patient=patient, seed=seed
        )
        load = Workload(f"{name} {count} x {size}x{size}", files)
        print(
            f"generated {load.name}: {load.mib:.1f} MiB in {time.perf_counter() - started:.1f} s"
            " (not timed)"
        )
        loads.append(load)
    return loads


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


def run_storescu(port: int, load: Workload, called_ae: str) -> float:
    """Seconds from launching storescu to its exit (one association, all files)."""
    command = storescu_command(port, load.files, called_ae=called_ae)
    command.remove("-v")  # per-file logging would be part of the timing
    started = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=1800, env=dcmtk_env(), check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"storescu failed: {result.stderr[-2000:]}")
    return seconds


# --- (a) DCMTK passthrough --------------------------------------------------------------------


def passthrough(root: Path, load: Workload) -> Passthrough:
    out = root / "passthrough"
    port = free_port()
    with storescp_on(port, out, ae_title="ARCHIVE"):
        seconds = run_storescu(port, load, called_ae="ARCHIVE")
    got = len(files_in(out))
    if got != load.count:
        raise RuntimeError(f"storescp wrote {got} of {load.count} files")
    return Passthrough(seconds)


# --- (b) through the gateway ------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Peak resident memory of a process and its descendants, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_bytes([self.pid, *child_pids(self.pid)]))
            self._done.wait(0.1)

    def stop(self) -> int:
        self._done.set()
        self.join(timeout=5)
        return self.peak


def through_gateway(
    root: Path, secret: Path, load: Workload, args: argparse.Namespace
) -> ThroughGateway:
    out = root / "archive"
    port = free_port()
    with storescp_on(port, out, ae_title="ARCHIVE"):
        site = make_site(
            root / "site",
            secret,
            destination={"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": port},
            quiet_seconds=args.quiet,
            workers=args.workers,
        )
        gateway = start_gateway(site)
        sampler = RssSampler(gateway.pid)
        sampler.start()
        try:
            first_sent = time.time()
            receive_seconds = run_storescu(site.listen_port, load, called_ae="DEID_GW")
            wait_until(
                lambda: (
                    gateway.metric("instances_received") >= load.count
                    and gateway.metric("queue_depth") == 0
                ),
                timeout=args.timeout,
                what="every instance forwarded",
                interval=0.2,
            )
            quarantined = gateway.metric("instances_quarantined")
        finally:
            peak = sampler.stop()
            gateway.stop()
    written = files_in(out)
    if len(written) + quarantined != load.count:
        raise RuntimeError(f"destination has {len(written)} of {load.count} files")
    last_written = max(p.stat().st_mtime for p in written)
    return ThroughGateway(
        receive_seconds=receive_seconds,
        end_to_end_seconds=last_written - first_sent - args.quiet,
        peak_rss=peak,
        quarantined=quarantined,
    )


# --- report -----------------------------------------------------------------------------------


def report(
    rows: list[tuple[Workload, Passthrough, ThroughGateway]], args: argparse.Namespace
) -> None:
    print()
    header = (
        f"{'workload':<22} {'MiB':>7} | {'DCMTK s':>8} {'inst/s':>8} {'MB/s':>7} | "
        f"{'GW recv s':>9} {'inst/s':>8} {'MB/s':>7} {'x DCMTK':>8} | "
        f"{'GW e2e s':>8} {'inst/s':>8} {'x DCMTK':>8} | {'peak RSS':>9}"
    )
    print(header)
    print("-" * len(header))
    for load, direct, gw in rows:
        mb = load.mib * MIB / 1e6
        e2e = max(gw.end_to_end_seconds, 1e-9)
        print(
            f"{load.name:<22} {load.mib:>7.1f} | "
            f"{direct.seconds:>8.2f} {load.count / direct.seconds:>8.0f} "
            f"{mb / direct.seconds:>7.1f} | "
            f"{gw.receive_seconds:>9.2f} {load.count / gw.receive_seconds:>8.0f} "
            f"{mb / gw.receive_seconds:>7.1f} {gw.receive_seconds / direct.seconds:>7.1f}x | "
            f"{e2e:>8.2f} {load.count / e2e:>8.0f} {e2e / direct.seconds:>7.1f}x | "
            f"{gw.peak_rss / MIB:>6.0f} MiB"
            + (f"  ({gw.quarantined:.0f} quarantined)" if gw.quarantined else "")
        )
    print()
    print(
        f"DCMTK: storescu -> storescp, one association, time from launch to exit. "
        f"GW recv: storescu -> gateway (ack = durable in the spool, fsync per instance). "
        f"GW e2e: first send -> last file written by the destination storescp, minus the "
        f"{args.quiet:g} s quiet period. 'x DCMTK': time relative to the passthrough. "
        f"Peak RSS: service + {args.workers} workers."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 CT + 200 small")
    parser.add_argument("--ct", type=int, default=None, help="CT instances (default 500)")
    parser.add_argument("--ct-size", type=int, default=512, help="CT rows=columns (512)")
    parser.add_argument("--small", type=int, default=None, help="small instances (2000)")
    parser.add_argument("--small-size", type=int, default=16, help="small rows=columns (16)")
    parser.add_argument("--workers", type=int, default=2, help="gateway workers (2)")
    parser.add_argument("--quiet", type=float, default=1.0, help="quiet period, s (1)")
    parser.add_argument("--timeout", type=float, default=900.0, help="max wait per run, s")
    args = parser.parse_args(argv)
    args.ct = args.ct if args.ct is not None else (50 if args.quick else 500)
    args.small = args.small if args.small is not None else (200 if args.quick else 2000)
    if STORESCU is None or STORESCP is None:
        parser.error("DCMTK storescu and storescp are needed (apt-get install dcmtk)")
    if args.workers < 1 or args.quiet <= 0:
        parser.error("--workers must be at least 1 and --quiet positive")

    version = subprocess.run([STORESCP, "--version"], capture_output=True, text=True).stdout
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"{version.splitlines()[0] if version else 'dcmtk ?'}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder:
        root = Path(folder)
        secret = create_secret(root / "keys")
        rows = []
        for index, load in enumerate(make_workloads(root / "in", args)):
            run_root = root / f"run{index}"
            direct = passthrough(run_root / "a", load)
            print(f"{load.name}: DCMTK passthrough {direct.seconds:.2f} s")
            gw = through_gateway(run_root / "b", secret, load, args)
            print(
                f"{load.name}: gateway receive {gw.receive_seconds:.2f} s, "
                f"end to end {gw.end_to_end_seconds:.2f} s"
            )
            rows.append((load, direct, gw))
            shutil.rmtree(run_root, ignore_errors=True)  # keep the disk footprint to one run
        report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
