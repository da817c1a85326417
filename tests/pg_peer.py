"""A real PostgreSQL for tests: a throwaway cluster (Debian `postgresql`) on loopback.

`run_postgres(folder)` runs initdb and postgres as the unprivileged `postgres` user (both
refuse root) in a fresh temporary folder (its log is copied to `folder`), listening on
127.0.0.1 only on a free port, its unix socket in that folder too; it yields a `Postgres`
with a URL for a password-protected role that owns one database. The server is stopped
by its PID (SIGINT: fast shutdown, then SIGKILL after a bounded wait). Pytest skips where
the binaries or the user are missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
ROLE, PASSWORD, DATABASE = "gateway", "pg-test-password-7Qx", "mapping"
_START_SECONDS = 60  # a loaded CI machine
_STOP_SECONDS = 20


def _bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server binaries (/usr/lib/postgresql/N/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclass
class Postgres:
    """A running cluster: `url` is the role's URL (with its password), `pid` the server's."""

    url: str
    pid: int
    port: int
    data_dir: Path
    socket_dir: Path
    log_path: Path
    bin_dir: Path
    user: str = ROLE
    password: str = PASSWORD
    database: str = DATABASE

    def url_with(self, *, user: str | None = None, password: str | None = None,
                 port: int | None = None, database: str | None = None) -> str:  # fmt: skip
        """The URL with some parts changed (a wrong password, a closed port)."""
        return (
            f"postgresql://{user or self.user}:{password or self.password}@{LOOPBACK}:"
            f"{port or self.port}/{database or self.database}"
        )

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser over the unix socket; its output (tuples only)."""
        result = _as_postgres(
            [str(self.bin_dir / "psql"), "-X", "-q", "-At", "-h", str(self.socket_dir),
             "-p", str(self.port), "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
        )  # fmt: skip
        return result.stdout

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{self.pid}").is_dir() and _state(self.pid) != "Z"

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), SIGKILL after a bounded wait."""
        _stop(self.pid)

    def start_again(self) -> None:
        """Start the same cluster on the same port (after `stop`)."""
        self.pid = _start_server(self.bin_dir, self.data_dir, self.port, self.socket_dir,
                                 self.log_path)  # fmt: skip


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def _as_postgres(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    result = subprocess.run(
        [*runner, *command], capture_output=True, text=True, timeout=180, check=False,
        stdin=subprocess.DEVNULL, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {result.stderr.strip()[-2000:]}")
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _accepting(bin_dir: Path, port: int) -> bool:
    """Whether the server takes connections (not still "starting up" after a restart)."""
    ready = subprocess.run(
        [str(bin_dir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port), "-t", "2"],
        capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return ready.returncode == 0


def _start_server(bin_dir: Path, data: Path, port: int, sockets: Path, log_path: Path) -> int:
    """postgres in the background as the `postgres` user; its PID once it accepts."""
    runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*runner, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
             "-c", f"listen_addresses={LOOPBACK}", "-c", f"unix_socket_directories={sockets}",
             "-c", "fsync=off", "-c", "max_connections=100"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + _START_SECONDS
    pid_file = data / "postmaster.pid"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited: {log_path.read_text(errors='replace')[-2000:]}")
        if pid_file.is_file() and _port_open(port) and _accepting(bin_dir, port):
            with suppress(OSError, ValueError, IndexError):
                return int(pid_file.read_text().split()[0])
        time.sleep(0.05)
    _stop(process.pid)
    raise RuntimeError(f"postgres did not start in {_START_SECONDS} s")


def _stop(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + _STOP_SECONDS
    while time.monotonic() < deadline and Path(f"/proc/{pid}").is_dir() and _state(pid) != "Z":
        time.sleep(0.05)
    if Path(f"/proc/{pid}").is_dir() and _state(pid) != "Z":
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _usable() -> Path:
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").is_file():
        pytest.skip("PostgreSQL server binaries not installed (Debian package postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no `postgres` user to run the server as")
        if shutil.which("runuser") is None:
            pytest.skip("runuser not installed")
    return bin_dir


@contextmanager
def run_postgres(folder: Path) -> Iterator[Postgres]:
    """A new cluster with role ROLE (password PASSWORD) owning DATABASE; its log is copied
    to `folder`. The cluster itself lives in a fresh folder of the system's temporary
    folder, removed afterwards: the `postgres` user must reach it, and pytest makes its own
    tree (/tmp/pytest-of-USER) owner-only again whenever another session starts."""
    bin_dir = _usable()
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Path(tempfile.mkdtemp(prefix="dicom-gateway-pg-"))
    try:
        with _cluster(bin_dir, cluster) as server:
            yield server
    finally:
        with suppress(OSError):
            shutil.copyfile(cluster / "postgres.log", folder / "postgres.log")
        shutil.rmtree(cluster, ignore_errors=True)


@contextmanager
def _cluster(bin_dir: Path, folder: Path) -> Iterator[Postgres]:
    data, sockets = folder / "pgdata", folder / "pgsocket"
    sockets.mkdir(exist_ok=True)
    log_path = folder / "postgres.log"
    log_path.touch()
    folder.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        for path in (folder, sockets, log_path):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    superuser_password = folder / "superuser-password"
    superuser_password.write_text(f"{os.urandom(12).hex()}\n", encoding="utf-8")
    if os.geteuid() == 0:
        os.chown(superuser_password, entry.pw_uid, entry.pw_gid)
    _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "--auth-host=scram-sha-256",
                  "--auth-local=trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
                  f"--pwfile={superuser_password}"], cwd=folder)  # fmt: skip
    port = 0
    pid = 0
    for _ in range(3):  # a free port can be taken before postgres binds it
        port = _free_port()
        try:
            pid = _start_server(bin_dir, data, port, sockets, log_path)
            break
        except RuntimeError:
            continue
    if not pid:
        raise RuntimeError(f"postgres did not start: {log_path.read_text(errors='replace')}")
    server = Postgres(
        url=f"postgresql://{ROLE}:{PASSWORD}@{LOOPBACK}:{port}/{DATABASE}",
        pid=pid, port=port, data_dir=data, socket_dir=sockets, log_path=log_path,
        bin_dir=bin_dir,
    )  # fmt: skip
    try:
        server.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        server.psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        yield server
    finally:
        server.stop()
