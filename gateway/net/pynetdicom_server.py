"""pynetdicom's association server where the SCP needs it changed: the accept loop, a cap on
connections per source address, and the drain.

Like `pynetdicom_patches`, this reaches past pynetdicom's public API (its server's socketserver
hooks, the AE's list of servers, an association's DUL state and queue), so it is written for
the pynetdicom series pinned in pyproject.toml. The SCP's policy — which addresses to admit,
what to log, what to count — stays in `scp.py` and comes in as callables.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

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
# How long `shutdown()` may wait for the accept loop to look (socketserver's default, 0.5 s,
# is added to every SIGTERM drain and to every restart of the service).
SHUTDOWN_POLL_SECONDS = 0.05
# A connection refused because its source address already holds this many.
SourceFull = Callable[[Any, int], None]


def serve_in_background(ae: AE, server: ThreadedAssociationServer, name: str) -> threading.Thread:
    """What `AE.start_server(block=False)` does, for a server built with `AE.make_server`.

    `start_server` takes no server class; `AssociationServer.shutdown()` removes the server
    from the AE's private `_servers` list (and `AE.shutdown()` walks it), so it must be there.
    """
    ae._servers.append(server)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
        name=name,
        daemon=True,
    )
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

    With `per_source_limit`, a source address holding that many connections (from accept
    until their association thread ends) has further ones closed at accept, before any TLS
    or DICOM, and `on_source_full` is told: one sender cannot take every slot.
    """

    def __init__(
        self,
        *args: Any,
        stalled_pdu_seconds: float,
        handshake_timeout: float,
        admit: AdmitAddress | None = None,
        on_tls_refused: TlsRefused | None = None,
        per_source_limit: int | None = None,
        on_source_full: SourceFull | None = None,
        **kwargs: Any,
    ) -> None:
        self.stalled_pdu_seconds = stalled_pdu_seconds
        self.handshake_timeout = handshake_timeout
        self.admit = admit
        self.on_tls_refused = on_tls_refused
        self.per_source_limit = per_source_limit
        self.on_source_full = on_source_full
        self._handshakes: set[ssl.SSLSocket] = set()
        self._handshakes_lock = threading.Lock()
        self._closing = False
        self._sources: dict[str, list[_Connection]] = {}
        self._accepted: dict[Any, _Connection] = {}  # request socket -> its connection
        self._sources_lock = threading.Lock()
        self._thread_connection = threading.local()  # for _CountingRequestHandler
        kwargs.setdefault("request_handler", _CountingRequestHandler)
        super().__init__(*args, **kwargs)

    def service_actions(self) -> None:
        """Nothing: pynetdicom's runs a full `gc.collect()` every 60 turns of the accept
        loop (every 3 s here), holding the interpreter lock from the threads answering
        senders for as long as the heap takes to walk (3.5% of the service's busy samples
        while 2,000 instances streamed through). Python's own collector finds the cycles a
        finished association leaves."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client_socket, address = self.socket.accept()
        client_socket.settimeout(self.stalled_pdu_seconds)  # only a read mid-PDU waits on it
        return client_socket, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # socketserver closes the socket when this returns False.
        return self.admit is None or self.admit(client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count the connection against its source (on the accept thread), or close it."""
        connection = self._count_connection(client_address)
        if connection is None:
            self.shutdown_request(request)
            return
        with self._sources_lock:
            self._accepted[request] = connection
        try:
            super().process_request(request, client_address)  # starts the thread
        except BaseException:
            connection.done = True
            with self._sources_lock:
                self._accepted.pop(request, None)
            raise

    def _count_connection(self, client_address: Any) -> _Connection | None:
        limit = self.per_source_limit
        source = _source(client_address)
        with self._sources_lock:
            live = {key: kept for key, held in self._sources.items() if (kept := _open(held))}
            held = live.setdefault(source, [])
            self._sources = live
            if limit is not None and len(held) >= limit:
                refused = True
            else:
                refused = False
                held.append(connection := _Connection())
        if refused:
            if self.on_source_full is not None and limit is not None:
                self.on_source_full(client_address, limit)
            return None
        return connection

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._sources_lock:
            connection = self._accepted.pop(request, None)
        self._thread_connection.current = connection
        try:
            if self.ssl_context is not None:
                secured = self._handshake(request, client_address)
                if secured is None:
                    return
                request = secured
            super().process_request_thread(request, client_address)
        finally:
            self._thread_connection.current = None
            if connection is not None and (
                connection.assoc is None or connection.assoc.ident is None
            ):
                connection.done = True  # no association thread was started for it

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


class _Connection:
    """An accepted connection, open until its association thread (if it got one) ends."""

    __slots__ = ("assoc", "done")

    def __init__(self) -> None:
        self.assoc: Association | None = None
        self.done = False

    def is_open(self) -> bool:
        assoc = self.assoc
        return not self.done and (assoc is None or assoc.ident is None or assoc.is_alive())


def _open(connections: list[_Connection]) -> list[_Connection]:
    return [connection for connection in connections if connection.is_open()]


class _CountingRequestHandler(RequestHandler):
    """pynetdicom's request handler, telling the accepted connection its association, whose
    thread then decides how long the connection counts against its source."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        server = self.server
        if isinstance(server, GatewayAssociationServer):
            connection = getattr(server._thread_connection, "current", None)
            if connection is not None:
                connection.assoc = assoc
        return assoc


def _source(client_address: Any) -> str:
    """The address a connection counts against; an IPv4 client of a dual-stack socket
    (::ffff:a.b.c.d) counts as a.b.c.d."""
    host = str(client_address[0]) if isinstance(client_address, tuple) else str(client_address)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


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
