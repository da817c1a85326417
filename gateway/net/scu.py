"""Forwarding SCU: hands a finished, de-identified study to the destination AE or folder.

Three outcomes, like CTP's export stages (STYLE.md): OK (all stored), RETRY (the destination's
trouble: no connection, rejected, aborted, timed out, out of resources; the caller resends the
whole study later and the destination replaces duplicates by SOP Instance UID) and FAIL (the
study's trouble: an instance the peer refuses to understand, or a file we cannot read; resending
cannot help). Network and disk errors never raise; only programming errors do.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext, build_context

if TYPE_CHECKING:
    from pynetdicom.association import Association

__all__ = ["ForwardOutcome", "ForwardResult", "forward_to_ae", "forward_to_folder"]

log = logging.getLogger(__name__)

# Send a file given by path as its raw encoded bytes, streamed in PDU-sized pieces, instead
# of decoding and re-encoding it: bit-preserving, fast, and a 2 GB multi-frame does not have
# to fit in memory. pynetdicom then requires an accepted context with the file's exact
# transfer syntax, which is what we check before sending. Process-wide, but the gateway has
# no other C-STORE SCU.
_config.STORE_SEND_CHUNKED_DATASET = True

# PS3.8 9.3.2.2: presentation context IDs are the odd numbers 1..255.
MAX_CONTEXTS = 128
_NATIVE_LE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_COPY_CHUNK = 1 << 20


class ForwardOutcome(Enum):
    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class ForwardResult:
    """What happened to a study. `message` holds counts and status codes, no patient data."""

    outcome: ForwardOutcome
    sent: int
    failed: int
    message: str


@dataclass(frozen=True)
class _Instance:
    path: Path
    sop_class: UID
    transfer_syntax: UID


@dataclass
class _Tally:
    """Running counts over one study; FAIL outranks RETRY (resending cannot fix it)."""

    total: int
    sent: int = 0
    warnings: int = 0
    failed: int = 0
    retry_reason: str = ""
    problems: Counter[str] | None = None

    def fail(self, reason: str, count: int = 1) -> None:
        self.failed += count
        if self.problems is None:
            self.problems = Counter()
        self.problems[reason] += count

    def result(self, destination: str) -> ForwardResult:
        text = f"sent {self.sent} of {self.total} instance(s) to {destination}"
        if self.warnings:
            text += f" ({self.warnings} with a warning status)"
        if self.problems:
            text += "; failed: " + ", ".join(f"{n} x {why}" for why, n in self.problems.items())
        if self.failed:
            outcome = ForwardOutcome.FAIL
        elif self.retry_reason:
            outcome = ForwardOutcome.RETRY
        else:
            outcome = ForwardOutcome.OK
        if self.retry_reason:
            text += f"; stopped: {self.retry_reason}"
        return ForwardResult(outcome, self.sent, self.failed, text)


# --- DICOM destination -----------------------------------------------------------------------


def forward_to_ae(
    files: list[Path],
    *,
    ae_title: str,
    host: str,
    port: int,
    calling_ae: str = "DEID_GW",
    timeout: float = 30,
) -> ForwardResult:
    """C-STORE every file to `ae_title` at `host:port`, one association per study.

    Presentation contexts come from the files' (SOP class, transfer syntax) pairs, plus
    Explicit and Implicit VR Little Endian per SOP class so that an instance whose compressed
    syntax the peer refuses can still be decoded and sent uncompressed.
    """
    destination = f"{ae_title}@{host}:{port}"
    tally = _Tally(total=len(files))
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
        )

    result = tally.result(destination)
    level = logging.INFO if result.outcome is ForwardOutcome.OK else logging.WARNING
    log.log(level, "forward %s: %s", result.outcome.value, result.message)
    return result


def _read_header(path: Path) -> _Instance | None:
    """SOP class and transfer syntax from the file meta, without reading the pixel data."""
    try:
        meta = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).file_meta
        sop_class = UID(str(meta.MediaStorageSOPClassUID))
        transfer_syntax = UID(str(meta.TransferSyntaxUID))
        if not meta.get("MediaStorageSOPInstanceUID"):
            raise ValueError("no Media Storage SOP Instance UID")
    except Exception as exc:  # an outbox file we cannot parse: that instance fails
        log.warning("cannot read the header of an outbox file (%s)", type(exc).__name__)
        return None
    return _Instance(path, sop_class, transfer_syntax)


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


def _disable_nagle(event: evt.Event) -> None:
    """Runs on EVT_CONN_OPEN, before the A-ASSOCIATE-RQ is sent. Without TCP_NODELAY each
    C-STORE waits ~40 ms for the peer's delayed ACK (Nagle), whatever the bandwidth."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _send_group(
    group: list[_Instance],
    tally: _Tally,
    *,
    ae_title: str,
    host: str,
    port: int,
    calling_ae: str,
    timeout: float,
) -> None:
    rejection: list[str] = []

    def on_acse_recv(event: evt.Event) -> None:
        primitive = event.primitive
        if isinstance(primitive, A_ASSOCIATE) and primitive.result in (0x01, 0x02):
            rejection.append(
                f"{primitive.result_str}, {primitive.source_str}: {primitive.reason_str}"
            )

    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    contexts = _build_contexts(group)
    assoc = ae.associate(
        host,
        port,
        contexts=contexts,
        ae_title=ae_title,
        max_pdu=0,  # we receive any size; we send at most what the peer announced
        evt_handlers=[(evt.EVT_CONN_OPEN, _disable_nagle), (evt.EVT_ACSE_RECV, on_acse_recv)],
    )
    try:
        if not assoc.is_established:
            _association_failed(assoc, group, tally, rejection, len(contexts))
            return
        _store_all(assoc, group, tally)
    finally:
        if assoc.is_established:
            assoc.release()


def _association_failed(
    assoc: Association,
    group: list[_Instance],
    tally: _Tally,
    rejection: list[str],
    proposed: int,
) -> None:
    if rejection:
        tally.retry_reason = f"association rejected ({rejection[0]})"
    elif assoc.is_aborted and assoc.rejected_contexts and not assoc.accepted_contexts:
        # The peer takes none of these SOP classes in any syntax we can produce.
        tally.fail(f"peer accepted none of {proposed} presentation contexts", len(group))
    elif assoc.is_aborted:
        tally.retry_reason = "association aborted during negotiation"
    else:
        tally.retry_reason = "no association (connection refused or timed out)"


def _store_all(assoc: Association, group: list[_Instance], tally: _Tally) -> None:
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    message_id = 0
    for instance in group:
        if (instance.sop_class, instance.transfer_syntax) in accepted:
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
        if not _count_status(status, tally):
            return


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


def _count_status(status: Dataset, tally: _Tally) -> bool:
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


# --- folder destination ----------------------------------------------------------------------


class _SourceError(Exception):
    """Reading the outbox file failed (the instance's fault, not the destination's)."""


def _output_path(folder: Path, patient: str, study: str, series: str, sop: str) -> Path:
    # The layout of gateway.offline.output_path. net/scu may not import gateway.offline (it
    # sits above the pipeline), so the one line is repeated here.
    return folder / patient / study / series / f"{sop}.dcm"


def _path_part(value: object, default: str | None) -> str | None:
    """A header value usable as one folder name, or None when it could escape the folder."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return default
    if text in (".", "..") or any(c in text for c in "/\\\0"):
        return None
    return text


def forward_to_folder(files: list[Path], folder: Path) -> ForwardResult:
    """Copy each file to `folder/<PatientID>/<Study>/<Series>/<SOP Instance UID>.dcm`.

    Each copy is written to a temporary file, fsynced and renamed over the target, so a
    reader never sees half a file and sending the study again just replaces it.
    """
    folder = Path(folder)
    tally = _Tally(total=len(files))
    for path in files:
        target = _target_for(Path(path), folder, tally)
        if target is None:
            continue
        try:
            _copy_durably(Path(path), target)
        except _SourceError:
            tally.fail("unreadable file")
            continue
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            tally.retry_reason = (
                "destination folder is full" if full else f"cannot write to the folder ({name})"
            )
            break
        tally.sent += 1
    result = tally.result(f"folder {folder}")
    level = logging.INFO if result.outcome is ForwardOutcome.OK else logging.WARNING
    log.log(level, "forward %s: %s", result.outcome.value, result.message)
    return result


def _target_for(path: Path, folder: Path, tally: _Tally) -> Path | None:
    try:
        ds = dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
        )
        sop = ds.get("SOPInstanceUID") or ds.file_meta.get("MediaStorageSOPInstanceUID")
    except Exception as exc:  # an outbox file we cannot parse: that instance fails
        log.warning("cannot read the header of an outbox file (%s)", type(exc).__name__)
        tally.fail("unreadable file")
        return None
    parts = (
        _path_part(ds.get("PatientID"), "NO-PATIENT"),
        _path_part(ds.get("StudyInstanceUID"), "NO-STUDY"),
        _path_part(ds.get("SeriesInstanceUID"), "NO-SERIES"),
        _path_part(sop, None),
    )
    if any(part is None for part in parts):
        tally.fail("identifier unusable as a file name")
        return None
    patient, study, series, sop_uid = (str(part) for part in parts)
    return _output_path(folder, patient, study, series, sop_uid)


def _copy_durably(source: Path, target: Path) -> None:
    """Copy via tmp + fsync + os.replace + directory fsync. _SourceError for read errors,
    OSError for write errors."""
    try:
        reader = open(source, "rb")  # noqa: SIM115 - closed below, errors told apart
    except OSError as exc:
        raise _SourceError from exc
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".tmp-{secrets.token_hex(6)}"
        try:
            with open(temporary, "wb") as writer:
                while True:
                    try:
                        chunk = reader.read(_COPY_CHUNK)
                    except OSError as exc:
                        raise _SourceError from exc
                    if not chunk:
                        break
                    writer.write(chunk)
                writer.flush()
                os.fsync(writer.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    finally:
        reader.close()
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
