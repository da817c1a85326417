"""Helpers of the after-study hook tests: events, hook scripts, a real HTTP server."""

from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.schema import AfterStudyHook
from gateway.service.hooks import AUDIT_EVENT, AfterStudyHooks, StudyForwarded
from gateway.stores.audit import AuditLog

ROOT = Path(__file__).resolve().parents[1]
UID = "2.25.123456789012345678901234567890"
EVENT_FIELDS = {
    "pseudo_study_uids", "study_hash", "round", "instances_out", "instances_quarantined",
    "destination", "result", "report",
}  # fmt: skip
HOOK_FIELDS = {"hook", "target", "outcome", "seconds", "output", "error"}


def event(round_id: int = 7, **changes: Any) -> StudyForwarded:
    values: dict[str, Any] = {
        "pseudo_study_uids": (UID,),
        "study_hash": "0123456789abcdef",
        "round": round_id,
        "instances_out": 12,
        "instances_quarantined": 1,
        "destination": "default",
        "result": "forwarded",
        "report": None,
    }
    return StudyForwarded(**{**values, **changes})


def python_hook(tmp_path: Path, code: str, name: str = "hook.py") -> tuple[str, ...]:
    script = tmp_path / name
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return (sys.executable, str(script))


def records(audit: AuditLog) -> list[dict[str, Any]]:
    if not audit.path.exists():
        return []
    lines = audit.path.read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == AUDIT_EVENT]


def run_hooks(
    config: AfterStudyHook, tmp_path: Path, *events: StudyForwarded, wait: float = 20.0
) -> list[dict[str, Any]]:
    """Give the events to the hooks, wait for them to finish, return the audit records."""
    audit = AuditLog(tmp_path / "audit.jsonl")
    hooks = AfterStudyHooks(config, audit)
    for item in events or (event(),):
        hooks.study_forwarded(item)
    hooks.shutdown(wait)
    return records(audit)


def gone(pid: int, within: float = 5.0) -> bool:
    """True once the process has ended (a zombie counts as ended), waiting up to `within` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (ProcessLookupError, FileNotFoundError):
            return True
        if stat.split(") ", 1)[1][:1] == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"linked"
    hold: threading.Event = field(default_factory=threading.Event)  # set: answer at once
    headers: dict[str, str] = field(default_factory=dict)


@contextmanager
def serve(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            state.received.append(Received(self.path, dict(self.headers.items()), body))
            state.hold.wait(30)
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls else "http"
    state = Server(f"{scheme}://127.0.0.1:{server.server_address[1]}/studies")
    state.hold.set()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
