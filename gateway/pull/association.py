"""Opening an association to a peer (the source archive, or the running gateway), with
TCP_NODELAY on its socket as the forwarding SCU sets it, and a failure that says why."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ
from pynetdicom.presentation import PresentationContext

from gateway.net.scu import disable_nagle  # the SCU's EVT_CONN_OPEN helper

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

__all__ = ["Peer", "PullError", "associate", "echo"]

_ANY_HOST = {"0.0.0.0", "::", ""}


class PullError(Exception):
    """A runtime failure of the pull (a peer down, refusing, timing out): exit 1."""


@dataclass(frozen=True)
class Peer:
    """An AE to connect to; `what` names it in messages ("source", "gateway")."""

    what: str
    ae_title: str
    host: str
    port: int
    timeout: float
    ssl_context: ssl.SSLContext | None = None

    @property
    def address(self) -> str:
        """Where to connect: a listener on every interface is reached on loopback."""
        return "127.0.0.1" if self.host in _ANY_HOST else self.host

    def __str__(self) -> str:
        tls = " over TLS" if self.ssl_context is not None else ""
        return f"{self.what} {self.ae_title}@{self.host}:{self.port}{tls}"


class _Witness:
    """What the DUL saw: a connection, and an A-ASSOCIATE-RJ's reason (PS3.8 codes only)."""

    def __init__(self) -> None:
        self.connected = False
        self.rejection = ""

    def on_open(self, event: evt.Event) -> None:
        self.connected = True
        disable_nagle(event)

    def on_pdu(self, event: evt.Event) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RJ) and not self.rejection:
            pdu = event.pdu
            self.rejection = f"{pdu.result_str}; {pdu.source_str}; {pdu.reason_str}"


def associate(
    peer: Peer,
    calling_ae: str,
    contexts: Sequence[PresentationContext],
    *,
    roles: Sequence[SCP_SCU_RoleSelectionNegotiation] = (),
    handlers: Sequence[tuple[Any, Any]] = (),
) -> Association:
    """An established association, or PullError saying why not."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    ae.network_timeout = peer.timeout
    ae.connection_timeout = min(peer.timeout, 10.0)
    ae.requested_contexts = list(contexts)
    witness = _Witness()
    events = [(evt.EVT_CONN_OPEN, witness.on_open), (evt.EVT_PDU_RECV, witness.on_pdu)]
    tls = (peer.ssl_context, peer.host) if peer.ssl_context is not None else None
    assoc = ae.associate(
        peer.address,
        peer.port,
        ae_title=peer.ae_title,
        ext_neg=list(roles) or None,
        evt_handlers=[*events, *handlers],
        tls_args=tls,
    )
    if assoc.is_established:
        return assoc
    if not witness.connected:
        raise PullError(f"{peer}: no answer (connection refused or timed out); is it running?")
    if witness.rejection or assoc.is_rejected:
        raise PullError(f"{peer} rejected the association ({witness.rejection or 'rejected'})")
    raise PullError(f"{peer}: the association was aborted before it was established")


def echo(peer: Peer, calling_ae: str) -> None:
    """C-ECHO `peer`; PullError unless it answers success."""
    from pynetdicom.presentation import build_context
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    assoc = associate(peer, calling_ae, [build_context(Verification)])
    try:
        status = assoc.send_c_echo()
        code = int(status.get("Status", -1)) if status else -1
    finally:
        assoc.release()
    if code != 0:
        raise PullError(f"{peer} did not answer the C-ECHO with success (status {code:#06x})")
