"""The network measurements of `make bench`: DCMTK passthrough and the running gateway.

A PACS administrator sizing a gateway wants two figures: how fast a modality can push into
it (receive rate) and how long until the last instance of a study is at the research
archive (end to end). Both are compared with DCMTK `storescu` -> `storescp` directly, on the
same machine and files:

  passthrough   storescu -> storescp: time from launch to exit (one association)
  gateway       storescu -> `dicom-gateway run` -> destination (DCMTK storescp, or a folder):
                receive = storescu's launch to exit (every instance acknowledged, i.e. fsynced
                in the spool); end to end = storescu's launch to the last file written at the
                destination, minus the quiet period that declares the study complete when
                the last file waited for it (written more than a quiet period after the
                last acknowledgement); instances streamed on before that owe it nothing;
                peak RSS of the service and of each worker (/proc, every 50 ms).

It measures and returns figures; `bench/run.py` prints them. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from service_harness import (  # tests/ is not a package
    STORESCP,
    STORESCU,
    Gateway,
    ae_destination,
    child_pids,
    dcmtk_env,
    free_port,
    make_site,
    rss_bytes,
    start_gateway,
    storescp_on,
    storescu_command,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

__all__ = [
    "STORESCP",
    "STORESCU",
    "GatewayRun",
    "Passthrough",
    "RssPeaks",
    "Workload",
    "make_workload",
    "passthrough",
    "through_gateway",
]


@dataclass(frozen=True)
class Workload:
    """One synthetic study, as a modality would send it."""

    name: str
    files: list[Path]
    size_bytes: int

    @property
    def count(self) -> int:
        return len(self.files)


def make_workload(folder: Path, name: str, count: int, size: int, seed: int) -> Workload:
    """`count` CT slices of `size` x `size` 16-bit pixels, one study (not timed)."""
    files = make_ct_study(
        folder, instances=count, rows=size, columns=size, patient=random_patient(4242), seed=seed
    )
    return Workload(name, files, sum(p.stat().st_size for p in files))


@dataclass(frozen=True)
class Passthrough:
    seconds: float


@dataclass
class RssPeaks:
    """Peak resident memory: the service process, each worker, and their sum at one instant."""

    main: int = 0
    workers: dict[int, int] = field(default_factory=dict)
    summed: int = 0

    @property
    def largest_worker(self) -> int:
        return max(self.workers.values(), default=0)


@dataclass(frozen=True)
class GatewayRun:
    destination: str
    receive_seconds: float
    end_to_end_seconds: float  # the quiet period subtracted if the last file waited for it
    receive_cpu_seconds: float  # the service process's CPU time while receiving
    rss: RssPeaks
    quarantined: int
    forward_seconds: float  # audit records: time spent sending the outboxes


def settle_disk() -> None:
    """Write back every dirty page before a timed run (not timed): storescp never syncs,
    so without this the next run's first fsyncs would pay for writing the last run's
    files (ext4 commits its journal with the data of every file written before)."""
    os.sync()


def run_storescu(port: int, load: Workload, called_ae: str) -> float:
    """Seconds from launching storescu to its exit (one association, all files); the disk
    settled first."""
    settle_disk()
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


def files_in(folder: Path) -> list[Path]:
    """The instance files a destination wrote (storescp: flat; folder: a tree)."""
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]


# --- DCMTK passthrough -------------------------------------------------------------------------


def passthrough(root: Path, load: Workload, extra_env: dict[str, str] | None = None) -> Passthrough:
    """storescu -> storescp (`extra_env`: storescp's own additions, e.g. LD_PRELOAD)."""
    out = root / "passthrough"
    port = free_port()
    with storescp_on(port, out, ae_title="ARCHIVE", extra_env=extra_env):
        seconds = run_storescu(port, load, called_ae="ARCHIVE")
    got = len(files_in(out))
    if got != load.count:
        raise RuntimeError(f"storescp wrote {got} of {load.count} files")
    return Passthrough(seconds)


# --- through the gateway -----------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Peak resident memory of a process and each of its descendants, every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peaks = RssPeaks()
        self._done = threading.Event()

    def run(self) -> None:
        for _ in range(10_000_000):  # bounded; ends with stop()
            if self._done.is_set():
                break
            main = rss_bytes([self.pid])
            summed = main
            for child in child_pids(self.pid):
                size = rss_bytes([child])
                summed += size
                self.peaks.workers[child] = max(self.peaks.workers.get(child, 0), size)
            self.peaks.main = max(self.peaks.main, main)
            self.peaks.summed = max(self.peaks.summed, summed)
            self._done.wait(0.05)

    def stop(self) -> RssPeaks:
        self._done.set()
        self.join(timeout=5)
        return self.peaks


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (/proc/PID/stat), 0 when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_gateway(
    root: Path,
    secret: Path,
    load: Workload,
    *,
    destination: str,
    quiet: float,
    workers: int,
    timeout: float,
) -> GatewayRun:
    """storescu -> gateway -> `destination` ("ae": a DCMTK storescp; "folder")."""
    out = root / "archive"
    port = free_port()
    if destination == "ae":
        with storescp_on(port, out, ae_title="ARCHIVE"):
            return _measure(root, secret, load, ae_destination(port), out, quiet, workers, timeout)
    return _measure(root, secret, load, {"folder": str(out)}, out, quiet, workers, timeout)


def _measure(
    root: Path,
    secret: Path,
    load: Workload,
    destination: dict[str, object],
    out: Path,
    quiet: float,
    workers: int,
    timeout: float,
) -> GatewayRun:
    site = make_site(
        root / "site", secret, destination=destination, quiet_seconds=quiet, workers=workers
    )
    gateway = start_gateway(site)
    sampler = RssSampler(gateway.pid)
    sampler.start()
    try:
        cpu_before = cpu_seconds(gateway.pid)
        first_sent = time.time()
        receive_seconds = run_storescu(site.listen_port, load, called_ae="DEID_GW")
        received = time.time()
        receive_cpu = cpu_seconds(gateway.pid) - cpu_before
        _wait_forwarded(gateway, load.count, timeout)
        quarantined = int(gateway.metric("instances_quarantined"))
    finally:
        peaks = sampler.stop()
        gateway.stop()
    forward_seconds = sum(float(r.get("forward_seconds") or 0) for r in site.audit_records())
    written = files_in(out)
    if len(written) + quarantined != load.count:
        raise RuntimeError(f"destination has {len(written)} of {load.count} files")
    last_written = max((p.stat().st_mtime for p in written), default=first_sent)
    waited = quiet if last_written > received + quiet else 0.0
    return GatewayRun(
        destination="storescp" if "ae_title" in destination else "folder",
        receive_seconds=receive_seconds,
        end_to_end_seconds=last_written - first_sent - waited,
        receive_cpu_seconds=receive_cpu,
        rss=peaks,
        quarantined=quarantined,
        forward_seconds=forward_seconds,
    )


def _wait_forwarded(gateway: Gateway, count: int, timeout: float) -> None:
    def done() -> bool:
        received = gateway.metric("instances_received")
        return received >= count and gateway.metric("queue_depth") == 0

    wait_until(done, timeout=timeout, what="every instance forwarded", interval=0.1)
