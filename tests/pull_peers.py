"""Archives to pull from, on loopback: Orthanc and DCMTK dcmqrscp, each knowing the
gateway's AE as a move destination, started on free ports and stopped by their own PIDs.

    with orthanc_source(tmp_path, {"DEID_GW": port}) as orthanc: ...
    with dcmqrscp_source(tmp_path, {"DEID_GW": port}) as archive: ...

Load them with `service_harness.storescu(archive.port, files, called_ae=archive.ae_title)`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from peers import _start, _stop, _tail, free_port, run_orthanc
from service_harness import LOOPBACK, dcmtk_env, dcmtk_tool, wait_until

DCMQRSCP = dcmtk_tool("dcmqrscp")
_ATTEMPTS = 3


@dataclass(frozen=True)
class Archive:
    ae_title: str
    port: int
    pid: int
    http_url: str = ""  # Orthanc's REST API; "" for dcmqrscp


@contextmanager
def orthanc_source(
    tmp_path: Path,
    destinations: dict[str, int],
    ae_title: str = "STAGING",
    settings: dict[str, Any] | None = None,
) -> Iterator[Archive]:
    """Orthanc whose DicomModalities hold each `destinations` AE (at 127.0.0.1:port): those
    may query it and be moved to; storing is open to all. `settings` are added to its
    configuration (e.g. DICOM TLS)."""
    modalities = {ae.lower(): [ae, LOOPBACK, port] for ae, port in destinations.items()}
    with run_orthanc(
        tmp_path,
        ae_title,
        folder=f"orthanc-{ae_title.lower()}",
        settings={"DicomModalities": modalities, **(settings or {})},
    ) as orthanc:
        yield Archive(ae_title, orthanc.dicom_port, orthanc.pid, orthanc.http_url)


@contextmanager
def dcmqrscp_source(
    tmp_path: Path, destinations: dict[str, int], ae_title: str = "DCMQR"
) -> Iterator[Archive]:
    """dcmqrscp (forking: its single-process mode crashes after an association as root in
    DCMTK 3.6.7) with one storage area open to any peer, and `destinations` in its
    HostTable as move destinations."""
    if DCMQRSCP is None:
        pytest.skip("DCMTK dcmqrscp not installed")
    root = Path(tmp_path) / "dcmqrscp"
    database = root / "db"
    shutil.rmtree(root, ignore_errors=True)
    database.mkdir(parents=True)
    hosts = "\n".join(
        f"peer{n} = ({ae}, {LOOPBACK}, {port})" for n, (ae, port) in enumerate(destinations.items())
    )
    log_path = root / "dcmqrscp.log"
    for _ in range(_ATTEMPTS):
        port = free_port()
        config = root / "dcmqrscp.cfg"
        config.write_text(
            f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
            f"HostTable BEGIN\n{hosts}\nHostTable END\n"
            "VendorTable BEGIN\nVendorTable END\n"
            f"AETable BEGIN\n{ae_title} {database} RW (200, 1024mb) ANY\nAETable END\n",
            encoding="utf-8",
        )
        process = _start([DCMQRSCP, "-c", str(config)], log_path, dcmtk_env())
        # A C-ECHO, not a bare connect: dcmqrscp logs an error for a connection without
        # an association request.
        with suppress(AssertionError):
            wait_until(
                lambda p=process, q=port: (
                    p.poll() is not None or echoscu_to(q, ae_title).returncode == 0
                ),
                timeout=10,
                what="dcmqrscp to answer a C-ECHO",
                interval=0.1,
            )
        if process.poll() is None and echoscu_to(port, ae_title).returncode == 0:
            break
        _stop(process)
    else:
        raise RuntimeError(f"dcmqrscp did not start: {_tail(log_path)}")
    try:
        yield Archive(ae_title, port, process.pid)
    finally:
        _stop(process)


def echoscu_to(port: int, called_ae: str) -> subprocess.CompletedProcess[str]:
    """echoscu to any AE (service_harness.echoscu calls the gateway's)."""
    command = [dcmtk_tool("echoscu") or "echoscu", "-aec", called_ae, LOOPBACK, str(port)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=10, env=dcmtk_env(), check=False
    )
