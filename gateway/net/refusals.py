"""Who the SCP turned away, and why: each refusal counted, and said at most once a minute
per cause and source (`gateway.base.log_limits`), since a peer can repeat it at will.

Addresses and calling AE titles are network configuration, never patient data.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from gateway.base.log_limits import RateLimitedLog
from gateway.net.receive_limits import Refusal
from gateway.net.tls import describe_tls_failure

if TYPE_CHECKING:
    from pynetdicom.events import Event

    from gateway.base.metrics import Metrics

# Records keep the SCP's logger name: an operator filters on it.
log = logging.getLogger("gateway.net.scp")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "IPNetwork",
    "RateLimitedLog",
    "address_allowed",
    "admit",
    "host_of",
    "on_refusal",
    "on_rejected",
    "on_source_full",
    "on_tls_refused",
    "peer",
]


def peer(client_address: Any) -> str:
    """`host:port` of a client; an address is network configuration, not patient data."""
    if isinstance(client_address, tuple) and len(client_address) >= 2:
        host, port = client_address[0], client_address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(client_address)


def on_refusal(
    assoc: Any, refusal: Refusal, metrics: Metrics | None, says: RateLimitedLog
) -> None:
    """Say why an association was cut off (sizes and times, never data) and count it."""
    requestor = assoc.requestor
    says.warning(
        ("cut-off", requestor.address, refusal.kind),
        "cut off association from %s (calling AE %r): %s",
        peer((requestor.address, requestor.port)),
        requestor.ae_title,
        refusal.reason,
    )
    if metrics is not None:
        stage = "receive" if refusal.kind == "instance" else "connection"
        metrics.failures.labels(stage=stage).inc()


def on_source_full(
    client_address: Any, limit: int, metrics: Metrics | None, says: RateLimitedLog
) -> None:
    says.warning(
        ("source-full", host_of(client_address)),
        "refused connection from %s: it already holds %d (listen.max_associations_per_source)",
        peer(client_address),
        limit,
    )
    _count_refusal(metrics)


def admit(
    client_address: Any,
    networks: tuple[IPNetwork, ...],
    metrics: Metrics | None,
    says: RateLimitedLog,
) -> bool:
    """Whether a client may connect at all; a refusal costs at most one log line a minute."""
    host = host_of(client_address)
    if address_allowed(host, networks):
        return True
    says.warning(
        ("not-allowed", host),
        "refused connection from %s: address not in listen.allowed_networks",
        peer(client_address),
    )
    _count_refusal(metrics)
    return False


def on_tls_refused(
    client_address: Any,
    exc: Exception,
    stopping: bool,
    metrics: Metrics | None,
    says: RateLimitedLog,
) -> None:
    """Log a failed TLS handshake with the peer address and OpenSSL's reason."""
    if stopping:  # server_close() cut it: not the peer's doing
        log.info("TLS handshake with %s cut short: the SCP is stopping", peer(client_address))
        return
    why = describe_tls_failure(exc)
    says.warning(
        ("tls", host_of(client_address), why),
        "refused TLS connection from %s: %s",
        peer(client_address),
        why,
    )
    _count_refusal(metrics)


def _count_refusal(metrics: Metrics | None) -> None:
    if metrics is not None:
        metrics.failures.labels(stage="connection").inc()


def address_allowed(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether `host` (as accept() reports it) lies in one of `networks`. An IPv4 client of
    a dual-stack socket shows up as ::ffff:a.b.c.d and is matched as a.b.c.d too."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        candidate in network
        for candidate in candidates
        for network in networks
        if candidate.version == network.version
    )


def host_of(client_address: Any) -> str:
    return str(client_address[0]) if isinstance(client_address, tuple) else ""


def on_rejected(
    event: Event, allowed: frozenset[str], metrics: Metrics | None, says: RateLimitedLog
) -> None:
    """Say why an association was rejected; an AE title is configuration, not patient data."""
    calling = event.assoc.requestor.ae_title
    host = event.assoc.requestor.address
    if allowed and calling not in allowed:
        says.warning(
            ("ae-not-allowed", host), "rejected association from %r: calling AE not allowed",
            calling,
        )
    else:
        says.warning(
            ("rejected", host), "rejected association from %r (e.g. too many associations)",
            calling,
        )
    if metrics is not None:
        metrics.failures.labels(stage="association").inc()
