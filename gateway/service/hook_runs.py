"""How an after-study hook runs: a command in its own process group, or an HTTP POST.

The mechanics behind `hooks.AfterStudyHooks`, with no knowledge of the event: each run ends
in an `Outcome` (what the audit record says), never in an exception. Output is kept bounded
(the last `OUTPUT_LIMIT` bytes), a command is killed with its whole process group at its
timeout, and HTTPS is verified against the system trust store with redirects refused.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "OUTPUT_LIMIT", "Outcome", "Tail", "http_opener", "post", "run_command", "url_host", "why",
]  # fmt: skip

OUTPUT_LIMIT = 4096  # bytes of a hook's output kept for the audit record: the last ones
USER_AGENT = "dicom-gateway after-study hook"


@dataclass
class Outcome:
    """One hook run, as audited: `outcome` is succeeded, failed, timed_out, not_started,
    killed (the gateway stopped while it ran) or not_run (never started: queue full or
    the gateway stopping)."""

    outcome: str
    status: int | None = None  # exit status (negative: killed by that signal) or HTTP status
    output: str = ""
    error: str | None = None


def why(exc: BaseException) -> str:
    """An exception as a short reason: its type and OS reason, never a value it carried."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return why(reason) if isinstance(reason, BaseException) else f"URLError: {reason}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"SSLCertVerificationError: {exc.verify_message}"
    strerror = exc.strerror if isinstance(exc, OSError) else None
    return type(exc).__name__ + (f": {strerror}" if strerror else "")


class Tail:
    """The last `limit` bytes of a stream, decoded at the end."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        extra = len(self.data) - self.limit
        if extra > 0:
            del self.data[:extra]
            self.dropped += extra

    def text(self) -> str:
        text = self.data.decode("utf-8", "replace")
        # The cut may have split a character: its leftover bytes are not output.
        if self.dropped:
            head = len(text[:3]) - len(text[:3].lstrip("\ufffd"))
            text = text[head:]
        return text


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is a failure: the event goes to the configured URL or nowhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def http_opener() -> urllib.request.OpenerDirector:
    # The system trust store, hostname checked (create_default_context's defaults).
    context = ssl.create_default_context()
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects)


def url_host(url: str) -> str:
    """The URL's host (and port) for the audit: no user info, path or query string."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def run_command(
    argv: list[str], env: dict[str, str], timeout: float, stopping: Callable[[], bool]
) -> Outcome:
    """Run `argv` (no shell, stdin /dev/null, `env` only) in its own process group; kill the
    group at `timeout` seconds, when `stopping()` turns true, and when the command exits."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            close_fds=True,
            start_new_session=True,  # its own process group, killed as one
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return Outcome("not_started", error=f"cannot start: {why(exc)}")
    with proc:
        assert proc.stdout is not None
        tail = Tail()
        ended = _read_until_exit(proc, tail, time.monotonic() + timeout, stopping)
        # Whatever the command left in its group goes too; the leader is still a zombie
        # (waitid WNOWAIT), so its process group id cannot have been reused.
        _kill_group(proc.pid)
        status = proc.wait()
    output = tail.text()
    if ended == "timed_out":
        return Outcome("timed_out", status, output, f"killed after {timeout:g} s")
    if ended == "killed":
        return Outcome("killed", status, output, "the gateway stopped")
    if status == 0:
        return Outcome("succeeded", status, output)
    return Outcome("failed", status, output, f"exit status {status}")


def post(opener: urllib.request.OpenerDirector, url: str, body: bytes, timeout: float) -> Outcome:
    """POST `body` as JSON to `url`; a 2xx answer is success, anything else a failure."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    deadline = time.monotonic() + timeout
    tail = Tail()
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
            _read_body(response, tail, deadline)
    except urllib.error.HTTPError as exc:
        _read_body(exc, tail, deadline)
        return Outcome("failed", exc.code, tail.text(), f"HTTP status {exc.code}")
    except TimeoutError as exc:
        return Outcome("timed_out", None, tail.text(), why(exc))
    except (OSError, ValueError, urllib.error.URLError) as exc:
        timed_out = isinstance(getattr(exc, "reason", None), TimeoutError)
        return Outcome("timed_out" if timed_out else "failed", None, tail.text(), why(exc))
    except Exception as exc:  # http.client's protocol errors, among others
        return Outcome("failed", None, tail.text(), why(exc))
    if 200 <= status < 300:
        return Outcome("succeeded", status, tail.text())
    return Outcome("failed", status, tail.text(), f"HTTP status {status}")


def _read_body(response: object, tail: Tail, deadline: float) -> None:
    """Up to the answer's end or the deadline; only the last bytes are kept."""
    read = getattr(response, "read", None)
    if read is None:
        return
    try:
        while time.monotonic() < deadline:
            chunk = read(65536)
            if not chunk:
                return
            tail.add(chunk)
    except Exception:
        return


def _exited(pid: int) -> bool:
    """True once the process has ended, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _read_until_exit(
    proc: subprocess.Popen[bytes], tail: Tail, deadline: float, stopping: Callable[[], bool]
) -> str:
    """Collect the command's output until it exits ("exited"), the deadline ("timed_out")
    or the gateway stops ("killed"); the process is never reaped here."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    poller = select.poll()  # not select(): the gateway's descriptors may be past 1024
    poller.register(fd, select.POLLIN)
    pipe_open = True
    while True:
        if _exited(proc.pid):
            if pipe_open:
                _drain(fd, tail)
            return "exited"
        if stopping():
            return "killed"
        left = deadline - time.monotonic()
        if left <= 0:
            return "timed_out"
        wait = min(left, 0.05)
        if not pipe_open:
            time.sleep(wait)
            continue
        if poller.poll(wait * 1000):
            pipe_open = _drain(fd, tail)


def _drain(fd: int, tail: Tail, limit: int = 1 << 20) -> bool:
    """Read what is waiting (at most `limit` bytes); False at end of file."""
    taken = 0
    while taken < limit:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        tail.add(chunk)
        taken += len(chunk)
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
