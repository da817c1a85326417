"""Forwarding SCU: hands a finished, de-identified study to the destination AE.

Outcomes as in `net/outcome.py`. `on_stored` hears of each instance the destination
confirmed, so that the service records it and a RETRY resends only the rest. Network errors
never raise; only programming errors do.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Hashable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.dsutils import split_dataset
from pynetdicom.presentation import PresentationContext, build_context

from gateway.net.dicom_header import stored_file_meta
from gateway.net.kept_associations import Kept, KeptAssociations, release_kept
from gateway.net.outcome import ForwardOutcome, ForwardResult, Tally
from gateway.net.pynetdicom_patches import PATCHES_APPLY, send_files_as_stored, tune_connection
from gateway.net.requestor_reactor import (
    install_reactor_gate,
    reactor_gate,
    use_storage_requestor_reactor,
)
from gateway.net.scu_handshake import Negotiation, TlsWitness, association_failed
from gateway.net.store_fast_send import can_send_directly, send_stored_file

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["forward_to_ae"]

log = logging.getLogger(__name__)

# Send a file given by path as its raw encoded bytes, streamed in PDU-sized pieces, instead
# of decoding and re-encoding it: bit-preserving, fast, and a 2 GB multi-frame does not have
# to fit in memory. pynetdicom then requires an accepted context with the file's exact
# transfer syntax, which is what we check before sending. Process-wide, but the gateway has
# no other C-STORE SCU.
send_files_as_stored()

# PS3.8 9.3.2.2: presentation context IDs are the odd numbers 1..255.
MAX_CONTEXTS = 128
_NATIVE_LE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass(frozen=True)
class _Instance:
    path: Path
    sop_class: UID
    transfer_syntax: UID
    sop_instance: str
    offset: int  # where the dataset begins, past the File Meta


# --- DICOM destination -----------------------------------------------------------------------


def forward_to_ae(
    files: list[Path],
    *,
    ae_title: str,
    host: str,
    port: int,
    calling_ae: str = "DEID_GW",
    timeout: float = 30,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    on_stored: Callable[[Path], None] | None = None,
    kept: KeptAssociations | None = None,
    key: Hashable | None = None,
) -> ForwardResult:
    """C-STORE every file to `ae_title` at `host:port`, one association per study.

    Presentation contexts come from the files' (SOP class, transfer syntax) pairs, plus
    Explicit and Implicit VR Little Endian per SOP class so that an instance whose compressed
    syntax the peer refuses can still be decoded and sent uncompressed.

    With `ssl_context` (from `gateway.net.tls.client_context`) the association runs over
    TLS, and the destination's certificate must name `server_hostname`, by default `host`
    as configured: an IP address is matched against the certificate's IP SANs, a host name
    against its DNS SANs. A failed handshake (unknown CA, wrong name, our certificate
    refused) is a RETRY whose message says why.

    `on_stored(path)` is called right after each success (or warning) response, before the
    next instance is sent; an exception from it is logged and does not stop the study.

    With `kept` and `key` (a study round), the association is kept open for the round's next
    batch and taken again from there when it still covers what is to be sent; one that
    turns out to be gone before anything was stored on it is replaced by a new one at once.
    """
    destination = f"{ae_title}@{host}:{port}{' over TLS' if ssl_context is not None else ''}"
    tally = Tally(total=len(files))
    instances: list[_Instance] = []
    for path in files:
        instance = _read_header(Path(path))
        if instance is None:
            tally.fail("unreadable file")
        else:
            instances.append(instance)

    for group in _groups_within_context_limit(instances):
        if tally.retry_reason:
            break
        _send_group(
            group,
            tally,
            ae_title=ae_title,
            host=host,
            port=port,
            calling_ae=calling_ae,
            timeout=timeout,
            on_stored=on_stored,
            tls=(
                TlsWitness(ssl_context, server_hostname or host)
                if ssl_context is not None
                else None
            ),
            kept=kept,
            key=key,
        )

    result = tally.result(destination)
    level = logging.INFO if result.outcome is ForwardOutcome.OK else logging.WARNING
    log.log(level, "forward %s: %s", result.outcome.value, result.message)
    return result


def _read_header(path: Path) -> _Instance | None:
    """SOP class, transfer syntax, SOP instance and the dataset's offset from the file
    meta, read by hand (`stored_file_meta`) or, for an unusual header, by pydicom."""
    try:
        found = stored_file_meta(path)
        if found is None:
            meta, offset = split_dataset(path)
            found = (
                str(meta.MediaStorageSOPClassUID),
                str(meta.get("MediaStorageSOPInstanceUID") or ""),
                str(meta.TransferSyntaxUID),
                offset,
            )
        sop_class, instance, transfer_syntax, offset = found
        if not instance:
            raise ValueError("no Media Storage SOP Instance UID")
    except Exception as exc:  # an outbox file we cannot parse: that instance fails
        log.warning("cannot read the header of an outbox file (%s)", type(exc).__name__)
        return None
    return _Instance(path, UID(sop_class), UID(transfer_syntax), instance, offset)


def _contexts_needed(syntaxes: set[UID]) -> list[list[UID]]:
    """Transfer syntax lists for one SOP class: a context per file syntax (the acceptor picks
    one syntax per context, so a shared list could leave some files without an exact match),
    and Explicit/Implicit VR Little Endian for what must be decoded or converted."""
    lists: list[list[UID]] = [list(_NATIVE_LE)]
    lists += [[ts] for ts in sorted(syntaxes) if ts != ExplicitVRLittleEndian]
    return lists[:MAX_CONTEXTS]


def _groups_within_context_limit(instances: list[_Instance]) -> list[list[_Instance]]:
    """Split by SOP class so that each association proposes at most 128 contexts; a study
    almost always fits in one."""
    by_class: dict[UID, list[_Instance]] = {}
    for instance in instances:
        by_class.setdefault(instance.sop_class, []).append(instance)
    groups: list[list[_Instance]] = []
    current: list[_Instance] = []
    used = 0
    for members in by_class.values():
        needed = len(_contexts_needed({m.transfer_syntax for m in members}))
        if current and used + needed > MAX_CONTEXTS:
            groups.append(current)
            current, used = [], 0
        current += members
        used += needed
    if current:
        groups.append(current)
    return groups


def _build_contexts(instances: list[_Instance]) -> list[PresentationContext]:
    syntaxes: dict[UID, set[UID]] = {}
    for instance in instances:
        syntaxes.setdefault(instance.sop_class, set()).add(instance.transfer_syntax)
    contexts = [
        build_context(sop_class, transfer_syntaxes)
        for sop_class, found in syntaxes.items()
        for transfer_syntaxes in _contexts_needed(found)
    ]
    return contexts[:MAX_CONTEXTS]


def disable_nagle(event: evt.Event) -> None:
    """Runs on EVT_CONN_OPEN, before the A-ASSOCIATE-RQ is sent. Without TCP_NODELAY each
    C-STORE waits ~40 ms for the peer's delayed ACK (Nagle), whatever the bandwidth."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tune_connection(event.assoc)  # shorter DUL naps, larger reads (halves forwarding time)


def _install_reactor_gate(event: evt.Event) -> None:
    """Runs on EVT_CONN_OPEN, before the association's reactor loop starts: the reactor then
    stays parked while we send (see `requestor_reactor.ReactorGate`), and never takes a
    DIMSE message (`requestor_reactor`)."""
    install_reactor_gate(event.assoc)
    if PATCHES_APPLY:
        use_storage_requestor_reactor(event.assoc)


def _send_group(
    group: list[_Instance],
    tally: Tally,
    *,
    ae_title: str,
    host: str,
    port: int,
    calling_ae: str,
    timeout: float,
    on_stored: Callable[[Path], None] | None = None,
    tls: TlsWitness | None = None,
    kept: KeptAssociations | None = None,
    key: Hashable | None = None,
) -> None:
    keeping = kept is not None and key is not None
    reused = kept.take(key) if kept is not None and key is not None else None
    if reused is not None and _covers(reused.accepted, group):
        assert kept is not None and key is not None
        kept.reused += 1
        sent, retry_reason = tally.sent, tally.retry_reason
        _use(reused.assoc, group, tally, on_stored)
        if tally.retry_reason and tally.sent == sent:
            # Gone while it waited (the peer's idle timeout): a new one, at once.
            tally.retry_reason = retry_reason
            release_kept(reused)
        else:
            _keep_or_release(reused.assoc, tally, kept, key)
            return
    elif reused is not None:
        release_kept(reused)  # negotiated for other SOP classes or syntaxes
    seen = Negotiation()
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    contexts = _build_contexts(group)
    with kept.opening(key) if kept is not None else nullcontext():
        assoc = ae.associate(
            host,
            port,
            contexts=contexts,
            ae_title=ae_title,
            max_pdu=0,  # we receive any size; we send at most what the peer announced
            tls_args=tls.tls_args if tls is not None else None,
            evt_handlers=[
                (evt.EVT_CONN_OPEN, disable_nagle),
                (evt.EVT_CONN_OPEN, _install_reactor_gate),
                (evt.EVT_CONN_OPEN, seen.on_connection_open),
                (evt.EVT_PDU_RECV, seen.on_pdu),
            ],
        )
    if kept is not None:
        kept.opened += 1
    if not assoc.is_established:
        association_failed(assoc, group, tally, seen, len(contexts), tls)
        return
    try:
        _use(assoc, group, tally, on_stored)
    finally:
        _keep_or_release(assoc, tally, kept if keeping else None, key)


def _use(
    assoc: Association,
    group: list[_Instance],
    tally: Tally,
    on_stored: Callable[[Path], None] | None,
) -> None:
    """Send `group` with the reactor held parked (see `ReactorGate`)."""
    gate = reactor_gate(assoc)
    try:
        if gate is not None:
            gate.held = True
        _store_all(assoc, group, tally, on_stored)
    finally:
        if gate is not None:
            gate.release_hold()


def _keep_or_release(
    assoc: Association, tally: Tally, kept: KeptAssociations | None, key: Hashable | None
) -> None:
    """Kept for the round's next batch when all went well, else released."""
    if kept is not None and key is not None and assoc.is_established and not tally.retry_reason:
        accepted = frozenset(
            (UID(cx.abstract_syntax), UID(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts
        )
        kept.give_back(key, Kept(assoc, accepted, 0.0))
    elif assoc.is_established:
        assoc.release()


def _covers(accepted: frozenset[tuple[UID, UID]], group: list[_Instance]) -> bool:
    """Whether an association with these accepted contexts can take every instance."""
    return all(
        (i.sop_class, i.transfer_syntax) in accepted
        or any((i.sop_class, ts) in accepted for ts in _NATIVE_LE)
        for i in group
    )


def _store_all(
    assoc: Association,
    group: list[_Instance],
    tally: Tally,
    on_stored: Callable[[Path], None] | None = None,
) -> None:
    accepted: dict[tuple[str, str], int] = {}
    for cx in assoc.accepted_contexts:  # the first context for a pair, as pynetdicom picks
        accepted.setdefault((cx.abstract_syntax, cx.transfer_syntax[0]), cx.context_id)
    directly = can_send_directly(assoc)
    message_id = 0
    for instance in group:
        context_id = accepted.get((instance.sop_class, instance.transfer_syntax))
        if context_id is not None:
            payload: Path | Dataset = instance.path
        elif any((instance.sop_class, ts) in accepted for ts in _NATIVE_LE):
            decoded = _decoded(instance)
            if decoded is None:
                tally.fail("cannot decode to Explicit VR Little Endian")
                continue
            payload = decoded
        else:
            tally.fail("no accepted presentation context")
            continue

        message_id = message_id % 0xFFFF + 1
        try:
            status = None
            if directly and context_id is not None:
                status = send_stored_file(
                    assoc,
                    context_id,
                    instance.path,
                    instance.offset,
                    (instance.sop_class, instance.sop_instance),
                    message_id,
                )
            if status is None:
                status = assoc.send_c_store(payload, msg_id=message_id)
        except (ValueError, AttributeError) as exc:
            # Raised before anything is sent: the dataset cannot be encoded for the context.
            log.warning("cannot encode an instance for sending (%s)", type(exc).__name__)
            tally.fail("cannot encode")
            continue
        except OSError as exc:
            log.warning("C-STORE interrupted (%s)", type(exc).__name__)
            assoc.abort()
            tally.retry_reason = f"C-STORE interrupted ({type(exc).__name__})"
            return
        stored_before = tally.sent
        usable = _count_status(status, tally)
        if tally.sent > stored_before and on_stored is not None:
            _report_stored(on_stored, instance.path)
        if not usable:
            return


def _report_stored(on_stored: Callable[[Path], None], path: Path) -> None:
    try:
        on_stored(path)
    except Exception as exc:  # a full disk must not stop the study; it may be resent later
        log.warning("cannot record a forwarded instance (%s)", type(exc).__name__)


def _decoded(instance: _Instance) -> Dataset | None:
    """The instance with its pixel data decompressed, for a peer that refused the syntax."""
    try:
        ds = dcmread(instance.path)
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax.is_compressed:
            # Same SOP Instance UID: a change of transfer syntax does not make a new instance
            # (PS3.5 10: the transfer syntax is an encoding, not part of the instance).
            ds.decompress(generate_instance_uid=False)
        elif syntax.is_deflated:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return ds
    except Exception as exc:  # no decoder, corrupt stream: that instance fails
        log.warning("cannot decode an instance (%s)", type(exc).__name__)
        return None


def _count_status(status: Dataset, tally: Tally) -> bool:
    """Count one C-STORE response; False when the association is no longer usable or the
    peer is out of resources, so the rest of the study waits for a retry."""
    code = status.get("Status") if status else None
    if code is None:
        # pynetdicom returns an empty dataset after a DIMSE timeout (it then aborts), an
        # abort by the peer, or an invalid response.
        tally.retry_reason = "no C-STORE response (timeout or association aborted)"
        return False
    code = int(code)
    if code == 0x0000:
        tally.sent += 1
    elif code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        # PS3.7 C.3/C.4 and PS3.4 B.2.3: warnings; the instance is stored (maybe coerced).
        tally.sent += 1
        tally.warnings += 1
    elif 0xA700 <= code <= 0xA7FF or code in (0x0110, 0x0213):
        # Out of resources / processing failure / resource limitation: the peer's state.
        tally.retry_reason = f"status 0x{code:04X}"
        return False
    else:
        # 0xCxxx cannot understand, 0xA9xx does not match SOP class, 0x0122 not supported...
        tally.fail(f"status 0x{code:04X}")
    return True
