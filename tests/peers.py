"""Real DICOM peers on loopback for tests: DCMTK storescp and Orthanc, on free ports.

    with run_storescp(out_dir) as (port, pid): ...     # files arrive in out_dir
    with run_orthanc(tmp_path) as orthanc: orthanc.instances()

Each peer is started as a child process, waited for with a bounded loop, and stopped by its
own PID (terminate, then kill). Connect only via 127.0.0.1: DCMTK 3.6.7 storescp listens on
all interfaces, and nothing here is meant to be reachable from elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

LOOPBACK = "127.0.0.1"
STORESCP = shutil.which("storescp")
ORTHANC = shutil.which("Orthanc") or (
    "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None
)

requires_storescp = pytest.mark.skipif(STORESCP is None, reason="DCMTK storescp not installed")
requires_orthanc = pytest.mark.skipif(
    ORTHANC is None, reason="Orthanc not installed (apt-get install orthanc)"
)

_START_ATTEMPTS = 3  # a free port can be taken by someone else before the peer binds it


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class StoreScp(NamedTuple):
    port: int
    pid: int


@dataclass(frozen=True)
class OrthancPeer:
    ae_title: str
    dicom_port: int
    http_url: str
    pid: int

    def instances(self) -> list[str]:
        """SOP Instance UIDs of every instance Orthanc holds, sorted."""
        found = _get_json(f"{self.http_url}/instances?expand", timeout=10)
        return sorted(item["MainDicomTags"]["SOPInstanceUID"] for item in found)


@contextmanager
def run_storescp(
    out_dir: Path, ae_title: str = "ARCHIVE", extra_args: Sequence[str] = ()
) -> Iterator[StoreScp]:
    """DCMTK storescp writing what it receives into `out_dir`, one file per instance.

    By default it accepts uncompressed transfer syntaxes only (its `+x=`); pass
    `extra_args=["+xa"]` to accept compressed ones too.
    """
    if STORESCP is None:
        pytest.skip("DCMTK storescp not installed")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK reads it for every socket it opens
    with _log_file("storescp") as log_path:
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            command = [STORESCP, "-aet", ae_title, "-od", str(out_dir), *extra_args, str(port)]
            process = _start(command, log_path, env)
            if wait_for_port(process, port, seconds=10):
                break
            _stop(process)
        else:
            raise RuntimeError(f"storescp did not start: {_tail(log_path)}")
        try:
            yield StoreScp(port, process.pid)
        finally:
            _stop(process)


@contextmanager
def run_orthanc(
    tmp_path: Path,
    ae_title: str = "ORTHANC",
    check_called_aet: bool = False,
    *,
    folder: str = "orthanc",
    settings: dict[str, Any] | None = None,
) -> Iterator[OrthancPeer]:
    """Orthanc with its storage under `tmp_path / folder`, no plugins, no authentication,
    loopback REST API, accepting every transfer syntax; `check_called_aet` makes it reject
    associations addressed to another AE title; `settings` are added to its configuration
    (e.g. DicomModalities, DICOM TLS)."""
    if ORTHANC is None:
        pytest.skip("Orthanc not installed (apt-get install orthanc)")
    root = Path(tmp_path) / folder
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "orthanc.log"
    for _ in range(_START_ATTEMPTS):
        dicom_port, http_port = free_port(), free_port()
        config = {
            "Name": "gateway-tests",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "Plugins": [],
            "HttpServerEnabled": True,
            "HttpPort": http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": ae_title,
            "DicomPort": dicom_port,
            "DicomCheckCalledAet": check_called_aet,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "AcceptedTransferSyntaxes": ["1.2.840.10008.1.*"],
            "UnknownSopClassAccepted": True,
            "SaveJobs": False,
            "StorageCompression": False,
            **(settings or {}),
        }
        config_path = root / "orthanc.json"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        process = _start([ORTHANC, str(config_path)], log_path, dict(os.environ))
        url = f"http://{LOOPBACK}:{http_port}"
        if _wait_for_http(process, f"{url}/system", seconds=20) and wait_for_port(
            process, dicom_port, seconds=5
        ):
            break
        _stop(process)
    else:
        raise RuntimeError(f"Orthanc did not start: {_tail(log_path)}")
    try:
        yield OrthancPeer(ae_title, dicom_port, url, process.pid)
    finally:
        _stop(process)


# --- process handling ------------------------------------------------------------------------


@contextmanager
def _log_file(name: str) -> Iterator[Path]:
    handle, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    os.close(handle)
    try:
        yield Path(path)
    finally:
        Path(path).unlink(missing_ok=True)


def _start(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate this one process (by its PID), then kill it if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_for_port(process: subprocess.Popen[bytes], port: int, seconds: float) -> bool:
    """True once the peer accepts a TCP connection; False if it exits or time runs out."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _wait_for_http(process: subprocess.Popen[bytes], url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.1) + 1):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        try:
            _get_json(url, timeout=1)
            return True
        except (OSError, ValueError):
            time.sleep(0.1)
    return False


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
