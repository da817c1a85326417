"""Per-instance processing: de-identify, then verify; the answer is clean, or a quarantine.

CTP-style one-method contract (see STYLE.md): `process_instance(ds, engine)` returns a
`Clean` instance or a `Quarantine` that carries a reason code, the stage and a message with
no patient data. Nothing here touches files; callers decide where bytes go.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import UID

from gateway.base.element_values import element
from gateway.base.identifiers import collect_identifiers
from gateway.base.transfer_syntaxes import SUPPORTED
from gateway.deid.document_placeholder import set_document
from gateway.deid.engine import DeidError, DeidResult, Engine
from gateway.deid.free_text import DEFAULT_SETTINGS, TextCleaner
from gateway.documents.encapsulated import (
    DocumentError,
    clean_encapsulated_document,
    placeholder_document,
)
from gateway.pipeline.leak_cleaning import clean_leaks
from gateway.pixels import ocr
from gateway.pixels.clean import PixelError, PixelReport, clean_pixels
from gateway.pixels.clean_stream import clean_pixels_streamed
from gateway.pixels.frame_files import PixelSource
from gateway.pixels.rules import PixelConfig
from gateway.stores.mapping_records import InstanceOriginals, MappingUnavailableError
from gateway.verify.leaks import find_leaks

log = logging.getLogger(__name__)

# Native (uncompressed) transfer syntaxes, whose pixel data length we can check without
# decoding anything.
_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})


@dataclass(frozen=True)
class Quarantine:
    """Why an instance was not released. `message` never holds patient data."""

    reason: str
    stage: str
    message: str


@dataclass
class Clean:
    dataset: Dataset
    result: DeidResult
    # The input's identity, only for the sealed re-identification mapping (keystore.py).
    originals: InstanceOriginals = field(repr=False)
    # What the pixel stage blanked (boxes and their sources), when it ran.
    pixels: PixelReport | None = None


def is_environment_error(exc: BaseException) -> bool:
    """Whether `exc` is the machine's trouble (a disk full or failing, a store locked too
    long, a program missing) rather than the instance's: such an error is raised, so the
    input is kept and tried again; anything else holds the one instance in the quarantine.

    An OSError without an errno is a library's complaint about data (pydicom, Pillow), not
    the disk's, unless it wraps one that has: pydicom re-raises a failed write as a new
    OSError naming the tag, without the errno. MappingUnavailableError is the mapping
    store's (an OSError too).
    """
    if isinstance(exc, MappingUnavailableError | sqlite3.OperationalError):
        return True
    return disk_error(exc) is not None


def disk_error(exc: BaseException) -> OSError | None:
    """The OSError with an errno (the disk's or the system's) that `exc` is or wraps."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain of causes is short; a cycle must not hang
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def configure_pydicom() -> None:
    """Keep pydicom from logging element values: its validation warnings quote them.

    Values are not validated on read (a malformed one surfaces as an error instead) and
    pydicom's logger only reports errors.
    """

    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")


def transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return str(syntax)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is False:
        return "1.2.840.10008.1.2.1" if little is not False else "1.2.840.10008.1.2.2"
    return "1.2.840.10008.1.2"


_UNDEFINED_LENGTH = 0xFFFFFFFF


def truncated_element(ds: Dataset) -> int | None:
    """The first top-level element whose value is shorter than its declared length.

    pydicom stops quietly at the end of a file cut short and keeps the partial value; a
    partial value (a sequence cut in half, a name cut after three letters) cannot be trusted
    to be de-identified, so such an instance is quarantined.
    """
    for tag in list(ds.keys()):
        raw = element(ds, tag)
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if (
            isinstance(value, bytes)
            and length is not None
            and length != _UNDEFINED_LENGTH
            and len(value) < length
        ):
            return int(tag)
    return None


def _check_readable(ds: Dataset) -> Quarantine | None:
    cut = truncated_element(ds)
    if cut is not None:
        return Quarantine(
            "truncated", "read", f"file ends inside element ({cut >> 16:04X},{cut & 0xFFFF:04X})"
        )
    syntax = UID(transfer_syntax(ds))
    if syntax not in SUPPORTED:
        return Quarantine("unsupported-transfer-syntax", "read", f"transfer syntax {syntax}")
    if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
        return Quarantine("not-an-instance", "read", "no SOP Class UID or SOP Instance UID")
    if "PixelData" in ds:
        expected = expected_pixel_length(ds)
        if expected is None:
            return Quarantine(
                "invalid-value", "read", "image pixel attributes are missing or not numbers"
            )
        actual = len(ds.get_item("PixelData").value or b"")
        if str(syntax) in _NATIVE and actual < expected:
            return Quarantine(
                "truncated-pixel-data", "read", f"pixel data has {actual} of {expected} bytes"
            )
    return None


def expected_pixel_length(ds: Dataset) -> int | None:
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    if samples == 3 and str(ds.get("PhotometricInterpretation", "")).endswith("_422"):
        samples = 2  # YBR_FULL_422 stored natively: two luminance samples share Cb and Cr
    total_bits = rows * columns * samples * frames * bits
    return (total_bits + 7) // 8


def process_instance(
    ds: Dataset,
    engine: Engine,
    pixels: PixelConfig | None = None,
    frames: PixelSource | None = None,
) -> Clean | Quarantine:
    """De-identify one instance (tags, then pixels when `pixels` is set) and let it pass only
    if the verify gate finds nothing. `frames`: `ds` was read without its Pixel Data, which
    lies there; the pixel stage reads it one frame at a time (clean_stream.py)."""
    try:
        problem = _check_readable(ds)
        if problem is not None:
            return problem
        identifiers = collect_identifiers(ds, engine.profile.keeps)
        originals = InstanceOriginals.from_dataset(ds)  # before the engine rewrites ds
    except Exception as exc:  # a malformed element surfaces when it is first read
        return Quarantine("unreadable", "read", f"cannot parse the dataset ({type(exc).__name__})")
    try:
        result = engine.deidentify(ds, identifiers)
    except DeidError as exc:
        return Quarantine(exc.reason, "deid", str(exc))  # e.g. unlisted-patient
    except Exception as exc:
        if is_environment_error(exc):
            raise  # a CTP @integer table on a full disk: retried, not held
        return Quarantine("deid-failed", "deid", f"cannot de-identify ({type(exc).__name__})")
    recognizer = getattr(engine, "recognizer", None)
    free_text = getattr(engine, "free_text", DEFAULT_SETTINGS)
    cleaner = TextCleaner(identifiers, recognizer, result.date_shift_days)
    document, result.document = result.document, None  # never leaves this function
    if document is not None and recognizer is not None:
        problem = _clean_document(ds, document, cleaner)
        if problem is not None:
            return problem
    elif document is not None:
        with contextlib.suppress(DocumentError):  # a kind it knows not: the engine's stays
            placeholder_document(ds)  # valid for its kind: CDA, STL, OBJ, PDF
    report = None
    if pixels is not None:
        try:
            report = (
                clean_pixels(ds, identifiers, pixels, recognizer)
                if frames is None
                else clean_pixels_streamed(ds, identifiers, pixels, recognizer, frames)
            )
        except PixelError as exc:
            return Quarantine("pixels-failed", "pixels", str(exc))
        except Exception as exc:
            if is_environment_error(exc):
                raise  # disk, tesseract binary gone: retried, not held
            return Quarantine(
                "pixels-failed", "pixels", f"cannot clean pixel data ({type(exc).__name__})"
            )
    identifiers.add_uids(result.remapped_uids - result.kept_uids)
    try:
        leaks = find_leaks(ds, identifiers, result.produced)
    except Exception as exc:
        return Quarantine("verify-failed", "verify", f"cannot verify ({type(exc).__name__})")
    if leaks and free_text.clean_on_leak and clean_leaks(ds, leaks, cleaner):
        try:
            leaks = find_leaks(ds, identifiers, result.produced)
        except Exception as exc:
            return Quarantine("verify-failed", "verify", f"cannot verify ({type(exc).__name__})")
    if leaks:
        shown = "; ".join(str(leak) for leak in leaks[:10])
        more = f" (+{len(leaks) - 10} more)" if len(leaks) > 10 else ""
        return Quarantine("identifier-found", "verify", shown + more)
    return Clean(ds, result, originals, report)


def _clean_document(ds: Dataset, document: bytes, cleaner: TextCleaner) -> Quarantine | None:
    """The encapsulated document cleaned in place of the engine's placeholder (PDF pages
    rendered with PHI blanked, CDA text cleaned); a document that cannot be made safe holds
    the instance."""
    set_document(ds, document)
    try:
        clean_encapsulated_document(ds, cleaner.spans, _ocr_words(), cleaner.shift_days)
    except DocumentError as exc:
        return Quarantine("document-not-cleaned", "documents", str(exc))
    except Exception as exc:
        if is_environment_error(exc):
            raise
        return Quarantine(
            "document-not-cleaned", "documents", f"cannot clean the document ({type(exc).__name__})"
        )
    return None


def _ocr_words() -> Callable[[Image.Image], list[tuple[str, tuple[int, int, int, int]]]] | None:
    """Words and boxes Tesseract reads on a rendered page, when Tesseract is here: scanned
    pages can then be cleaned; without it such a page holds the instance."""
    if ocr.is_available() is not None:
        return None

    def read(image: Image.Image) -> list[tuple[str, tuple[int, int, int, int]]]:
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return [
            (word.text, (word.box.x0, word.box.y0, word.box.x1, word.box.y1))
            for word in ocr.detect_text(gray)
        ]

    return read
