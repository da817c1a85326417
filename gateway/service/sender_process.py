"""The forwarding SCU in a process of its own.

Sending C-STOREs costs the sender CPU on every instance (pynetdicom builds each PDU and runs
two threads per association). In the receiving process that work competed for the
interpreter lock with the SCP's handlers, so a study forwarded while another arrived slowed
the reception of both. Each AE destination is therefore served by a child process, forked
at the service's start, that holds its associations (kept open per study round, as before);
the service keeps the state. A send goes to the child over a pipe, every confirmation comes
back over another and is recorded by the caller's `on_stored` as it arrives, so a retry or a
restart sends only the rest, as before.

A child that dies (killed, out of memory) ends the sends in flight with RETRY: what it had
confirmed is recorded, the rest is sent again. The next send forks a new one. The child
exits when the service does (the pipe closes) and ignores SIGINT and SIGTERM meant for the
service, which asks it to stop once its own drain is done.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from gateway.net.outcome import ForwardOutcome, ForwardResult
from gateway.service.worker_pool import drop_inherited_sockets

__all__ = ["ProcessDestination"]

log = logging.getLogger(__name__)

SENDER_THREADS = 4  # as many sends at once as the forwarding stage's threads
PARENT_WATCH_SECONDS = 0.01


class _Sender(Protocol):
    name: str

    def send(
        self, files: list[Path], on_stored: Callable[[Path], None], round_id: int | None = None
    ) -> ForwardResult: ...

    def round_done(self, round_id: int) -> None: ...

    def release_idle(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Call:
    on_stored: Callable[[Path], None]
    files: list[Path]  # the child names a stored one by its index: no Path made per reply
    done: threading.Event = field(default_factory=threading.Event)
    result: ForwardResult | None = None


@dataclass
class _Child:
    process: Any  # multiprocessing.Process (forked)
    requests: Connection  # parent -> child
    replies: Connection  # child -> parent
    calls: dict[int, _Call] = field(default_factory=dict)


class ProcessDestination:
    """A destination (`forwarding.Destination`) whose sends run in a child process."""

    def __init__(
        self,
        inner: _Sender,
        fork_guard: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        """`inner` does the sending, in the child only; `fork_guard` is held while forking
        (`Spool.held_still`: no thread of the service inside SQLite then)."""
        self.inner = inner
        self.name = inner.name
        self._fork_guard = fork_guard
        self._lock = threading.Lock()  # guards _child, its calls and writes to its pipe
        self._ids = itertools.count(1)
        self._child: _Child | None = None
        self._closed = False
        self.start()

    def start(self) -> None:
        """Fork the child now (the service does at start, before its threads run)."""
        with self._lock:
            self._running()

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.process.pid if child is not None else None

    def send(
        self, files: list[Path], on_stored: Callable[[Path], None], round_id: int | None = None
    ) -> ForwardResult:
        call = _Call(on_stored, files)
        with self._lock:
            if self._closed:
                return ForwardResult(ForwardOutcome.RETRY, 0, 0, "the service is stopping")
            child = self._running()
            number = next(self._ids)
            child.calls[number] = call
            try:
                child.requests.send(("send", number, [str(p) for p in files], round_id))
            except OSError:
                child.calls.pop(number, None)
                return ForwardResult(ForwardOutcome.RETRY, 0, 0, "the sender process is gone")
        call.done.wait()
        assert call.result is not None
        return call.result

    def round_done(self, round_id: int) -> None:
        self._tell(("round_done", round_id))

    def release_idle(self) -> None:
        self._tell(("release_idle",))

    def close(self) -> None:
        """Ask the child to release its associations and end; wait a little for it."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(OSError):
            child.requests.send(("close",))
        child.process.join(timeout=10)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(timeout=5)
        child.requests.close()

    def _tell(self, message: tuple[object, ...]) -> None:
        with self._lock:
            child = self._child
            if child is None or self._closed:
                return
            with contextlib.suppress(OSError):
                child.requests.send(message)

    def _running(self) -> _Child:
        """The live child, forked anew if there is none (called under `_lock`)."""
        child = self._child
        if child is not None and child.process.is_alive():
            return child
        context = multiprocessing.get_context("fork")
        from_parent, to_child = context.Pipe(duplex=False)
        from_child, to_parent = context.Pipe(duplex=False)
        process = context.Process(
            target=_serve,
            args=(self.inner, from_parent, to_parent, (to_child, from_child)),
            name=f"sender {self.name}",
            daemon=True,
        )
        with self._fork_guard():
            process.start()
        from_parent.close()
        to_parent.close()
        child = _Child(process, to_child, from_child)
        self._child = child
        threading.Thread(
            target=self._read_replies, args=(child,), name="sender-replies", daemon=True
        ).start()
        log.info("forwarding to %s from process %d", self.name, process.pid)
        return child

    def _read_replies(self, child: _Child) -> None:
        """Dispatch the child's replies until its pipe closes; then end what it left."""
        try:
            while True:
                kind, number, payload = child.replies.recv()
                with self._lock:
                    call = child.calls.get(number)
                if call is None:
                    continue
                if kind == "stored":
                    try:
                        call.on_stored(call.files[payload])
                    except Exception:
                        log.exception("recording a confirmed instance failed")
                else:
                    outcome, sent, failed, message = payload
                    call.result = ForwardResult(ForwardOutcome(outcome), sent, failed, message)
                    with self._lock:
                        child.calls.pop(number, None)
                    call.done.set()
        except (EOFError, OSError):
            pass
        with self._lock:
            left, child.calls = dict(child.calls), {}
        if left and not self._closed:
            log.error("the sender process for %s ended with %d sends in flight; they are "
                      "retried", self.name, len(left))  # fmt: skip
        for call in left.values():
            call.result = ForwardResult(
                ForwardOutcome.RETRY, 0, 0, "the sender process ended mid-send"
            )
            call.done.set()
        child.replies.close()


def _exit_with(parent: int) -> None:
    """End the sender the moment the service dies (a crash, SIGKILL): what it would go on
    sending could not be recorded as confirmed, and would be sent again after the restart.
    The pipe's end-of-file can come later: worker processes forked after this one hold
    copies of its ends until they notice the death themselves."""
    while os.getppid() == parent:
        time.sleep(PARENT_WATCH_SECONDS)
    os._exit(0)


def _serve(
    inner: _Sender, requests: Connection, replies: Connection, parents: tuple[Connection, ...]
) -> None:
    """The child: run the parent's requests until it asks to close or goes away."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    for end in parents:  # the parent's ends, copied by fork: else no end-of-file ever comes
        end.close()
    drop_inherited_sockets()  # the SCP's listening socket stays the service's alone
    threading.Thread(
        target=_exit_with, args=(os.getppid(),), name="parent-watch", daemon=True
    ).start()
    lock = threading.Lock()

    def reply(message: tuple[object, ...]) -> None:
        try:
            with lock:
                replies.send(message)
        except OSError:
            os._exit(0)  # the service is gone: nothing it could record, nothing more to send

    def send(number: int, files: list[str], round_id: int | None) -> None:
        paths = [Path(f) for f in files]
        index = {path: at for at, path in enumerate(paths)}
        try:
            result = inner.send(paths, lambda p: reply(("stored", number, index[p])), round_id)
        except Exception as exc:  # the parent must hear back whatever happened
            log.exception("sending failed")
            result = ForwardResult(ForwardOutcome.RETRY, 0, 0, f"sender: {type(exc).__name__}")
        reply(("done", number, (result.outcome.value, result.sent, result.failed,
                                result.message)))  # fmt: skip

    threads = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="sender")
    try:
        while True:
            try:
                message = requests.recv()
            except (EOFError, OSError):
                os._exit(0)  # the service is gone; what was in flight is sent again later
            if message[0] == "send":
                threads.submit(send, *message[1:])
            elif message[0] == "round_done":
                inner.round_done(message[1])
            elif message[0] == "release_idle":
                inner.release_idle()
            elif message[0] == "close":
                break
    finally:
        threads.shutdown(wait=True)
        inner.close()
    os._exit(0)
