"""The folder destination: the same tree as offline mode, written atomically and durably."""

from __future__ import annotations

import errno
import logging
import os
import secrets
from pathlib import Path

from pydicom import dcmread

from gateway.layout import export_path
from gateway.net.outcome import ForwardOutcome, ForwardResult, Tally

__all__ = ["forward_to_folder"]

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


class _SourceError(Exception):
    """Reading the outbox file failed (the instance's fault, not the destination's)."""


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
    tally = Tally(total=len(files))
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


def _target_for(path: Path, folder: Path, tally: Tally) -> Path | None:
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
    return export_path(folder, patient, study, series, sop_uid)


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
