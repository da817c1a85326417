"""pynetdicom's association server where the SCP needs it changed: the accept loop and the drain.

Like `pynetdicom_patches`, this reaches past pynetdicom's public API (its server's socketserver
hooks, the AE's list of servers, an association's DUL state and queue), so it is written for
the pynetdicom series pinned in pyproject.toml. The SCP's policy — which addresses to admit,
what to log, what to count — stays in `scp.py` and comes in as callables.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pynetdicom.transport import ThreadedAssociationServer

if TYPE_CHECKING:
    from pynetdicom import AE
    from pynetdicom.association import Association

__all__ = [
    "GatewayAssociationServer",
    "awaiting_association_request",
    "drop_idle_connection",
    "serve_in_background",
]

# Whether a client at this address may connect at all (before any TLS or DICOM).
AdmitAddress = Callable[[Any], bool]
# A failed TLS handshake: (client address, the exception, whether the server is stopping).
TlsRefused = Callable[[Any, Exception, bool], None]


def serve_in_background(ae: AE, server: ThreadedAssociationServer, name: str) -> threading.Thread:
    """What `AE.start_server(block=False)` does, for a server built with `AE.make_server`.

    `start_server` takes no server class; `AssociationServer.shutdown()` removes the server
    from the AE's private `_servers` list (and `AE.shutdown()` walks it), so it must be there.
    """
    ae._servers.append(server)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return thread


class GatewayAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the TLS handshake moved off the accept loop and an
    address check in front of it.

    pynetdicom (3.0.4) wraps each accepted socket in `get_request`, on the one thread that
    accepts connections, so the handshake runs there: a client that connects and sends
    nothing stalls every other sender, and a failed handshake is an OSError that
    socketserver drops without a word. Here `get_request` only accepts, `verify_request`
    asks `admit` (before any TLS or DICOM), and the handshake runs in the connection's own
    thread, bounded by `handshake_timeout`, with `on_tls_refused` told when it fails. The
    server keeps serving either way.

    Every accepted socket gets `stalled_pdu_seconds` as its timeout: a peer that stops in
    the middle of a PDU leaves pynetdicom's reader in a blocking recv that no ACSE or network
    timeout reaches, holding its thread and its slot under max_associations forever.
    """

    def __init__(
        self,
        *args: Any,
        stalled_pdu_seconds: float,
        handshake_timeout: float,
        admit: AdmitAddress | None = None,
        on_tls_refused: TlsRefused | None = None,
        **kwargs: Any,
    ) -> None:
        self.stalled_pdu_seconds = stalled_pdu_seconds
        self.handshake_timeout = handshake_timeout
        self.admit = admit
        self.on_tls_refused = on_tls_refused
        self._handshakes: set[ssl.SSLSocket] = set()
        self._handshakes_lock = threading.Lock()
        self._closing = False
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client_socket, address = self.socket.accept()
        client_socket.settimeout(self.stalled_pdu_seconds)  # only a read mid-PDU waits on it
        return client_socket, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # socketserver closes the socket when this returns False.
        return self.admit is None or self.admit(client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            secured = self._handshake(request, client_address)
            if secured is None:
                return
            request = secured
        super().process_request_thread(request, client_address)

    def _handshake(self, raw: socket.socket, client_address: Any) -> ssl.SSLSocket | None:
        """The server side of the TLS handshake; None (connection closed) when it fails."""
        assert self.ssl_context is not None
        tls: ssl.SSLSocket | None = None
        try:
            raw.settimeout(self.handshake_timeout)
            tls = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            with self._handshakes_lock:
                stopping = self._closing
                if not stopping:
                    self._handshakes.add(tls)
            if stopping:
                _close_quietly(tls)
                return None
            try:
                tls.do_handshake()
            finally:
                with self._handshakes_lock:
                    self._handshakes.discard(tls)
            # The same bound as a plain connection's (see stalled_pdu_seconds).
            tls.settimeout(self.stalled_pdu_seconds)
            return tls
        except (OSError, ValueError) as exc:
            _close_quietly(tls if tls is not None else raw)
            if self.on_tls_refused is not None:
                # Stopping: server_close() cut it, which is not the peer's doing.
                self.on_tls_refused(client_address, exc, self._closing)
            return None

    def server_close(self) -> None:
        """Also cut handshakes in progress: the base class joins connection threads, and a
        silent client would hold the SCP's stop for the whole handshake timeout."""
        with self._handshakes_lock:
            self._closing = True
            pending = list(self._handshakes)
        for tls in pending:
            # The plain socket's shutdown: SSLSocket.shutdown would drop the SSL object under
            # the thread that is handshaking on it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(tls, socket.SHUT_RDWR)
        super().server_close()


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def awaiting_association_request(assoc: Association) -> bool:
    """Connected but no A-ASSOCIATE-RQ yet (PS3.8 9.2 state Sta2): a load-balancer probe,
    a port scan, or a sender about to start. There is nothing in flight to wait for."""
    return bool(assoc.dul.state_machine.current_state == "Sta2")


def drop_idle_connection(assoc: Association) -> None:
    """Close a connection that never asked for an association, without waiting for it.

    pynetdicom would hold it until its ACSE timeout (30 s) ran out; a drain must not.
    """
    try:
        sock = assoc.dul.socket.socket if assoc.dul.socket is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer
    # The acceptor's reactor is blocked waiting for the A-ASSOCIATE-RQ; None is what it gets
    # when that wait times out, after which it closes the connection and ends the thread.
    assoc.dul.to_user_queue.put(None)
