"""The streaming figures of `make bench` (issue 16, point 5): how soon studies come out.

Since the gateway forwards instances as they clear instead of after the study closes, two
figures matter beside the receive rate: when the first instance reaches the archive, and
when the last one does. Each scenario runs first as DCMTK storescu -> storescp (the
yardstick, best of 2), then storescu -> `dicom-gateway run` -> DCMTK storescp:

  300 CT instances             one study of 512x512 16-bit slices, one sender
  2,000 tiny instances         one study of 16x16 slices, one sender (per-instance overhead)
  mixed, 4 concurrent senders  the two studies above, several small CT studies and several
                               small tiny studies (5-20 instances each), one storescu
                               process per group, all launched at once

Times run from the first storescu launch: receive = to the last storescu exit; first / last
forwarded = to the mtime of the first / last file the destination wrote (its folder is
polled), and the last one is also given minus the quiet period, which a study only needs
to close its round. storescp runs with --fork everywhere, since the gateway forwards on
several associations at once and concurrent senders need concurrent associations.
Everything is on 127.0.0.1, on free ports; every process is stopped by its PID.

    .venv/bin/python bench/streaming.py [--quick] [--quiet 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e  # bench/ is not a package; puts tests/ on sys.path
from service_harness import (
    GATEWAY_AE,
    Gateway,
    ae_destination,
    create_secret,
    dcmtk_env,
    free_port,
    make_site,
    start_gateway,
    stop_process,
    storescp_on,
    storescu_command,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

MIB = 2**20
SMALL = (5, 12, 20, 8, 15, 10)  # instances per small study of the mixed scenario
POLL_SECONDS = 0.05
FORK = ("--fork",)


@dataclass(frozen=True)
class Plan:
    """What to send and how the gateway is set up."""

    ct: int = 300
    tiny: int = 2000
    ct_size: int = 512
    tiny_size: int = 16
    small: tuple[int, ...] = SMALL
    quiet: float = 1.0
    durability: str = "fsync"  # spool.durability
    workers: int = 2
    timeout: float = 600.0


@dataclass(frozen=True)
class Scenario:
    """Studies grouped by sender: one storescu process (one association) per group."""

    name: str
    senders: list[list[Path]]
    studies: int
    size_bytes: int = 0  # read when made: the files go with the temporary folder

    @property
    def count(self) -> int:
        return sum(len(files) for files in self.senders)


@dataclass(frozen=True)
class Timing:
    """Seconds from the first storescu launch."""

    receive: float  # to the last storescu exit
    first: float  # to the first file written at the destination
    last: float  # to the last one


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    dcmtk: Timing
    gateway: Timing
    quiet: float
    rss: e2e.RssPeaks
    quarantined: int

    def rate(self, seconds: float) -> float:
        return self.scenario.count / max(seconds, 1e-9)


# --- inputs ------------------------------------------------------------------------------------


def make_study(folder: Path, count: int, size: int, seed: int) -> list[Path]:
    """One synthetic CT study of its own made-up patient (not timed)."""
    return make_ct_study(
        folder / f"study{seed}",
        instances=count,
        rows=size,
        columns=size,
        patient=random_patient(seed),
        seed=seed,
    )


def make_scenarios(plan: Plan, folder: Path) -> list[Scenario]:
    """The named scenarios; the mixed one reuses the two large studies (fresh gateway each)."""
    ct = make_study(folder, plan.ct, plan.ct_size, 1) if plan.ct > 0 else []
    tiny = make_study(folder, plan.tiny, plan.tiny_size, 2) if plan.tiny > 0 else []
    scenarios = []
    if ct:
        scenarios.append(Scenario(f"{plan.ct:,} CT instances", [ct], 1))
    if tiny:
        scenarios.append(Scenario(f"{plan.tiny:,} tiny instances", [tiny], 1))
    senders, studies = [s for s in (ct, tiny) if s], int(bool(ct)) + int(bool(tiny))
    for size, enabled, seed in ((plan.ct_size, plan.ct, 100), (plan.tiny_size, plan.tiny, 200)):
        if enabled and plan.small:
            group = [make_study(folder, n, size, seed + i) for i, n in enumerate(plan.small)]
            senders.append([p for study in group for p in study])
            studies += len(group)
    if len(senders) > 1:
        scenarios.append(Scenario(f"mixed, {len(senders)} concurrent senders", senders, studies))
    return [
        replace(s, size_bytes=sum(p.stat().st_size for files in s.senders for p in files))
        for s in scenarios
    ]


# --- sending and watching the destination ------------------------------------------------------


def send_all(
    port: int, senders: Sequence[Sequence[Path]], called_ae: str, logs: Path, timeout: float
) -> tuple[float, float]:
    """Launch one storescu per sender at once; (wall-clock launch, seconds to the last exit)."""
    logs.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    os.sync()  # not timed: the last run's unsynced files are not this run's to write
    launched = time.time()
    started = time.perf_counter()
    try:
        for index, files in enumerate(senders):
            command = storescu_command(
                port, files, calling_ae=f"MODALITY{index + 1}", called_ae=called_ae
            )
            command.remove("-v")  # per-file logging would be part of the timing
            with open(logs / f"storescu-{index + 1}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=dcmtk_env(),
                    )
                )
        deadline = time.monotonic() + timeout
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        seconds = time.perf_counter() - started
    finally:
        for process in processes:
            stop_process(process, timeout=5)  # only those still running after a failure
    for index, process in enumerate(processes):
        if process.returncode != 0:
            text = (logs / f"storescu-{index + 1}.log").read_text(errors="replace")
            raise RuntimeError(f"storescu {index + 1} failed: {text[-2000:]}")
    return launched, seconds


def count_files(folder: Path) -> int:
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if e.is_file() and not e.name.startswith("."))


def arrivals(folder: Path, launched: float) -> tuple[float, float]:
    """(first, last) file mtime at the destination, in seconds after `launched`."""
    times = [p.stat().st_mtime for p in e2e.files_in(folder)]
    if not times:
        raise RuntimeError(f"nothing arrived in {folder}")
    return min(times) - launched, max(times) - launched


def wait_for_files(
    folder: Path, expected: int, timeout: float, gateway: Gateway | None = None
) -> int:
    """Poll until `expected` files (less what the gateway quarantined) are at the
    destination; returns the number quarantined. Bounded in count and time."""
    deadline = time.monotonic() + timeout
    quarantined = 0
    for poll in range(int(timeout / POLL_SECONDS) + 2):
        if count_files(folder) + quarantined >= expected:
            time.sleep(0.2)  # let storescp finish writing the last file before its mtime
            return quarantined
        if gateway is not None and poll % 20 == 0:  # once a second: /metrics costs it CPU
            if not gateway.alive():
                raise RuntimeError(f"the gateway exited:\n{gateway.log()[-2000:]}")
            quarantined = int(gateway.metric("instances_quarantined"))
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{count_files(folder)} of {expected} files at {folder} after {timeout} s")


# --- the two runs of a scenario ----------------------------------------------------------------


def passthrough(root: Path, scenario: Scenario, timeout: float) -> Timing:
    """The same senders straight into a DCMTK storescp."""
    out, port = root / "received", free_port()
    with storescp_on(port, out, ae_title="ARCHIVE", extra_args=FORK):
        launched, receive = send_all(port, scenario.senders, "ARCHIVE", root / "logs", timeout)
        wait_for_files(out, scenario.count, timeout)
    first, last = arrivals(out, launched)
    return Timing(receive, first, last)


def through_gateway(
    root: Path, secret: Path, scenario: Scenario, plan: Plan
) -> tuple[Timing, e2e.RssPeaks, int]:
    """Senders -> `dicom-gateway run` -> DCMTK storescp; (timing, peak RSS, quarantined)."""
    out, port = root / "archive", free_port()
    with storescp_on(port, out, ae_title="ARCHIVE", extra_args=FORK):
        site = make_site(
            root / "site",
            secret,
            destination=ae_destination(port),
            quiet_seconds=plan.quiet,
            workers=plan.workers,
        )
        site.write(spool={"durability": plan.durability})
        gateway = start_gateway(site)
        sampler = e2e.RssSampler(gateway.pid)
        sampler.start()
        try:
            launched, receive = send_all(
                site.listen_port, scenario.senders, GATEWAY_AE, root / "logs", plan.timeout
            )
            quarantined = wait_for_files(out, scenario.count, plan.timeout, gateway)
            # Let the rounds close (audit records written) before stopping: not timed.
            wait_until(
                lambda: gateway.metric("queue_depth") == 0,
                timeout=plan.quiet + 60,
                what="the gateway's queue to empty",
            )
        finally:
            peaks = sampler.stop()
            gateway.stop()
    first, last = arrivals(out, launched)
    return Timing(receive, first, last), peaks, quarantined


def measure(plan: Plan, root: Path) -> list[Result]:
    """Every scenario, DCMTK then the gateway; progress lines as it goes."""
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    scenarios = make_scenarios(plan, root / "in")
    total = sum(s.count for s in scenarios)
    print(
        f"streaming: generated inputs in {time.perf_counter() - started:.1f} s "
        f"({total} instances sent over {len(scenarios)} scenarios, not timed)",
        flush=True,
    )
    secret = create_secret(root / "keys")
    results = []
    for index, scenario in enumerate(scenarios):
        folder = root / f"run{index}"
        tries = [passthrough(folder / f"dcmtk{i}", scenario, plan.timeout) for i in range(2)]
        dcmtk = min(tries, key=lambda t: t.receive)
        timing, peaks, quarantined = through_gateway(folder / "gateway", secret, scenario, plan)
        results.append(Result(scenario, dcmtk, timing, plan.quiet, peaks, quarantined))
        print(
            f"streaming: {scenario.name}: DCMTK "
            + ", ".join(f"{t.receive:.2f} s" for t in tries)
            + f"; gateway receive {timing.receive:.2f} s, first forwarded {timing.first:.2f} s,"
            f" last {timing.last:.2f} s",
            flush=True,
        )
    return results


# --- the table ---------------------------------------------------------------------------------

_LABEL = 50
_CELL = 27


def _row(label: str, cells: list[str]) -> str:
    line = f"{label:<{_LABEL}}|" + "|".join(f" {cell:<{_CELL - 1}}" for cell in cells)
    return line.rstrip()


def _rate(result: Result, seconds: float, with_ratio: bool = True) -> str:
    rate = result.rate(seconds)
    cell = f"{seconds:6.2f} s {rate:6.0f}/s"
    if with_ratio:
        cell += f" {rate / result.rate(result.dcmtk.receive):5.2f}x"
    return cell


def table(results: list[Result], plan: Plan) -> list[str]:
    """One column per scenario; rates are instances/s, ratios are to DCMTK passthrough."""
    rule = "-" * (_LABEL + _CELL * len(results) + len(results))
    lines = [
        f"streaming: storescp --fork; gateway: {plan.workers} workers, quiet period "
        f"{plan.quiet:g} s (subtracted where stated), spool.durability {plan.durability}; "
        "DCMTK: best of 2; times from the first storescu launch; "
        "ratios = inst/s vs DCMTK passthrough",
        "",
        _row("streaming scenario", [r.scenario.name for r in results]),
        rule,
    ]

    def row(label: str, make: Callable[[Result], str]) -> None:
        lines.append(_row(label, [make(r) for r in results]))

    row(
        "instances (studies, senders)",
        lambda r: f"{r.scenario.count} ({r.scenario.studies}, {len(r.scenario.senders)})",
    )
    row("input, MiB", lambda r: f"{r.scenario.size_bytes / MIB:.1f}")
    row("DCMTK storescu -> storescp: s, inst/s", lambda r: _rate(r, r.dcmtk.receive, False))
    row(
        "DCMTK first / last file at storescp, s",
        lambda r: f"{r.dcmtk.first:.2f} / {r.dcmtk.last:.2f}",
    )
    row("gateway receive: s, inst/s, vs DCMTK", lambda r: _rate(r, r.gateway.receive))
    row("gateway time to first forwarded, s", lambda r: f"{r.gateway.first:.2f}")
    row("gateway time to last forwarded (raw), s", lambda r: f"{r.gateway.last:.2f}")
    row(
        f"gateway last forwarded - quiet {plan.quiet:g} s: s, inst/s",
        lambda r: _rate(r, r.gateway.last - r.quiet),
    )
    row("peak RSS, service + workers summed, MiB", lambda r: f"{r.rss.summed / MIB:.0f}")
    row("instances quarantined", lambda r: str(r.quarantined))
    lines.append(rule)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 CT, 300 tiny, 3 small each")
    parser.add_argument("--quiet", type=float, default=1.0, help="study quiet period, s (1)")
    parser.add_argument("--workers", type=int, default=2, help="gateway worker processes (2)")
    parser.add_argument("--timeout", type=float, default=600.0, help="max wait per run, s")
    parser.add_argument("--durability", choices=("fsync", "process"), default="fsync",
                        help="spool.durability of the gateway (fsync)")  # fmt: skip
    args = parser.parse_args(argv)
    if e2e.STORESCU is None or e2e.STORESCP is None:
        parser.error("DCMTK storescu and storescp are needed (apt-get install dcmtk)")
    if args.workers < 1 or args.quiet <= 0 or args.timeout <= 0:
        parser.error("--workers must be at least 1, --quiet and --timeout positive")
    plan = Plan(quiet=args.quiet, workers=args.workers, timeout=args.timeout,
                durability=args.durability)  # fmt: skip
    if args.quick:
        plan = replace(plan, ct=60, tiny=300, small=SMALL[:3])
    began = time.perf_counter()
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as folder:
        results = measure(plan, Path(folder))
    print()
    print("\n".join(table(results, plan)))
    print(f"{time.perf_counter() - began:.0f} s in all; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
