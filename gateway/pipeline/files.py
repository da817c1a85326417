"""Files through the pipeline: read an instance, process it, write the clean one or
quarantine it (shared by offline mode and the service's workers).

Each worker process builds its engine and mapping writer once (`init_worker`); writes go
through a temporary name, fsync and rename, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from gateway.base.part10_encoder import write_part10
from gateway.deid.engine import DeidResult, Engine
from gateway.deid.free_text import DEFAULT_SETTINGS, FreeTextSettings
from gateway.deid.profile import DeidProfile
from gateway.deid.pseudonym_table import PseudonymTable
from gateway.deid.pseudonyms import Pseudonyms
from gateway.keys.keyed_hash import KeyedHash
from gateway.keys.reid_keys import load_public_key
from gateway.pipeline.batch_syncs import sync_output
from gateway.pipeline.instance import (
    Clean,
    Quarantine,
    configure_pydicom,
    disk_error,
    expected_pixel_length,
    is_environment_error,
    process_instance,
)
from gateway.pipeline.output_claims import claim_output, release_output
from gateway.pipeline.pixel_tail import PIXEL_DATA, PixelTail, TailError, copy_tail, read_header
from gateway.pipeline.routing import Route, Router
from gateway.pixels.clean_stream import streamable, write_clean_frames
from gateway.pixels.frame_files import FramePlan
from gateway.pixels.rules import PixelConfig
from gateway.stores import quarantine
from gateway.stores.mapping_postgres import PostgresMapping
from gateway.stores.mapping_records import MAPPING_FILENAME
from gateway.stores.mapping_writer import MappingWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """What a worker process needs to build its engine (picklable)."""

    profile: DeidProfile  # a compiled YAML profile or a CTP script
    secret: bytes = field(repr=False)
    site_id: str
    storage_dir: Path
    # Set: every pseudonym issued is sealed to this re-identification public key in
    # storage_dir/mapping.db before its instance is written anywhere.
    reid_public_key: Path | None = None
    # Set: burned-in text is found and blanked in the instances it selects (issue: pixels).
    pixels: PixelConfig | None = None
    # How free text is cleaned: the recognizer, the site's word lists (deid.free_text).
    free_text: FreeTextSettings = DEFAULT_SETTINGS
    # `routes:`: the rules, and their own profiles (a rule's `profile` indexes 1 onwards).
    router: Router = field(default_factory=Router)
    route_profiles: tuple[DeidProfile, ...] = ()
    # deid.pseudonym_table: pre-assigned pseudonyms for Patient ID and Name (never shown).
    pseudonym_table: PseudonymTable | None = field(default=None, repr=False)
    # mapping.url: the sealed mapping and CTP @integer numbers in a shared PostgreSQL.
    mapping_url: str | None = field(default=None, repr=False)

    def keyed_hash(self) -> KeyedHash:
        """The hash that names an input (quarantine, output claims) without revealing it."""
        return KeyedHash(self.secret)


@dataclass(frozen=True)
class FileOutcome:
    status: str  # "written" | "quarantined" | "skipped" | "dropped" (detail: the rule)
    source: Path
    detail: str = ""
    output: Path | None = None
    study_uid: str = ""  # the pseudonymous Study Instance UID of a written file
    pixel_boxes: dict[str, int] = field(default_factory=dict)  # blanked boxes by source


_engine: Engine | None = None
_route_engines: tuple[Engine, ...] = ()  # the rules' own profiles, `Route.profile` - 1
_settings: EngineSettings | None = None
_mapping: MappingWriter | None = None
_keyed_hash: KeyedHash | None = None


def build_engine_and_mapping(settings: EngineSettings) -> tuple[Engine, MappingWriter | None]:
    """The site's engine, and the writer that seals its pseudonyms into mapping.db when a
    re-identification key is configured (images and clinical CSV files alike)."""
    engine = settings.profile.build_engine(
        Pseudonyms(settings.secret, settings.site_id), settings.storage_dir
    )
    engine.set_free_text(settings.free_text)
    with_table(engine, settings)
    mapping = (
        MappingWriter(
            PostgresMapping(settings.mapping_url)
            if settings.mapping_url
            else settings.storage_dir / MAPPING_FILENAME,
            load_public_key(settings.reid_public_key),
        )
        if settings.reid_public_key is not None
        else None
    )
    return engine, mapping


def init_worker(settings: EngineSettings) -> None:
    """Process-pool initializer: one engine per worker process, built once."""
    global _engine, _route_engines, _settings, _mapping, _keyed_hash
    configure_pydicom()
    _settings, _keyed_hash = settings, settings.keyed_hash()
    _engine, _mapping = build_engine_and_mapping(settings)
    _route_engines = tuple(_route_engine(settings, p) for p in settings.route_profiles)


def _route_engine(settings: EngineSettings, profile: DeidProfile) -> Engine:
    engine = profile.build_engine(
        Pseudonyms(settings.secret, settings.site_id), settings.storage_dir
    )
    engine.set_free_text(settings.free_text)
    return with_table(engine, settings)


def with_table(engine: Engine, settings: EngineSettings) -> Engine:
    """The site's pre-assigned pseudonyms on `engine` (site.py refuses them with a CTP
    script, which writes Patient ID itself), and its CTP @integer numbers in the shared
    database when `mapping.url` is set."""
    if settings.mapping_url and hasattr(engine, "share_integers"):
        engine.share_integers(PostgresMapping(settings.mapping_url))
    if settings.pseudonym_table is not None:
        if not isinstance(engine, Engine):
            raise ValueError("deid.pseudonym_table cannot be used with a CTP script profile")
        engine.pseudonym_table = settings.pseudonym_table
    return engine


def _routed(ds: Dataset) -> tuple[Route | None, Engine, PixelConfig | None]:
    """The rule `ds` falls under (None: none), and the engine and pixel settings it says."""
    assert _engine is not None and _settings is not None
    route = _settings.router.route_for(ds)
    if route is None:
        return None, _engine, _settings.pixels
    engine = _route_engines[route.profile - 1] if route.profile else _engine
    return route, engine, route.pixels if route.pixels_set else _settings.pixels


def read_instance(path: Path) -> Dataset | Quarantine | str:
    """The dataset, a Quarantine for a file cut short, or why the file is not DICOM."""
    if path.name.upper() == "DICOMDIR":
        return "DICOMDIR (a media directory, not an instance)"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = dcmread(path)
        if any("End of file reached" in str(w.message) for w in caught):
            # An undefined-length item or sequence ran off the end: the file is cut short.
            return Quarantine("truncated", "read", "file ends before its last element")
        return ds
    except InvalidDicomError:
        pass
    except Exception as exc:
        # A Part 10 header, then a data set that breaks the reader (nesting too deep, a
        # length past the end in the file meta, a corrupt deflated body): a DICOM file that
        # cannot be made safe, held with its reason rather than skipped.
        return Quarantine("unreadable", "read", f"cannot parse the file ({type(exc).__name__})")
    # No preamble: accept it only if it parses as a dataset that is an instance.
    try:
        ds = dcmread(path, force=True)
        if ds.get("SOPClassUID") and ds.get("SOPInstanceUID"):
            return ds
    except Exception as exc:
        return f"cannot read as DICOM ({type(exc).__name__})"
    return "not a DICOM file"


def _large_header(path: Path) -> tuple[Dataset, PixelTail] | Quarantine | None:
    """A large instance's header and where its pixel data lies (`pixel_tail`; the pixel
    stage reads the frames from there one at a time); a Quarantine for pixel data cut
    short; None: read the file whole (small, not a plain Part 10 file, or pixels the stage
    cleans only whole: `streamable`)."""
    try:
        found = read_header(path)
    except TailError as exc:
        return Quarantine("truncated-pixel-data", "read", str(exc))
    except Exception:
        return None  # read_instance tells what is wrong with it
    if found is None:
        return None
    ds, tail = found
    pixels = _routed(ds)[2] if _settings is not None else None
    if pixels is not None and pixels.selection.selects(ds) and not streamable(ds):
        return None
    expected = expected_pixel_length(ds)
    if expected is None:
        return None  # image pixel attributes missing: read whole, held for that
    if tail.value_length is not None and tail.value_length < expected:
        return Quarantine(
            "truncated-pixel-data",
            "read",
            f"pixel data has {tail.value_length} of {expected} bytes",
        )
    return ds, tail


def encode(ds: Dataset) -> bytes:
    """The instance as a DICOM file (preamble, rebuilt file meta, dataset)."""
    buffer = io.BytesIO()
    write_part10(buffer, _blank_preamble(ds))
    return buffer.getvalue()


def _blank_preamble(ds: Dataset) -> Dataset:
    """The input's preamble never goes out: it may hold a TIFF header of a dual-format
    file (PS3.10 7.5, with its own tags and text), or the spool's seal. Zeros instead."""
    if getattr(ds, "preamble", None) is not None:
        ds.preamble = bytes(128)
    return ds


class _CannotEncode(Exception):
    """pydicom cannot write the de-identified dataset (the instance's trouble, not the disk's)."""


TEMPORARY_PREFIX = ".tmp-"  # an instance being written; renamed into place when whole


def remove_temporaries(folder: Path) -> int:
    """Remove the half-written instances that workers killed mid-write left under `folder`
    (call only when no worker is writing there). Returns how many."""
    removed = 0
    for path in folder.rglob(f"{TEMPORARY_PREFIX}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_instance(
    handle: BinaryIO, ds: Dataset, tail: PixelTail | None = None, plan: FramePlan | None = None
) -> None:
    """`ds` as a Part 10 file into `handle`, its preamble zeroed. With `tail`, `ds` is a
    header and the source's Pixel Data element is copied after it, or with `plan` the clean
    frames are written after it one at a time."""
    write_part10(handle, _blank_preamble(ds))
    if plan is not None:
        write_clean_frames(plan, handle)
    elif tail is not None:
        copy_tail(tail, handle)


def _encode_into(
    folder: Path, ds: Dataset, tail: PixelTail | None = None, plan: FramePlan | None = None
) -> Path:
    """The instance written to a new temporary file in `folder` and fsynced; the caller
    renames it into place. Written straight to the file, not through bytes in memory: a
    large multi-frame costs one copy of itself, not three (measured: tests/load)."""
    temporary = folder / f"{TEMPORARY_PREFIX}{secrets.token_hex(6)}"
    if tail is not None and any(int(tag) >= PIXEL_DATA for tag in ds.keys()):  # noqa: SIM118
        raise _CannotEncode("an element past Pixel Data")
    try:
        with open(temporary, "wb") as handle:
            try:
                write_instance(handle, ds, tail, plan)
            except Exception as exc:
                if (disk := disk_error(exc)) is not None:
                    raise disk from exc  # the disk's (full, I/O error): retried, not held
                raise _CannotEncode(type(exc).__name__) from exc
            handle.flush()
            sync_output(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


# What a pseudonym or a kept UID may look like where it becomes a file or folder name: a
# value kept from the input (Retain UIDs, a CTP script) must not walk out of the outbox.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _safe_names(result: DeidResult) -> bool:
    """Whether every name the output's path is built from is one plain file name."""
    optional = (result.patient_pseudonym, result.study_uid, result.series_uid)
    return bool(_SAFE_NAME.fullmatch(result.sop_instance_uid)) and all(
        not part or _SAFE_NAME.fullmatch(part) for part in optional
    )


def deidentify_file(
    path: Path,
    target_for: Callable[[DeidResult], Path],
    origin: str,
    claims: Path | None = None,
    folder_for: Callable[[str], Path] | None = None,
) -> FileOutcome:
    """Read, de-identify, verify and write one file (in a worker process).

    `target_for` places a clean instance; anything else goes to the quarantine under the
    storage folder with its reason. Never writes an instance that did not pass the gate.
    An environment error (`is_environment_error`: disk full, I/O error, a store locked) is
    raised, so the caller keeps the input and tries again; any other failure, expected or
    not, holds this one instance with its reason and lets the run and the study go on.

    Outputs are created exclusively: with `claims` (a run's claims folder, see
    output_claims), the first input to claim an output SOP Instance UID writes it and the
    same input may write it again; without, an existing file is never replaced. A second
    input for one output is quarantined as a `duplicate`.

    A rule of `routes:` picks the engine and pixel settings; a dropping rule writes
    nothing (`dropped`). With `folder_for` (a destination's folder in the outbox), a rule's
    clean file goes to its first destination's folder and is linked into the others'.
    """
    assert _engine is not None and _settings is not None and _keyed_hash is not None, (
        "init_worker was not called"
    )
    stage = "read"
    try:
        tail: PixelTail | None = None
        read: Dataset | Quarantine | str
        header = _large_header(path)
        if isinstance(header, tuple):
            read, tail = header
        else:
            read = header if header is not None else read_instance(path)
        if isinstance(read, str):
            if origin == "offline":
                return FileOutcome("skipped", path, read)
            # The SCP acknowledged it: whatever it turned out to be, it is held, never dropped.
            read = Quarantine("unreadable", "read", read)
        stage = "route"
        route, engine, pixels = (
            (None, _engine, None) if isinstance(read, Quarantine) else _routed(read)
        )
        if route is not None and route.drop:
            return FileOutcome("dropped", path, route.name)
        stage = "deid"
        outcome: Clean | Quarantine = (
            read
            if isinstance(read, Quarantine)
            else process_instance(read, engine, pixels, tail.frames() if tail else None)
        )
        stage = "write"
        if isinstance(outcome, Clean):
            places = [folder_for(d) for d in route.destinations] if route and folder_for else []
            if places:
                target_for = lambda result: places[0] / f"{result.sop_instance_uid}.dcm"  # noqa: E731
            written = _write_clean(path, outcome, target_for, claims, _keyed_hash, tail)
            if isinstance(written, FileOutcome):
                if places and written.output is not None:
                    _link_copies(written.output, [p / written.output.name for p in places[1:]])
                return written
            outcome = written
    except Exception as exc:
        if is_environment_error(exc):
            raise
        # A bug or a library's surprise on this instance: held with its type name only (an
        # exception's text may quote a value), never retried with its whole study.
        log.warning("%s failed on one instance (%s): quarantined", stage, type(exc).__name__)
        outcome = Quarantine("processing-failed", stage, f"unexpected {type(exc).__name__}")
    entry = quarantine.put(
        _settings.storage_dir,
        path,
        reason=outcome.reason,
        stage=outcome.stage,
        message=outcome.message,
        origin=origin,
        keyed_hash=_keyed_hash,
    )
    return FileOutcome("quarantined", path, f"{outcome.reason}: {entry.id}")


def _link_copies(output: Path, copies: list[Path]) -> None:
    """The clean file in other destinations' folders too (hard links: one copy on disk).
    A link already there is this same file from an earlier attempt."""
    for copy in copies:
        copy.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(output, copy)


_DUPLICATE = Quarantine(
    "duplicate", "write", "another input of this run has the same output (SOP Instance UID)"
)


def _write_clean(
    path: Path,
    clean: Clean,
    target_for: Callable[[DeidResult], Path],
    claims: Path | None,
    keyed_hash: KeyedHash,
    tail: PixelTail | None = None,
) -> FileOutcome | Quarantine:
    """The clean instance in place (mapping sealed first), or why it cannot be."""
    if not _safe_names(clean.result):
        return Quarantine(
            "unsafe-name", "write", "a de-identified UID or ID cannot be used as a file name"
        )
    target = target_for(clean.result)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        plan = clean.pixels.plan if clean.pixels is not None else None
        temporary = _encode_into(target.parent, clean.dataset, tail, plan)
    except _CannotEncode as exc:
        return Quarantine(
            "write-failed", "write", f"cannot encode the de-identified instance ({exc})"
        )
    try:
        uid = clean.result.sop_instance_uid
        if claims is not None and not claim_output(claims, uid, path, keyed_hash):
            return _DUPLICATE
        try:
            if _mapping is not None:
                # Sealed before the instance is in place: no pseudonym leaves unrecorded.
                _mapping.record_instance(clean.originals, clean.result)
            if claims is not None:
                os.replace(temporary, target)  # this input's own path (an earlier attempt's)
            else:
                os.link(temporary, target)  # FileExistsError: another input's output
        except FileExistsError:
            return _DUPLICATE
        except Exception as exc:
            if claims is not None and not is_environment_error(exc):
                release_output(claims, uid, path, keyed_hash)
            raise
    finally:
        temporary.unlink(missing_ok=True)
    boxes = clean.pixels.reasons if clean.pixels is not None else {}
    return FileOutcome(
        "written", path, output=target, study_uid=clean.result.study_uid, pixel_boxes=boxes
    )
