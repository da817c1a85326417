"""HAProxy on loopback, configured from the shipped deploy/haproxy/haproxy.cfg.

    config = proxy_config(SHIPPED.read_text(), front_port, [(dicom_port, http_port), ...], sock)
    with run_haproxy(config, tmp_path) as proxy: proxy.server_states()

The test configuration is the shipped file with only what differs on a test machine
replaced: its `global` section (no chroot, user or daemon; a stats socket in the test's
folder; the log on standard output) and the addresses marked CHANGE (the front, the
senders allowed, one `server` line per gateway). Timeouts, health checks, balancing,
retries and limits are the shipped ones, so the tests exercise what an administrator
installs. HAProxy runs in the foreground (`-db`) and is stopped by its own PID.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from service_harness import LOOPBACK, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)
BACKEND = "dicom_gateways"

_GLOBAL = re.compile(r"^global\n(?:[ \t]+.*\n|[ \t]*#.*\n)*", re.M)
_BIND = re.compile(r"^([ \t]+bind )\S+", re.M)
_SENDERS = re.compile(r"^([ \t]+acl dicom_senders src )[^#\n]+", re.M)
_SERVER = re.compile(r"^[ \t]+server (gw\d+) \S+ check port \d+.*$", re.M)


def proxy_config(
    shipped: str, front_port: int, gateways: Sequence[tuple[int, int]], stats_socket: Path
) -> str:
    """The shipped configuration for this machine: HAProxy on `front_port`, gateway N at
    `gateways[N-1]` = (DICOM port, HTTP port), all on 127.0.0.1."""
    test_global = (
        "global\n"
        "    log stdout format raw local0\n"
        f"    stats socket {stats_socket} mode 600 level admin\n"
        "    maxconn 200\n"
    )
    text, found = _GLOBAL.subn(test_global, shipped, count=1)
    assert found == 1, "the shipped haproxy.cfg has no global section"
    text, found = _BIND.subn(rf"\g<1>{LOOPBACK}:{front_port}", text)
    assert found == 1, "the shipped haproxy.cfg should bind exactly one front address"
    text, found = _SENDERS.subn(rf"\g<1>{LOOPBACK}/32 ", text)
    assert found == 1, "the shipped haproxy.cfg should name the senders in one acl"
    servers = _SERVER.findall(text)
    assert servers == [f"gw{n}" for n in range(1, len(servers) + 1)], servers
    lines = [
        f"    server gw{n} {LOOPBACK}:{dicom} check port {http}"
        for n, (dicom, http) in enumerate(gateways, start=1)
    ]
    first = _SERVER.search(text)
    assert first is not None
    text = _SERVER.sub("", text)
    text = text[: first.start()] + "\n".join(lines) + text[first.start() :]
    return re.sub(r"\n{3,}", "\n\n", text)


@dataclass
class HAProxy:
    """A running haproxy: its front port, stats socket and log (its standard output)."""

    process: subprocess.Popen[bytes]
    front_port: int
    stats_socket: Path
    log_path: Path

    def command(self, line: str, timeout: float = 5.0) -> str:
        """One command on the admin socket, as `socat stdio /run/haproxy/admin.sock` sends it."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode("ascii") + b"\n")
            chunks = []
            for _ in range(10_000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def answers(self) -> bool:
        """Whether the admin socket is up and lists the gateways' servers."""
        try:
            return bool(self.server_stats())
        except OSError:  # not bound yet (or a stale socket file of an earlier run)
            return False

    def server_stats(self) -> dict[str, dict[str, str]]:
        """{server: its `show stat` row} for the gateways' backend (status, check_status,
        check_code, ...)."""
        lines = self.command("show stat").splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        header = lines[0][2:].split(",")
        rows: dict[str, dict[str, str]] = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND", None):
                rows[row["svname"]] = row
        return rows

    def server_states(self) -> dict[str, str]:
        """{server: status}: "UP", "DOWN", "DRAIN", "MAINT", "UP 1/2" while rising, ..."""
        return {name: row.get("status", "") for name, row in self.server_stats().items()}

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def servers_used(self) -> list[str]:
        """The gateway each finished connection went to, in order, from the tcplog lines
        (`... dicom dicom_gateways/gw1 ...`)."""
        return re.findall(rf" {BACKEND}/(gw\d+) ", self.log())


@contextmanager
def run_haproxy(
    config: str, folder: Path, front_port: int, stats_socket: Path
) -> Iterator[HAProxy]:
    """`haproxy -db -f FILE` in the foreground; returns once the admin socket answers and
    the front port listens; stopped by its PID."""
    assert HAPROXY is not None, "haproxy not installed (apt-get install haproxy)"
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "haproxy.cfg"
    config_path.write_text(config, encoding="utf-8")
    checked = subprocess.run(
        [HAPROXY, "-c", "-q", "-f", str(config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log_path = folder / "haproxy.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(config_path)],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proxy = HAProxy(process, front_port, stats_socket, log_path)
    try:
        # The socket, not the front port: a bare connection to the front would be passed
        # on to a gateway as an association that never sends anything.
        wait_until(
            lambda: process.poll() is not None or proxy.answers(),
            timeout=10,
            what="haproxy's admin socket",
        )
        assert process.poll() is None, proxy.log()
        assert listening(front_port), "haproxy does not listen on its front port"
        yield proxy
    except BaseException:
        print(f"--- haproxy log, last lines ({log_path}) ---")
        print("\n".join(proxy.log().splitlines()[-60:]))
        raise
    finally:
        stop_process(process, timeout=10)


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port`, read from /proc/net/tcp (state 0A,
    LISTEN) rather than by connecting, which HAProxy would pass on to a gateway."""
    try:
        rows = Path("/proc/net/tcp").read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return True  # not Linux: the admin socket answering has to do
    wanted = f"0100007F:{port:04X}"
    return any(
        len(fields) > 3 and fields[1] == wanted and fields[3] == "0A"
        for fields in (row.split() for row in rows)
    )
