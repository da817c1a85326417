"""A DUL reactor that sleeps in select() until the peer sends or there is something to send.

pynetdicom's DUL thread polls: each turn of its loop looks at its queue of primitives to
send, at the socket (select with a timeout of 0) and at its event queue, then naps
(`_run_loop_delay`). The nap is the latency of every PDU in and out, so it was cut to 0.1 ms
(`DUL_POLL_SECONDS`); but then each open association's DUL thread woke up to 10,000 times a
second, and each wake takes the interpreter lock from the threads doing the work (the
C-STORE handler, the forwarder, the scheduler). With several senders and kept forwarding
associations that was most of the receiving process's lock traffic.

`wake_on_work` makes the look at the socket wait instead: select() on the socket and on a
pipe that is written whenever another thread queues a primitive or an event for the DUL, or
kills it; at most `WAIT_SECONDS`, so that the ARTIM timer is still seen. A PDU from the peer
or a primitive to send is then handled the moment it comes, and an idle association costs
nothing. An SSL socket with decrypted bytes already buffered is ready without a wait. The
pipe is closed with the socket; from then on the DUL polls as pynetdicom's does until its
thread ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import ssl
import threading
from typing import TYPE_CHECKING, Any

from pynetdicom.transport import AssociationSocket

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["WAIT_SECONDS", "is_waking", "wake_on_work"]

WAIT_SECONDS = 0.05


class _WakePipe:
    """The wake-up pipe; writes after `close` are dropped (its descriptors may be reused)."""

    def __init__(self) -> None:
        self.read, self._write = os.pipe()
        os.set_blocking(self.read, False)
        os.set_blocking(self._write, False)
        self._lock = threading.Lock()
        self.closed = False

    def wake(self) -> None:
        with self._lock:
            if not self.closed:
                with contextlib.suppress(OSError):  # full: a wake is pending anyway
                    os.write(self._write, b"\0")

    def drain(self) -> None:
        with self._lock:
            if not self.closed:
                with contextlib.suppress(OSError):
                    os.read(self.read, 4096)

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                for fd in (self.read, self._write):
                    with contextlib.suppress(OSError):
                        os.close(fd)


class _WakingSocket(AssociationSocket):
    """An AssociationSocket whose `ready` waits for data or for a wake-up."""

    _wake: _WakePipe

    @property
    def ready(self) -> bool:
        sock = self.socket
        if sock is None or self._is_connected is False:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        pipe = self._wake
        waits = () if pipe.closed else (pipe.read,)
        try:
            readable, _, _ = select.select([sock, *waits], [], [], WAIT_SECONDS if waits else 0)
        except (OSError, TimeoutError, ValueError):
            if pipe.closed:
                return False  # closed meanwhile (our pipe or the socket): not data
            self.event_queue.put("Evt17")  # as pynetdicom's own: the connection is gone
            return False
        if waits and pipe.read in readable:
            pipe.drain()
        return sock in readable

    def close(self) -> None:
        super().close()
        self._wake.close()


def wake_on_work(assoc: Association) -> None:
    """Make the DUL of `assoc` wait in select() (see above). Call it on EVT_CONN_OPEN."""
    dul = assoc.dul
    sock = dul.socket
    if sock is None or type(sock) is not AssociationSocket:
        return  # a socket class of another kind: leave it polling
    pipe = _WakePipe()
    sock._wake = pipe  # type: ignore[attr-defined]
    sock.__class__ = _WakingSocket
    for queue_ in (dul.to_provider_queue, dul.event_queue):
        queue_.put = _waking(queue_.put, pipe.wake)  # type: ignore[method-assign]
    kill = dul.kill_dul

    def kill_and_wake() -> None:
        kill()
        pipe.wake()

    dul.kill_dul = kill_and_wake  # type: ignore[method-assign]


def is_waking(assoc: Association) -> bool:
    """Whether `wake_on_work` applied to this association's socket."""
    return isinstance(assoc.dul.socket, _WakingSocket)


def _waking(put: Any, wake: Any) -> Any:
    def put_and_wake(item: Any, block: bool = True, timeout: float | None = None) -> None:
        put(item, block, timeout)
        wake()

    return put_and_wake
