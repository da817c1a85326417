"""The storage folder fills up: refuse with 0xA700, keep what was acknowledged, resume.

The gateway runs in a mount namespace of its own (`unshare --user --map-root-user --mount`,
no privilege needed where user namespaces are allowed; plain `unshare --mount` as root) with
a 4 MiB tmpfs on its storage folder. The test reaches that file system through
/proc/<gateway pid>/root, fills it with a filler file, sends a study bigger than what is
left, and deletes the filler: space returns, as when an administrator cleans up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from service_harness import (
    STORESCP,
    STORESCU,
    Gateway,
    Site,
    ae_destination,
    child_pids,
    create_secret,
    free_port,
    gateway_command,
    make_site,
    received_files,
    sop_instance_uid,
    stop_process,
    storescp_on,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = [
    pytest.mark.skipif(None in (STORESCU, STORESCP), reason="DCMTK storescu/storescp missing"),
    pytest.mark.timeout(150),
]

TMPFS_SIZE = "4m"
# What stays free once the filler is written: room for a few 32 KiB instances and state.db.
LEFT_FREE = 256 << 10
MOUNT = 'mount -t tmpfs -o size={size},mode=0700 tmpfs "$0" && exec "$@"'
NAMESPACES = (
    ["unshare", "--user", "--map-root-user", "--mount"],  # unprivileged
    ["unshare", "--mount"],  # root without user namespaces
)


def _namespace_command(probe_dir: Path) -> tuple[list[str] | None, str]:
    """The first way to mount a private tmpfs that works here, or why none does."""
    why: list[str] = []
    for prefix in NAMESPACES:
        try:
            tried = subprocess.run(
                [*prefix, "sh", "-c", MOUNT.format(size="1m"), str(probe_dir), "true"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except OSError as exc:
            why.append(f"{' '.join(prefix)}: {exc}")
            continue
        if tried.returncode == 0:
            return prefix, ""
        why.append(f"{' '.join(prefix)}: {tried.stderr.strip() or tried.returncode}")
    return None, "; ".join(why)


@pytest.fixture
def namespace(tmp_path: Path) -> list[str]:
    probe = tmp_path / "probe"
    probe.mkdir()
    prefix, why = _namespace_command(probe)
    if prefix is None:
        pytest.skip(f"cannot mount a private tmpfs (user or mount namespaces refused): {why}")
    return prefix


# Inside the namespace: mount the tmpfs, then run the gateway as a supervisor would, again
# after each exit once the test touches CTL/go, until it touches CTL/stop.
SUPERVISE = (
    'mount -t tmpfs -o size={size},mode=0700 tmpfs "$0" || exit 1; ctl="$1"; shift; '
    'while :; do "$@"; [ -e "$ctl/stop" ] && exit 0; '
    'while [ ! -e "$ctl/go" ]; do sleep 0.05; done; rm -f "$ctl/go"; done'
)


@dataclass
class SmallDisk:
    """The supervisor shell (`gateway.process`, in the namespace) and the gateway it runs."""

    site: Site
    gateway: Gateway
    ctl: Path
    namespace: list[str]

    def service_pid(self) -> int:
        children = [p for p in child_pids(self.gateway.pid) if _is_gateway(p)]
        return min(children) if children else 0

    def kill(self) -> None:
        """SIGKILL the gateway and its workers (a crash); the supervisor waits for `restart`."""
        pid = self.service_pid()
        victims = [pid, *child_pids(pid)]
        for victim in victims:
            with suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not any(_is_gateway(v) for v in victims), timeout=10, what="the kill")

    def run_inside(self, code: str, *args: str) -> None:
        """Python `code` in the gateway's namespaces (where its tmpfs is mounted)."""
        if shutil.which("nsenter") is None:
            pytest.skip("nsenter (util-linux) is not installed")
        flags = ["-U", "--preserve-credentials"] if "--user" in self.namespace else []
        done = subprocess.run(
            [
                "nsenter",
                "-t",
                str(self.gateway.pid),
                "-m",
                *flags,
                sys.executable,
                "-c",
                code,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def restart(self) -> None:
        (self.ctl / "go").touch()
        wait_until(lambda: self.service_pid(), timeout=10, what="the restart")

    def stop(self) -> None:
        (self.ctl / "stop").touch()
        pid = self.service_pid()
        if pid:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.gateway.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            stop_process(self.gateway.process, timeout=5)


def _is_gateway(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" and b"dicom-gateway" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False


@pytest.fixture
def small_disk(tmp_path: Path, namespace: list[str]) -> Iterator[SmallDisk]:
    archive_port = free_port()
    storage, ctl = tmp_path / "storage", tmp_path / "ctl"
    storage.mkdir()
    ctl.mkdir()
    with storescp_on(archive_port, tmp_path / "archive", extra_args=["+xa", "+uf"]):
        site = make_site(
            tmp_path / "site",
            create_secret(tmp_path / "keys"),
            destination=ae_destination(archive_port),
            storage=storage,
            quiet_seconds=2,
        )
        log_path = site.root / "gateway.log"
        command = [
            *namespace,
            "sh",
            "-c",
            SUPERVISE.format(size=TMPFS_SIZE),
            str(storage),
            str(ctl),
            *gateway_command(),
            "run",
            "-c",
            str(site.config),
        ]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=site.root, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        disk = SmallDisk(site, Gateway(site, process, log_path), ctl, namespace)
        try:
            wait_until(
                lambda: not disk.gateway.alive() or disk.gateway.healthz() == 200,
                timeout=30,
                what="the gateway on its small disk",
            )
            assert disk.gateway.alive(), disk.gateway.log()
            yield disk
        finally:
            disk.stop()


def inside(gateway: Gateway, path: Path) -> Path:
    """`path` as the gateway sees it (its private tmpfs), reached from outside."""
    return Path(f"/proc/{gateway.pid}/root") / path.relative_to("/")


def fill(storage: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free on the storage file system."""
    filler = storage / "filler"
    free = os.statvfs(storage).f_bavail * os.statvfs(storage).f_frsize
    with open(filler, "wb") as handle:
        handle.truncate(0)
        handle.write(b"\0" * max(0, free - leave))
    return filler


def tried_while_full(gateway: Gateway) -> float:
    metrics = gateway.metrics()
    return sum(
        metrics.get(f'dicom_gateway_failures_total{{stage="{stage}"}}', 0)
        for stage in ("storage", "worker")
    )


def test_full_disk_refuses_with_a700_keeps_what_it_acknowledged_and_resumes(
    tmp_path: Path, small_disk: SmallDisk, report_figures: list[str]
) -> None:
    site, gateway = small_disk.site, small_disk.gateway
    storage = inside(gateway, site.storage)
    assert os.statvfs(storage).f_blocks * os.statvfs(storage).f_frsize <= 4 << 20
    study = make_ct_study(
        tmp_path / "in", instances=30, rows=128, columns=128, patient=random_patient(91)
    )
    filler = fill(storage, LEFT_FREE)

    first = storescu(site.listen_port, study)
    refused = first.with_status("Refused: OutOfResources")
    stored = first.acknowledged
    figures = f"disk full: {len(stored)} acknowledged, {len(refused)} refused with 0xA700"
    assert stored and refused, first.output
    assert len(stored) + len(refused) == len(study), first.statuses
    # The acknowledged round is due while the disk is still full: neither its state change
    # nor its outbox can be written; it is kept and tried again on every tick.
    wait_until(
        lambda: tried_while_full(gateway) >= 2,
        timeout=20,
        what="the study to be tried while the disk is full",
    )
    assert gateway.metric("queue_depth") == len(stored)
    assert gateway.alive()
    assert list((storage / "spool" / "tmp").iterdir()) == []  # nothing half-written kept

    filler.unlink()  # space returns
    wait_until(lambda: gateway.healthz() == 200, timeout=10, what="/healthz 200 again")
    again = storescu(site.listen_port, refused)
    assert again.acknowledged == refused, again.output
    wait_until(
        lambda: gateway.metric("queue_depth") == 0,
        timeout=60,
        what="the whole study forwarded",
        interval=0.2,
    )
    quarantine = storage / "quarantine"  # gone with the gateway's own tmpfs
    held = sorted(p.name for p in quarantine.iterdir()) if quarantine.is_dir() else []
    small_disk.stop()
    received = received_files(tmp_path / "archive")
    pseudonyms = site.pseudonyms()
    expected = sorted(pseudonyms.uid(sop_instance_uid(p)) for p in study)
    assert sorted(r.sop_instance_uid for r in received) == expected, (
        f"not complete, or twice; acknowledged first {len(stored)}, quarantined {held}; "
        f"gateway log:\n{gateway.log()[-6000:]}"
    )
    report_figures.append(
        f"{figures}; after space returned {len(received)} of {len(study)} delivered once each"
    )


def test_restart_after_a_crash_on_a_full_disk_answers_a700_then_resumes(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    """A crash while a round was being processed, and the disk fills before the restart:
    the gateway must come up (answering 0xA700, not refusing connections), keep the round,
    and process it once space returns."""
    site, gateway = small_disk.site, small_disk.gateway
    storage = inside(gateway, site.storage)
    study = make_ct_study(
        tmp_path / "in", instances=10, rows=64, columns=64, patient=random_patient(92)
    )
    late = make_ct_study(
        tmp_path / "late", instances=1, rows=64, columns=64, patient=random_patient(93)
    )
    assert storescu(site.listen_port, study).acknowledged == study
    small_disk.kill()  # within the quiet period: the round is still `receiving`
    # As if the kill had come while a worker processed it (state.db as the crash left it,
    # its WAL not checkpointed: no clean close). SQLite resolves /proc/PID/root to "/", so
    # this runs inside the namespace.
    small_disk.run_inside(
        "import os, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
        "db.execute(\"UPDATE rounds SET state = 'processing'\"); db.commit(); os._exit(0)",
        str(site.storage / "state.db"),
    )
    filler = fill(storage, 0)
    small_disk.restart()
    wait_until(
        lambda: gateway.healthz() in (200, 503), timeout=30, what="the gateway up on a full disk"
    )
    refused = storescu(site.listen_port, late)
    assert refused.with_status("Refused: OutOfResources") == late, refused.output
    assert "recovery of 1 rounds deferred" in gateway.log()

    filler.unlink()
    wait_until(
        lambda: gateway.metric("queue_depth") == 0,
        timeout=60,
        what="the interrupted round forwarded once space returned",
        interval=0.2,
    )
    small_disk.stop()
    pseudonyms = site.pseudonyms()
    expected = sorted(pseudonyms.uid(sop_instance_uid(p)) for p in study)
    received = received_files(tmp_path / "archive")
    assert sorted(r.sop_instance_uid for r in received) == expected
