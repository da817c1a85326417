"""The systemd notification protocol (sd_notify(3)), in the standard library only.

Under `Type=notify` systemd waits for READY=1 before it calls the unit started, and with
`WatchdogSec=` it restarts a service that stops sending WATCHDOG=1. The protocol is one
datagram of newline-separated `KEY=value` lines to the AF_UNIX socket named in
$NOTIFY_SOCKET, so it needs no python-systemd (a C extension we would have to build for
every platform). Without $NOTIFY_SOCKET (a terminal, a container, the tests) every call is
a silent no-op that returns False, so callers never need to ask whether systemd is there.

This module is a leaf: it imports nothing from the `gateway` package.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

__all__ = [
    "Watchdog",
    "extend_timeout",
    "notify",
    "ready",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_ping",
]

log = logging.getLogger(__name__)


def _socket_address(name: str) -> bytes | None:
    """The address to send to, or None for a kind of socket we do not speak.

    sd_notify(3): a name starting with '@' is in the Linux abstract namespace (the '@'
    stands for a leading NUL byte); a name starting with '/' is a file system path. systemd
    253 added `vsock:CID:PORT` for virtual machines; the gateway never runs as a VM's init,
    so that form is ignored rather than half supported.
    """
    if name.startswith("@"):
        return b"\0" + os.fsencode(name[1:])
    if name.startswith("/"):
        return os.fsencode(name)
    return None


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1", or several assignments separated by newlines).

    Returns True when the datagram was sent, False without $NOTIFY_SOCKET or when sending
    failed. A failure is logged and never raised: the service must not stop because its
    supervisor's socket is gone; if systemd does care (READY=1, WATCHDOG=1), its own
    timeouts act on the missing message and the log says why.
    """
    name = os.environ.get("NOTIFY_SOCKET")
    if not name:
        return False
    address = _socket_address(name)
    if address is None:
        log.warning("NOTIFY_SOCKET %r is not an AF_UNIX socket; not notifying systemd", name)
        return False
    # SOCK_CLOEXEC: worker processes and tools we start must not inherit the socket.
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), address)
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", state.split("=", 1)[0], exc)
        return False
    return True


def ready() -> bool:
    """READY=1: start-up is complete (listening, spool open); `systemctl start` returns."""
    return notify("READY=1")


def stopping() -> bool:
    """STOPPING=1: the service is draining, so systemd stops expecting watchdog pings and
    shows the unit as deactivating even when the stop began inside the service (SIGINT)."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """STATUS=...: a one-line state shown by `systemctl status` (never patient data).

    Line breaks are replaced by spaces: a newline would start another assignment, and a
    caller's text must not be able to send READY=1 or WATCHDOG=trigger by accident.
    """
    return notify("STATUS=" + " ".join(text.splitlines()))


def extend_timeout(seconds: float) -> bool:
    """EXTEND_TIMEOUT_USEC=...: ask for `seconds` more than the start or stop timeout.

    For a drain that is still making progress (a long forward to a slow archive) near
    TimeoutStopSec; systemd (236+) otherwise sends SIGKILL, which is safe (the spool resumes)
    but repeats the work at the next start.
    """
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds (`WatchdogSec=`), or None when none applies to us.

    systemd sets $WATCHDOG_USEC, and $WATCHDOG_PID to the main process's PID; a child that
    inherited the environment (a worker process) sees another PID and gets None, so only
    the process systemd supervises pings. The caller should ping at half this interval
    (sd_watchdog_enabled(3)), which leaves room for one late wake-up.
    """
    raw = os.environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", raw)
        return None
    if usec <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            log.warning("ignoring WATCHDOG_PID=%r: not an integer", pid)
            return None
    return usec / 1_000_000


def watchdog_ping() -> bool:
    """WATCHDOG=1: "still alive"; systemd restarts the unit when these stop coming."""
    return notify("WATCHDOG=1")


class Watchdog:
    """Pings at half the watchdog interval from the caller's own loop.

    The pings come from the loop that shows the service is alive (the main loop of
    `run_forever`), not from a thread of their own: a timer thread would keep pinging while
    the rest of the process is deadlocked, which is exactly what the watchdog is there to
    catch.
    """

    def __init__(
        self,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`interval`: the watchdog timeout in seconds; default: from the environment."""
        self.interval = watchdog_interval() if interval is None else interval
        self._clock = clock
        self._last: float | None = None

    @property
    def enabled(self) -> bool:
        """True when systemd expects pings from this process."""
        return self.interval is not None and self.interval > 0

    @property
    def period(self) -> float | None:
        """Seconds between pings (half the interval); None when disabled. A loop that waits
        for a stop event should wake at least this often."""
        return self.interval / 2 if self.enabled and self.interval is not None else None

    def ping_if_due(self) -> bool:
        """Ping when a period has passed since the last ping (or none was sent yet).

        Returns True when a ping was sent. Cheap enough to call on every loop iteration.
        """
        period = self.period
        if period is None:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < period:
            return False
        self._last = now
        return watchdog_ping()
