"""Storage and Verification SCP: receive an instance, make it durable, acknowledge it.

The C-STORE handler only spools and answers (STYLE.md, "handlers that only answer"): the
dataset is kept exactly as the peer encoded it, the only parse is a stop-early header read
for the Study Instance UID, and de-identification happens later in the worker pool. A
success status is sent only once `Spool.store_file` has made file and state row durable
(DESIGN.md, "Acknowledged means durable").

The dataset is written into the spool's tmp folder as it arrives, behind the File Meta
header, so the receiving process holds about one PDU of it, whatever the instance's size
(`pynetdicom_receive`); only where those patches do not apply (another pynetdicom) is it
received in memory and spooled with `Spool.store`.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import time
import weakref
from typing import TYPE_CHECKING

from pydicom import uid as dicom_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from gateway.base.transfer_syntaxes import SUPPORTED
from gateway.config.schema import MAX_PDU_SIZE
from gateway.net.dicom_header import HeaderUnreadable, file_meta, file_uids, header_uids
from gateway.net.pynetdicom_patches import PATCHES_APPLY, tune_association
from gateway.net.pynetdicom_receive import DataSetFile, received_file
from gateway.net.pynetdicom_server import (
    GatewayAssociationServer,
    awaiting_association_request,
    drop_idle_connection,
    serve_in_background,
)
from gateway.net.receive_limits import ReceiveLimits
from gateway.net.refusals import (
    RateLimitedLog,
    admit,
    on_refusal,
    on_rejected,
    on_source_full,
    on_tls_refused,
)
from gateway.net.store_fast_path import StoreRequest
from gateway.net.tls import HANDSHAKE_TIMEOUT
from gateway.stores.spool import SpoolWriteError
from gateway.stores.spool_intake import IncomingFile

if TYPE_CHECKING:
    from collections.abc import Callable
    from ssl import SSLContext

    from pynetdicom.association import Association
    from pynetdicom.events import Event

    from gateway.base.metrics import Metrics
    from gateway.config import ListenConfig
    from gateway.stores.spool import Spool

__all__ = [
    "STATUS_CANNOT_UNDERSTAND",
    "STATUS_DOES_NOT_MATCH",
    "STATUS_OUT_OF_RESOURCES",
    "STATUS_PROCESSING_FAILURE",
    "STATUS_SUCCESS",
    "TRANSFER_SYNTAXES",
    "build_scp_ae",
    "start_scp",
    "stop_scp",
]

log = logging.getLogger(__name__)

# C-STORE response statuses, PS3.4 B.2.3.
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (the sender retries later)
STATUS_DOES_NOT_MATCH = 0xA900  # Error: Data Set does not match SOP Class
STATUS_CANNOT_UNDERSTAND = 0xC210  # Error: Cannot understand (unparseable)
STATUS_PROCESSING_FAILURE = 0xC211  # our own failure; pynetdicom uses it for handler errors

TRANSFER_SYNTAXES: tuple[str, ...] = SUPPORTED

# A peer that stops sending in the middle of a PDU (half an A-ASSOCIATE-RQ, a P-DATA cut
# short) leaves pynetdicom's reader in a blocking recv on the accepted socket, where no
# ACSE or network timeout reaches it: its association thread, and its slot under
# max_associations, would be held forever. A stall this long ends the connection instead.
STALLED_PDU_SECONDS = 60.0

# PS3.5 9.1 allows only digits and dots, up to 64 characters, but real senders break the
# character rule (leading zeros, letters) and de-identification replaces every UID anyway,
# so only what would break grouping is refused: empty, too long, multi-valued, control
# characters.
_UID_SHAPE = re.compile(r"[\x21-\x5b\x5d-\x7e]{1,64}")

# Servers stop_scp has already stopped: a second call (signal, then exit) returns at once.
_STOPPED: weakref.WeakSet[ThreadedAssociationServer] = weakref.WeakSet()


def build_scp_ae(
    ae_title: str,
    *,
    allowed_calling_aes: list[str],
    max_associations: int,
    max_pdu_size: int = MAX_PDU_SIZE,
) -> AE:
    """An AE that accepts every storage SOP class pynetdicom knows, plus Verification.

    An empty `allowed_calling_aes` accepts any calling AE; otherwise any other calling AE
    gets an association rejection (PS3.8 7.1.1.9: rejected-permanent, calling AE title not
    recognized). `max_pdu_size` is advertised (PS3.8 D.1; never 0, "no limit") and the
    acceptor's reader enforces it (`receive_limits`).
    """
    ae = AE(ae_title=ae_title)
    # The 128-context limit applies only to contexts we request as an SCU; an SCP may
    # support any number.
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, list(TRANSFER_SYNTAXES))
    ae.add_supported_context(Verification, [*TRANSFER_SYNTAXES[:2], dicom_uid.ExplicitVRBigEndian])
    if allowed_calling_aes:
        ae.require_calling_aet = list(allowed_calling_aes)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = max_pdu_size
    return ae


def start_scp(
    listen: ListenConfig,
    spool: Spool,
    metrics: Metrics | None = None,
    *,
    ssl_context: SSLContext | None = None,
) -> ThreadedAssociationServer:
    """Start listening in the background; the handlers are bound here, not globally.

    Port 0 binds a free port; read it back from `server.server_address[1]`. With
    `ssl_context` (from `gateway.net.tls.server_context`) every connection must complete a
    TLS handshake before any DICOM is read; `listen.allowed_networks` and
    `listen.max_associations_per_source` refuse connections before that. The receive limits
    (`listen.max_pdu_size`, `max_instance_size`, `first_request_seconds`) bound what one
    association may hold (docs/security.md, "Who may connect, and receive limits").
    """
    ae = build_scp_ae(
        listen.ae_title,
        allowed_calling_aes=list(listen.allowed_calling_aes),
        max_associations=listen.max_associations,
        max_pdu_size=listen.max_pdu_size,
    )
    # Refusals a peer can repeat at will: one line per cause and source a minute.
    says = RateLimitedLog(log)
    limits = ReceiveLimits(
        max_pdu_size=listen.max_pdu_size,
        max_instance_size=listen.max_instance_size,
        first_request_seconds=listen.first_request_seconds,
        on_refusal=functools.partial(on_refusal, metrics=metrics, says=says),
    )
    if not PATCHES_APPLY:
        log.error("receive limits NOT enforced: written for pynetdicom 3.0.x (see pyproject)")
    handlers = [
        (evt.EVT_CONN_OPEN, _on_connection_open, [limits, spool, metrics]),
        (evt.EVT_REJECTED, on_rejected, [frozenset(listen.allowed_calling_aes), metrics, says]),
        (evt.EVT_C_STORE, _on_store, [spool, metrics]),
    ]
    networks = tuple(ipaddress.ip_network(n, strict=False) for n in listen.allowed_networks)
    # The server accepts, refuses addresses outside `networks` before any TLS or DICOM, and
    # runs each TLS handshake in the connection's own thread (see GatewayAssociationServer).
    server = ae.make_server(
        (listen.host, listen.port),
        ssl_context=ssl_context,
        evt_handlers=handlers,
        server_class=GatewayAssociationServer,
        stalled_pdu_seconds=STALLED_PDU_SECONDS,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        admit=(
            functools.partial(admit, networks=networks, metrics=metrics, says=says)
            if networks
            else None
        ),
        on_tls_refused=functools.partial(on_tls_refused, metrics=metrics, says=says),
        per_source_limit=listen.max_associations_per_source,
        on_source_full=functools.partial(on_source_full, metrics=metrics, says=says),
    )
    serve_in_background(ae, server, name=f"AcceptorServer@{listen.port}")
    log.info(
        "SCP %s listening on %s:%d (%s; %d calling AEs allowed%s; networks: %s; "
        "max PDU %d, max instance %d bytes, first request within %g s, %d per source)",
        listen.ae_title,
        server.server_address[0],
        server.server_address[1],
        "TLS" if ssl_context is not None else "plain DICOM, no TLS",
        len(listen.allowed_calling_aes),
        "" if listen.allowed_calling_aes else ": any",
        ", ".join(str(n) for n in networks) or "any",
        listen.max_pdu_size,
        listen.max_instance_size,
        listen.first_request_seconds,
        listen.max_associations_per_source,
    )
    return server


def stop_scp(server: ThreadedAssociationServer, timeout: float = 30.0) -> bool:
    """Drain on SIGTERM: stop accepting, let open associations finish, then abort the rest.

    Waits at most `timeout` seconds. An association aborted here had its unanswered
    instance either not spooled or spooled without a success status; the sender treats
    it as failed and sends it again, and the spool keeps one copy. Returns True when every
    association ended on its own.
    """
    if server in _STOPPED:
        return True
    _STOPPED.add(server)
    server.shutdown()  # stops the accept loop and closes the listening socket
    deadline = time.monotonic() + timeout
    # Look again after each round of joins: a connection accepted just before the shutdown
    # only shows up once its handler thread has started the association.
    while True:
        left = []
        for assoc in server.active_associations:
            if awaiting_association_request(assoc):
                drop_idle_connection(assoc)
            else:
                left.append(assoc)
        if not left or time.monotonic() >= deadline:
            break
        for assoc in left:
            assoc.join(min(0.5, max(0.0, deadline - time.monotonic())))
    for assoc in left:
        log.warning(
            "aborting association from %s: still open after %.0f s drain",
            assoc.requestor.ae_title,
            timeout,
        )
        assoc.abort()
    log.info("SCP stopped")
    return not left


def _on_connection_open(
    event: Event, limits: ReceiveLimits, spool: Spool, metrics: Metrics | None
) -> None:
    """Disable Nagle on the accepted socket (pynetdicom never sets TCP_NODELAY), and put the
    receive limits and the streaming into the spool on the association before it reads
    anything.

    With Nagle on, a peer that writes twice before reading (command PDU, then dataset PDU)
    waits for the other side's delayed ACK, ~40 ms per exchange: ~20 instances/s. The
    sender's setting decides C-STORE (our response is a single write), so this is cheap
    insurance for exchanges where we write more than once per round trip.
    """
    try:
        sock = event.assoc.dul.socket.socket
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        log.warning("could not set TCP_NODELAY: %s", exc)
    tune_association(
        event.assoc,
        limits,
        functools.partial(_dataset_file, spool),
        functools.partial(_serve_fast, spool=spool, metrics=metrics),
    )


def _dataset_file(
    spool: Spool, sop_class_uid: object, sop_instance_uid: object, transfer_syntax: str
) -> IncomingFile:
    """Where a C-STORE data set is written as it arrives: a spool tmp file headed by the
    File Meta header the handler will build from the same request (and check)."""
    try:
        header = file_meta(
            _uid(sop_class_uid, "SOP Class UID"),
            _uid(sop_instance_uid, "SOP Instance UID"),
            transfer_syntax,
        )
    except _NotUnderstood:
        header = b""  # the handler refuses the request before it reads the file
    return spool.incoming(header)


class _NotUnderstood(Exception):
    """The request cannot be stored as it is; carries the status to answer with."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def _on_store(event: Event, spool: Spool, metrics: Metrics | None) -> int:
    """pynetdicom's C-STORE handler: where `FastStore` does not serve a request (another
    pynetdicom, a command set in several fragments, pynetdicom's debug logging)."""
    incoming = received_file(event)
    request = event.request
    encoded = (
        None
        if incoming is not None
        else functools.partial(event.encoded_dataset, include_meta=False)
    )
    return _store(
        spool,
        metrics,
        event.assoc.requestor.ae_title,
        incoming,
        (request.AffectedSOPClassUID, request.AffectedSOPInstanceUID),
        str(event.context.transfer_syntax),
        encoded,
    )


def _serve_fast(
    assoc: Association, request: StoreRequest, spool: Spool, metrics: Metrics | None
) -> int:
    """`FastStore`'s handler: the same as `_on_store`, for a request received on the DUL."""
    return _store(
        spool,
        metrics,
        assoc.requestor.ae_title,
        request.file,
        request.uids,
        request.transfer_syntax,
        None,
    )


def _store(
    spool: Spool,
    metrics: Metrics | None,
    calling: str,
    incoming: DataSetFile | None,
    uids: tuple[object, object],
    transfer_syntax: str,
    encoded_dataset: Callable[[], bytes] | None,
) -> int:
    """Spool the instance as received and answer; never raises, never de-identifies.

    The dataset's bytes go to the spool as the sender encoded them (in `incoming`, written
    as they arrived, or `encoded_dataset`), behind a File Meta header built from the
    request's UIDs (`uids`: SOP Class, SOP Instance); only the two UIDs the spool needs are
    read from them.
    """
    try:
        sop_class_uid = _uid(uids[0], "SOP Class UID")
        sop_instance_uid = _uid(uids[1], "SOP Instance UID")
        meta = file_meta(sop_class_uid, sop_instance_uid, transfer_syntax)
        instance = {
            "sop_instance_uid": sop_instance_uid,
            "sop_class_uid": sop_class_uid,
            "transfer_syntax": transfer_syntax,
            "calling_ae": calling,
        }
        if isinstance(incoming, IncomingFile):
            incoming.finish()  # SpoolWriteError if a piece could not be written
            if incoming.header != meta:
                raise RuntimeError("the file's File Meta differs from the request's")
            uids_read = functools.partial(file_uids, incoming.path, len(meta), transfer_syntax)
            study_uid = _study_uid(uids_read, sop_instance_uid)
            spool.store_file(incoming, study_uid=study_uid, **instance)
        elif encoded_dataset is not None:
            dataset = encoded_dataset()
            uids_read = functools.partial(header_uids, dataset, transfer_syntax)
            study_uid = _study_uid(uids_read, sop_instance_uid)
            spool.store(
                (meta, dataset),  # not meta + dataset: a 2 GB instance would be copied again
                study_uid=study_uid,
                **instance,
            )
        else:
            raise RuntimeError("a data set received into something other than a spool file")
    except _NotUnderstood as exc:
        log.warning("refused instance from %r: %s (status 0x%04X)", calling, exc, exc.status)
        return _failed(metrics, exc.status)
    except SpoolWriteError as exc:
        log.error(
            "could not spool instance from %r (%s): %s",
            calling,
            "out of space" if exc.out_of_space else "write error",
            exc,  # SpoolWriteError messages name the failure, never the data
        )
        return _failed(metrics, STATUS_OUT_OF_RESOURCES)
    except Exception as exc:  # the handler must answer, whatever happened
        # The exception text may quote element values; log its type only.
        log.error("failed to store instance from %r: %s", calling, type(exc).__name__)
        return _failed(metrics, STATUS_PROCESSING_FAILURE)
    finally:
        if incoming is not None:
            incoming.discard()  # what was refused; nothing once stored (moved away)
    if metrics is not None:
        metrics.instances_received.inc()
    if log.isEnabledFor(logging.DEBUG):
        log.debug("stored instance %s from %r", spool.uid_hash(sop_instance_uid, 12), calling)
    return STATUS_SUCCESS


def _failed(metrics: Metrics | None, status: int) -> int:
    if metrics is not None:
        metrics.failures.labels(stage="receive").inc()
    return status


def _uid(value: object, what: str) -> str:
    text = str(value or "").strip().rstrip("\0")
    if not _UID_SHAPE.fullmatch(text):
        raise _NotUnderstood(STATUS_CANNOT_UNDERSTAND, f"{what} in the request is not a UID")
    return text


def _study_uid(read_uids: Callable[[], tuple[str, str]], sop_instance_uid: str) -> str:
    """The dataset's Study Instance UID, from a header read (`read_uids`: `header_uids` or
    `file_uids`) that stops right after it.

    Elements are in ascending tag order (PS3.5 7.1), so reading stops at the first tag past
    (0020,000D), long before the pixel data; values on the way are not decoded.
    """
    try:
        instance_value, study_value = read_uids()
    except HeaderUnreadable as exc:
        raise _NotUnderstood(STATUS_CANNOT_UNDERSTAND, f"dataset unreadable ({exc})") from exc
    # PS3.3 C.7.2.1: Study Instance UID is Type 1 in every composite IOD, so a dataset
    # without a usable one does not match its SOP Class.
    if not study_value:
        raise _NotUnderstood(STATUS_DOES_NOT_MATCH, "no Study Instance UID")
    if not _UID_SHAPE.fullmatch(study_value):
        raise _NotUnderstood(STATUS_DOES_NOT_MATCH, "Study Instance UID is not a UID")
    # The spool keys instances on the request's UID; a dataset that says otherwise would be
    # de-duplicated and forwarded under the wrong identity.
    if instance_value != sop_instance_uid:
        raise _NotUnderstood(
            STATUS_DOES_NOT_MATCH, "SOP Instance UID differs between request and dataset"
        )
    return study_value
