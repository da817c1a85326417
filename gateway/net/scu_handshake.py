"""The forwarding SCU's handshake: TLS as pynetdicom sees it, and why an association failed.

Kept apart from `scu` (which sends) so each stays small: a `TlsWitness` keeps the socket
pynetdicom wraps so a failed handshake can say why, `Negotiation` remembers what the DUL
saw, and `association_failed` turns both into the tally's reason.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynetdicom import evt
from pynetdicom.pdu import A_ASSOCIATE_RJ

from gateway.net.outcome import Tally
from gateway.net.tls import describe_tls_failure

if TYPE_CHECKING:
    from pynetdicom.association import Association


class TlsWitness:
    """Stands in for the SSLContext in pynetdicom's `tls_args` and keeps the socket it wraps.

    pynetdicom calls only `wrap_socket(sock, server_side=False, server_hostname=...)` on it.
    When the handshake fails, pynetdicom logs the error and drops the socket; with the
    socket kept here (a `RecordingSSLSocket` from `client_context`) the RETRY can say why.
    """

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self.context = context
        self.server_hostname = server_hostname
        self.socket: ssl.SSLSocket | None = None

    def wrap_socket(
        self, sock: socket.socket, server_side: bool = False, server_hostname: str | None = None
    ) -> ssl.SSLSocket:
        # Before the handshake, so that its last flight and the A-ASSOCIATE-RQ are not held
        # back by Nagle either (see disable_nagle).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket = self.context.wrap_socket(
            sock, server_side=server_side, server_hostname=server_hostname
        )
        return self.socket

    @property
    def tls_args(self) -> tuple[ssl.SSLContext, str]:
        return self, self.server_hostname  # type: ignore[return-value]

    def failure(self) -> str:
        """Why TLS failed on this connection, or "" when it did not (or we cannot tell)."""
        exc = getattr(self.socket, "tls_failure", None)
        return describe_tls_failure(exc) if exc is not None else ""


@dataclass
class Negotiation:
    """What the DUL saw while associating. Kept from its events because pynetdicom can
    report a quick A-ASSOCIATE-RJ (peer rejects and closes at once) as a failed connection:
    its ACSE checks the socket after the DUL has already closed it."""

    connected: bool = False
    rejection: str = ""

    def on_connection_open(self, event: evt.Event) -> None:
        self.connected = True

    def on_pdu(self, event: evt.Event) -> None:
        pdu = event.pdu
        if isinstance(pdu, A_ASSOCIATE_RJ) and not self.rejection:
            # PS3.8 9.3.4: result, source and reason codes; no patient data.
            self.rejection = f"{pdu.result_str}; {pdu.source_str}; {pdu.reason_str}"


def association_failed(
    assoc: Association,
    group: list[Any],
    tally: Tally,
    seen: Negotiation,
    proposed: int,
    tls: TlsWitness | None = None,
) -> None:
    tls_failure = tls.failure() if tls is not None else ""
    if tls_failure:
        # A configuration matter on one side or the other; retried like any refusal, so
        # that fixing the certificate is enough for the study to go out.
        tally.retry_reason = f"TLS with the destination failed: {tls_failure}"
    elif seen.rejection:
        tally.retry_reason = f"association rejected ({seen.rejection})"
    elif not seen.connected:
        tally.retry_reason = "no connection (refused, unreachable or timed out)"
    elif assoc.rejected_contexts and not assoc.accepted_contexts:
        # The peer takes none of these SOP classes in any syntax we can produce.
        tally.fail(f"peer accepted none of {proposed} presentation contexts", len(group))
    else:
        tally.retry_reason = "association aborted or timed out during negotiation"
