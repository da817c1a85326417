"""sd_notify: the datagrams systemd would receive, caught on a real AF_UNIX socket."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.service.gateway_service import sdnotify

ROOT = Path(__file__).resolve().parents[1]


class NotifyReceiver:
    """What systemd does with $NOTIFY_SOCKET: a bound datagram socket, read one message at
    a time."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name

    def receive(self) -> str:
        return self.sock.recv(4096).decode("utf-8")

    def nothing_waiting(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)
        return False


def _short_socket_path(tmp_path: Path) -> Path:
    # sun_path holds 108 bytes; a --basetemp deep in a build tree could exceed it.
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) < 100:
        return path
    return Path(tempfile.mkdtemp(prefix="sdnotify-")) / "notify.sock"


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyReceiver]:
    path = _short_socket_path(tmp_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.fspath(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", os.fspath(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield NotifyReceiver(sock, os.fspath(path))
    finally:
        sock.close()
        path.unlink(missing_ok=True)


@pytest.fixture
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


def test_ready_tells_systemd_that_start_up_is_complete(receiver: NotifyReceiver) -> None:
    assert sdnotify.ready() is True
    assert receiver.receive() == "READY=1"


def test_life_cycle_messages_arrive_in_order(receiver: NotifyReceiver) -> None:
    assert sdnotify.status("listening on 0.0.0.0:11112")
    assert sdnotify.ready()
    assert sdnotify.watchdog_ping()
    assert sdnotify.stopping()
    assert sdnotify.extend_timeout(12.5)
    assert [receiver.receive() for _ in range(5)] == [
        "STATUS=listening on 0.0.0.0:11112",
        "READY=1",
        "WATCHDOG=1",
        "STOPPING=1",
        "EXTEND_TIMEOUT_USEC=12500000",
    ]


def test_status_text_cannot_smuggle_in_another_assignment(receiver: NotifyReceiver) -> None:
    sdnotify.status("draining\nREADY=1\r\nWATCHDOG=trigger")
    assert receiver.receive() == "STATUS=draining READY=1 WATCHDOG=trigger"


def test_several_assignments_go_in_one_datagram(receiver: NotifyReceiver) -> None:
    assert sdnotify.notify("READY=1\nSTATUS=running")
    assert receiver.receive() == "READY=1\nSTATUS=running"
    assert receiver.nothing_waiting()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux")
def test_abstract_namespace_socket_is_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"dicom-gateway-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.ready()
        assert sock.recv(4096) == b"READY=1"


def test_without_notify_socket_every_call_is_a_silent_no_op(
    no_systemd: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="gateway.service.sdnotify"):
        assert sdnotify.ready() is False
        assert sdnotify.stopping() is False
        assert sdnotify.status("x") is False
        assert sdnotify.watchdog_ping() is False
        assert sdnotify.watchdog_interval() is None
        assert sdnotify.Watchdog().ping_if_due() is False
    assert caplog.records == []


def test_a_vanished_socket_is_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", os.fspath(_short_socket_path(tmp_path)))
    with caplog.at_level(logging.WARNING, logger="gateway.service.sdnotify"):
        assert sdnotify.ready() is False
    assert "cannot notify systemd (READY)" in caplog.text


def test_a_socket_kind_we_do_not_speak_is_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    with caplog.at_level(logging.WARNING, logger="gateway.service.sdnotify"):
        assert sdnotify.ready() is False
    assert "not an AF_UNIX socket" in caplog.text


def test_a_child_process_started_by_systemd_reaches_the_socket(
    receiver: NotifyReceiver,
) -> None:
    """The environment is all the module needs: what `dicom-gateway run` sees under systemd."""
    code = "from gateway.service import sdnotify; raise SystemExit(0 if sdnotify.ready() else 1)"
    env = {**os.environ, "NOTIFY_SOCKET": receiver.name}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=60)
    assert receiver.receive() == "READY=1"


# -- the watchdog -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("1500000", "self", 1.5),
        ("30000000", "other", None),  # a worker process that inherited the environment
        ("0", None, None),
        ("-5", None, None),
        ("thirty", None, None),
        ("30000000", "not-a-pid", None),
        ("", None, None),
    ],
)
def test_watchdog_interval_comes_from_watchdog_usec_for_the_main_process_only(
    monkeypatch: pytest.MonkeyPatch, usec: str, pid: str | None, expected: float | None
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is None:
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
    else:
        value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(pid, pid)
        monkeypatch.setenv("WATCHDOG_PID", value)
    assert sdnotify.watchdog_interval() == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_watchdog_pings_at_half_the_interval(receiver: NotifyReceiver) -> None:
    clock = FakeClock()
    watchdog = sdnotify.Watchdog(interval=30.0, clock=clock)
    assert watchdog.enabled and watchdog.period == 15.0
    sent = []
    for step in range(0, 61):  # the main loop wakes once a second for a minute
        clock.now = 1000.0 + step
        sent.append(watchdog.ping_if_due())
    assert [step for step, ping in enumerate(sent) if ping] == [0, 15, 30, 45, 60]
    assert [receiver.receive() for _ in range(5)] == ["WATCHDOG=1"] * 5
    assert receiver.nothing_waiting()


def test_watchdog_reads_its_interval_from_the_environment(
    receiver: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    watchdog = sdnotify.Watchdog()
    assert watchdog.interval == 30.0
    assert watchdog.ping_if_due()
    assert receiver.receive() == "WATCHDOG=1"


def test_watchdog_without_watchdog_sec_never_pings(receiver: NotifyReceiver) -> None:
    watchdog = sdnotify.Watchdog()
    assert not watchdog.enabled
    assert watchdog.period is None
    assert watchdog.ping_if_due() is False
    assert receiver.nothing_waiting()
