"""Driving a real `dicom-gateway run` process and DCMTK tools, for the end-to-end tests.

The service tests (test_service_e2e.py) and the benchmark (bench/e2e.py) treat the gateway
as a PACS administrator does: a site folder with a secret from `keys init` and a YAML file,
`dicom-gateway run -c FILE` as a child process, DCMTK `storescu` / `echoscu` as modalities,
and /healthz, /metrics, `audit.jsonl` and `quarantine list` as the only windows into it.

Every process started here is stopped by its own PID (SIGTERM, bounded wait, SIGKILL), every
wait is a bounded loop on observable state, and everything connects to 127.0.0.1 only
(DCMTK 3.6.7 storescp and Orthanc listen on all interfaces).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydicom import dcmread

LOOPBACK = "127.0.0.1"
GATEWAY_AE = "DEID_GW"
MODALITY_AE = "MODALITY1"
SITE_ID = "E2E-SITE"

T = TypeVar("T")

# The venv's bin folder also holds pynetdicom's `storescu`/`storescp` scripts; the DCMTK
# ones are looked up on the system path only, so a venv on PATH cannot shadow them.
_SYSTEM_PATH = os.pathsep.join(
    part
    for part in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    if Path(part).resolve() != Path(sys.executable).parent.resolve()
)


def dcmtk_tool(name: str) -> str | None:
    """The absolute path of a DCMTK command-line tool, or None when not installed."""
    return shutil.which(name, path=_SYSTEM_PATH)


STORESCU = dcmtk_tool("storescu")
STORESCP = dcmtk_tool("storescp")
ECHOSCU = dcmtk_tool("echoscu")
DCMDUMP = dcmtk_tool("dcmdump")


def dcmtk_env() -> dict[str, str]:
    """DCMTK reads TCP_NODELAY from the environment for every socket it opens; without it a
    C-STORE waits for the peer's delayed ACK (~40 ms) and the figures measure Nagle."""
    return {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def gateway_command() -> list[str]:
    """The installed `dicom-gateway` next to this interpreter (as a user runs it)."""
    entry = Path(sys.executable).parent / "dicom-gateway"
    if entry.is_file() and os.access(entry, os.X_OK):
        return [str(entry)]
    return [sys.executable, "-m", "gateway.cli.main"]


def run_cli(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One `dicom-gateway` command as a user types it, with no standard input."""
    return subprocess.run(
        [*gateway_command(), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def wait_until(
    predicate: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`.

    Bounded in time and in count, so a broken gateway fails a test instead of hanging it.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    for _ in range(int(timeout / interval) + 2):
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# --- processes ---------------------------------------------------------------------------------


def spool_files(folder: Path) -> list[Path]:
    """Files under a spool (or a part of it) that hold something: the free slots, empty
    files made ahead in spool/slots/ (gateway/stores/spool_seal.py), are no instances."""
    found = []
    for path in folder.rglob("*"):
        with suppress(OSError):  # gone meanwhile
            if path.is_file() and not (path.parent.name == "slots" and not path.stat().st_size):
                found.append(path)
    return found


def child_pids(pid: int) -> list[int]:
    """Every descendant of `pid` (e.g. the gateway's worker processes), from /proc."""
    found: list[int] = []
    pending = [pid]
    for _ in range(10_000):
        if not pending:
            break
        current = pending.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                pending.append(int(child))
    return found


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident set size summed over `pids` (those that have exited count as 0)."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if found:
            total += int(found.group(1)) * 1024
    return total


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def stop_process(
    process: subprocess.Popen[Any], *, timeout: float = 20.0, sig: int = signal.SIGTERM
) -> int:
    """Send `sig` to this one process, wait up to `timeout`, then SIGKILL it.

    Descendants it leaves behind (worker processes of a killed gateway) are killed by their
    own PIDs too, after checking that each PID still runs the same program.
    """
    if process.poll() is not None:
        return int(process.returncode)
    children = {pid: _cmdline(pid) for pid in child_pids(process.pid)}
    try:
        process.send_signal(sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    for pid, cmdline in children.items():
        if cmdline and _cmdline(pid) == cmdline:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return int(process.returncode)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- the site: secret, configuration, storage ---------------------------------------------------


def create_secret(folder: Path) -> Path:
    """`dicom-gateway keys init --dir FOLDER`, as a sysadmin creates the site secret."""
    result = subprocess.run(
        [*gateway_command(), "keys", "init", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return folder / "site-secret.key"


@dataclass
class Site:
    """A gateway's folder: its configuration file, storage folder and ports."""

    root: Path
    config: Path
    storage: Path
    secret: Path
    listen_port: int
    http_port: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def export(self) -> Path:
        return self.storage / "export"

    def pseudonyms(self) -> Any:
        """The site's pseudonym generator, to compute what the gateway must have written."""
        from gateway.deid.pseudonyms import Pseudonyms
        from gateway.keys.site_secret import read_site_secret

        return Pseudonyms(read_site_secret(self.secret), SITE_ID)

    def write(self, **changes: Any) -> None:
        """Rewrite the YAML with some top-level sections replaced (e.g. a new destination)."""
        self.settings.update(changes)
        self.config.write_text(yaml.safe_dump(self.settings, sort_keys=False), encoding="utf-8")

    def audit_records(self, event: str = "study_round") -> list[dict[str, Any]]:
        path = self.storage / "audit.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [r for r in (json.loads(line) for line in lines if line) if r["event"] == event]

    def spool_rows(self) -> list[tuple[int, str]]:
        """(round, file) of every instance recorded in state.db, read-only."""
        db = sqlite3.connect(f"file:{self.storage / 'state.db'}?mode=ro", uri=True, timeout=5)
        try:
            return [
                (int(r[0]), str(r[1])) for r in db.execute("SELECT round_id, file FROM instances")
            ]
        finally:
            db.close()

    def quarantine(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`dicom-gateway quarantine ARGS -c CONFIG`, as an administrator runs it."""
        return subprocess.run(
            [*gateway_command(), "quarantine", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def make_site(
    root: Path,
    secret: Path,
    *,
    destination: dict[str, Any],
    allowed_calling_aes: Sequence[str] = (),
    quiet_seconds: float = 1,
    max_attempts: int = 30,
    storage: Path | None = None,
    workers: int = 2,
) -> Site:
    """A site folder with a config on free loopback ports; `destination` is either
    `{"ae_title", "host", "port"}` or `{"folder"}`. Retries are fast, for tests."""
    root.mkdir(parents=True, exist_ok=True)
    storage = storage if storage is not None else root / "var"
    listen_port, http_port = free_port(), free_port()
    while http_port == listen_port:
        http_port = free_port()
    settings: dict[str, Any] = {
        "site_id": SITE_ID,
        "storage_dir": str(storage),
        "workers": workers,
        "listen": {
            "ae_title": GATEWAY_AE,
            "host": LOOPBACK,
            "port": listen_port,
            "allowed_calling_aes": list(allowed_calling_aes),
        },
        "study": {"quiet_seconds": quiet_seconds},
        "keys": {"secret": str(secret)},
        "destination": {
            **destination,
            "retry": {"max_attempts": max_attempts, "initial_seconds": 0.5, "max_seconds": 2},
        },
        "http": {"host": LOOPBACK, "port": http_port},
    }
    site = Site(root, root / "gateway.yaml", storage, secret, listen_port, http_port, settings)
    site.write()
    return site


def ae_destination(port: int, ae_title: str = "ARCHIVE") -> dict[str, Any]:
    return {"ae_title": ae_title, "host": LOOPBACK, "port": port}


# --- the running gateway -----------------------------------------------------------------------


@dataclass
class Gateway:
    """A running `dicom-gateway run` process and its HTTP endpoints."""

    site: Site
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def healthz(self) -> int:
        """The /healthz status code; 0 when nothing answers."""
        url = f"http://{LOOPBACK}:{self.site.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def metrics(self) -> dict[str, float]:
        """The Prometheus text of /metrics as {name{labels}: value} (no HELP/TYPE lines)."""
        url = f"http://{LOOPBACK}:{self.site.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode("utf-8")
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    def metric(self, name: str) -> float:
        """One counter or gauge, e.g. `instances_received` (prefix and `_total` added)."""
        values = self.metrics()
        for key in (f"dicom_gateway_{name}_total", f"dicom_gateway_{name}"):
            if key in values:
                return values[key]
        return 0.0

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 40.0) -> int:
        return stop_process(self.process, timeout=timeout)


def start_gateway(
    site: Site, *, timeout: float = 30.0, command: Sequence[str] | None = None
) -> Gateway:
    """`dicom-gateway run -c CONFIG` (or `command`, another way of starting it); returns
    once /healthz says 200 and the SCP accepts."""
    log_path = site.root / f"gateway-{time.monotonic_ns()}.log"
    if command is None:
        command = [*gateway_command(), "run", "-c", str(site.config)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(command),
            cwd=site.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(site, process, log_path)
    # Only /healthz is polled: it answers 200 once the SCP is bound. A bare TCP connect to
    # the DICOM port would hold an association thread open until its ACSE timeout (30 s),
    # and SIGTERM waits for it (see the report).
    try:
        wait_until(
            lambda: process.poll() is not None or gateway.healthz() == 200,
            timeout=timeout,
            what="the gateway to answer /healthz",
        )
    except AssertionError:
        gateway.stop(timeout=5)
        raise
    if process.poll() is not None:
        raise AssertionError(f"the gateway exited with {process.returncode}:\n{gateway.log()}")
    return gateway


@contextmanager
def running_gateway(site: Site, command: Sequence[str] | None = None) -> Iterator[Gateway]:
    gateway = start_gateway(site, command=command)
    try:
        yield gateway
    except BaseException:
        # The gateway's own account of a failed test, in the test's captured output (the
        # site is in a temporary folder CI does not keep).
        print(f"--- gateway log, last lines ({gateway.log_path.name}) ---")
        print("\n".join(gateway.log().splitlines()[-80:]))
        raise
    finally:
        gateway.stop()


# --- DCMTK storescu / echoscu / storescp ------------------------------------------------------

# storescu's propose option per transfer syntax of the files (one storescu call per group);
# "" is the default (the uncompressed syntaxes). Missing: what DCMTK 3.6.7 cannot send.
STORESCU_PROPOSE: dict[str, str] = {
    "1.2.840.10008.1.2": "",
    "1.2.840.10008.1.2.1": "",
    "1.2.840.10008.1.2.2": "",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.57": "-xs",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}

_SENDING = re.compile(r"^I: Sending file: (.+)$")
_RESPONSE = re.compile(r"^I: Received Store Response \((.+)\)$")
_BAD_FILE = re.compile(r"^E: Bad DICOM file: (.+?): ")
_STORE_FAILED = re.compile(r"^E: Store Failed, file: (.+?):?$")


@dataclass(frozen=True)
class StoreRun:
    """What storescu reported, file by file: "Success", "Refused: OutOfResources", "bad file",
    "failed" (not sent), or "no response" (the association ended first)."""

    returncode: int
    output: str
    statuses: dict[Path, str]

    @property
    def acknowledged(self) -> list[Path]:
        """Files the SCP answered with success: the gateway promised to keep these."""
        return [p for p, s in self.statuses.items() if s == "Success" or s.startswith("Warning")]

    def with_status(self, prefix: str) -> list[Path]:
        return [p for p, s in self.statuses.items() if s.startswith(prefix)]


def parse_storescu(output: str, returncode: int) -> StoreRun:
    """Per-file results from `storescu -v` output (DCMTK 3.6.7 wording)."""
    statuses: dict[Path, str] = {}
    current: Path | None = None
    for line in output.splitlines():
        if found := _SENDING.match(line):
            current = Path(found.group(1))
            statuses[current] = "no response"
        elif (found := _RESPONSE.match(line)) and current is not None:
            statuses[current] = found.group(1)
            current = None
        elif found := _BAD_FILE.match(line):
            statuses[Path(found.group(1))] = "bad file"
            current = None
        elif (found := _STORE_FAILED.match(line)) and current is not None:
            statuses[current] = "failed"
            current = None
    return StoreRun(returncode, output, statuses)


def storescu_command(
    port: int,
    files: Sequence[Path],
    *,
    calling_ae: str = MODALITY_AE,
    called_ae: str = GATEWAY_AE,
    options: Sequence[str] = (),
) -> list[str]:
    assert STORESCU is not None, "DCMTK storescu not installed"
    return [
        STORESCU,
        "-v",
        "-nh",  # go on after a failed store: the test wants every file's status
        # Only the contexts the files need: the default list is so long that a SOP class
        # outside it (e.g. Segmentation Storage) no longer fits in the 128 contexts.
        "-R",
        "-aet",
        calling_ae,
        "-aec",
        called_ae,
        *options,
        LOOPBACK,
        str(port),
        *(str(f) for f in files),
    ]


def storescu(
    port: int,
    files: Sequence[Path],
    *,
    calling_ae: str = MODALITY_AE,
    called_ae: str = GATEWAY_AE,
    options: Sequence[str] = (),
    timeout: float = 120,
) -> StoreRun:
    """Send `files` in one association, as a modality does; never raises on a DICOM failure."""
    command = storescu_command(
        port, files, calling_ae=calling_ae, called_ae=called_ae, options=options
    )
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=dcmtk_env(), check=False
    )
    return parse_storescu(result.stdout + result.stderr, result.returncode)


def storescu_by_syntax(port: int, groups: dict[str, list[Path]], **kwargs: Any) -> StoreRun:
    """One storescu call per propose option (see STORESCU_PROPOSE); the merged results."""
    statuses: dict[Path, str] = {}
    outputs: list[str] = []
    worst = 0
    for option, files in groups.items():
        run = storescu(port, files, options=[option] if option else [], **kwargs)
        statuses.update(run.statuses)
        outputs.append(run.output)
        worst = worst or run.returncode
    return StoreRun(worst, "\n".join(outputs), statuses)


def dcmtk_reads_sop_uids(path: Path) -> bool:
    """Whether DCMTK sees the file's SOP Class and Instance UIDs as UIDs. storescu cannot
    send a file whose UIDs it reads as UN (e.g. explicit VR UN from a converter)."""
    if DCMDUMP is None:
        return True
    dumped = subprocess.run(
        [DCMDUMP, "-q", "+P", "0008,0016", "+P", "0008,0018", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    lines = [line for line in dumped.splitlines() if line.startswith("(0008,001")]
    return len(lines) == 2 and all(line[12:14] == "UI" for line in lines)


def echoscu(port: int, *, calling_ae: str = MODALITY_AE) -> subprocess.CompletedProcess[str]:
    assert ECHOSCU is not None, "DCMTK echoscu not installed"
    return subprocess.run(
        [ECHOSCU, "-v", "-aet", calling_ae, "-aec", GATEWAY_AE, LOOPBACK, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dcmtk_env(),
        check=False,
    )


@contextmanager
def storescp_on(
    port: int,
    out_dir: Path,
    *,
    ae_title: str = "ARCHIVE",
    extra_args: Sequence[str] = (),
    extra_env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """DCMTK storescp on a given port (the destination that comes back up on its old port).

    tests/peers.py's `run_storescp` picks a free port itself; this one is for a port the
    gateway's configuration already names. `+uf` writes a new file for every instance
    received, so a duplicate shows as a second file instead of overwriting the first.
    """
    assert STORESCP is not None, "DCMTK storescp not installed"
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir.parent / f"storescp-{port}.log"
    command = [STORESCP, "-aet", ae_title, "-od", str(out_dir), *extra_args, str(port)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**dcmtk_env(), **(extra_env or {})},
        )
    try:
        wait_until(
            lambda: process.poll() is not None or port_open(port),
            timeout=10,
            what=f"storescp on port {port}",
            interval=0.05,
        )
        assert process.poll() is None, log_path.read_text(errors="replace")
        yield process
    finally:
        stop_process(process, timeout=10)


# --- what arrived ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One file a destination wrote, with the attributes the tests compare."""

    path: Path
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    transfer_syntax: str
    patient_name: str
    patient_id: str
    identity_removed: str


def received_files(out_dir: Path) -> list[Received]:
    """Every complete file storescp wrote (its temporary files are skipped)."""
    found: list[Received] = []
    if not out_dir.is_dir():
        return found
    for path in sorted(out_dir.rglob("*")):
        if not path.is_file() or path.suffix in (".log", ".part") or path.name.startswith("."):
            continue
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception:
            continue  # still being written
        found.append(
            Received(
                path=path,
                sop_instance_uid=str(ds.SOPInstanceUID),
                study_uid=str(ds.get("StudyInstanceUID", "")),
                series_uid=str(ds.get("SeriesInstanceUID", "")),
                frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
                transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
                patient_name=str(ds.get("PatientName", "")),
                patient_id=str(ds.get("PatientID", "")),
                identity_removed=str(ds.get("PatientIdentityRemoved", "")),
            )
        )
    return found


def sop_instance_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)


def needles(values: Iterable[str]) -> set[bytes]:
    """Each identifying value as it may be written: any case, `^` as itself or a space."""
    found: set[bytes] = set()
    for value in values:
        lowered = value.lower()
        found.add(lowered.encode("utf-8"))
        found.add(lowered.replace("^", " ").encode("utf-8"))
    return found


def leaks_in(paths: Iterable[Path], values: Iterable[str]) -> list[tuple[str, str]]:
    """(file name, value) for every identifying value found in a file's bytes."""
    wanted = needles(values)
    hits: list[tuple[str, str]] = []
    for path in paths:
        data = path.read_bytes().lower()
        hits.extend((path.name, n.decode()) for n in wanted if n in data)
    return hits


# --- test inputs and file systems shared by the receive, load and disk-full tests --------------


def write_large_multiframe(path: Path, megabytes: int, name: str, patient_id: str) -> Any:
    """An Enhanced CT of `megabytes` MiB of 512x512 16-bit frames, written frame by frame
    (a test never holds it whole), no two frames alike and no printable text in them;
    returns its header (a pydicom Dataset without Pixel Data)."""
    import struct

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = max(1, megabytes * 2)  # 0.5 MiB a frame
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (generate_uid() for _ in "123")
    ds.PatientName, ds.PatientID = name, patient_id
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.NumberOfFrames = frames
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    dcmwrite(path, ds, enforce_file_format=True)
    frame = (np.arange(512 * 512, dtype=np.uint16) % 2048).tobytes()
    with open(path, "ab") as handle:
        handle.write(b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", len(frame) * frames))
        for number in range(frames):
            handle.write(frame[:-2] + struct.pack("<H", number))
    return ds


@contextmanager
def small_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """`mountpoint` (created) as a tmpfs of `size` ("4m", "200k"), so that writes run out
    of space; skips the test where mounting is not allowed (it needs root)."""
    import pytest

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount not permitted here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=30, check=False)
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], timeout=30, check=False)
