"""What the site's settings make of a quarantined original now: the cleaned instance, the
boxes the pixel stage blanked, and the header diff.

The quarantine keeps the original and the reason, not the cleaned copy (the pipeline never
writes an instance that failed the verify gate). So the console computes it again, with the
engine and pixel settings the workers use: de-identification, then pixel cleaning. It is a
preview for a reviewer's eyes only; it is never forwarded, and a release sends the original
back through the whole pipeline. The result is cached beside the other console files in
the storage folder (`cleaned.dcm`, `boxes.json`, 0600) and deleted with the entry.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from gateway.base.durable import create_folder, create_private_file
from gateway.base.identifiers import collect_identifiers
from gateway.deid.engine import DeidError
from gateway.deid.pseudonyms import Pseudonyms
from gateway.pipeline.files import EngineSettings, with_table, write_instance
from gateway.pipeline.pixel_tail import PixelTail, TailError, read_header
from gateway.pixels.clean import PixelError, clean_pixels
from gateway.pixels.clean_stream import clean_pixels_streamed, streamable
from gateway.pixels.frame_files import FramePlan
from gateway.pixels.regions import Box

__all__ = ["CACHE_DIR", "DiffRow", "Preview", "cache_folder", "forget", "header_diff", "preview"]

log = logging.getLogger(__name__)

CACHE_DIR = "cache"  # under storage_dir/console
CLEANED_NAME = "cleaned.dcm"
BOXES_NAME = "boxes.json"
MAX_DIFF_ROWS = 400
MAX_VALUE = 120  # characters of a value shown in the diff


@dataclass
class Preview:
    """The cleaned instance (None when cleaning failed: `problem` says at which stage)."""

    cleaned: Path | None
    boxes: list[Box] = field(default_factory=list)
    problem: str = ""


@dataclass(frozen=True)
class DiffRow:
    tag: str
    keyword: str
    original: str
    cleaned: str  # "(removed)" when the element is gone


def cache_folder(console_folder: Path, entry_id: str) -> Path:
    if not entry_id or "/" in entry_id or entry_id.startswith("."):
        raise KeyError(entry_id)
    return console_folder / CACHE_DIR / entry_id


def forget(console_folder: Path, entry_id: str) -> None:
    """Delete what the console derived from an entry (pictures, the cleaned copy)."""
    shutil.rmtree(cache_folder(console_folder, entry_id), ignore_errors=True)


def forget_gone(console_folder: Path, live_ids: set[str]) -> int:
    """Delete the caches of entries no longer in the quarantine (released or purged by the
    command line, or by age): derived pictures of an original must not outlive it."""
    root = console_folder / CACHE_DIR
    gone = [p for p in root.iterdir() if p.name not in live_ids] if root.is_dir() else []
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)
    return len(gone)


def preview(original: Path, folder: Path, settings: EngineSettings) -> Preview:
    """The cleaned copy of `original` and its boxes, from the cache or computed now."""
    cleaned, boxes_file = folder / CLEANED_NAME, folder / BOXES_NAME
    if boxes_file.is_file():
        stored = json.loads(boxes_file.read_text(encoding="utf-8"))
        return Preview(
            cleaned if cleaned.is_file() else None,
            [Box(**box) for box in stored["boxes"]],
            stored["problem"],
        )
    result = _compute(original, settings)
    create_folder(folder)
    folder.chmod(0o700)
    if result.dataset is not None:
        temporary = folder / f".{CLEANED_NAME}"
        temporary.unlink(missing_ok=True)
        create_private_file(temporary, b"")
        if result.tail is None:
            result.dataset.save_as(temporary, enforce_file_format=False)
        else:
            with open(temporary, "wb") as handle:  # the header, then the frames or the copy
                write_instance(handle, result.dataset, result.tail, result.plan)
        temporary.replace(cleaned)
    record = {"boxes": [_box_fields(b) for b in result.boxes], "problem": result.problem}
    boxes_file.unlink(missing_ok=True)
    create_private_file(boxes_file, json.dumps(record).encode("utf-8"), sync=False)
    return Preview(cleaned if result.dataset is not None else None, result.boxes, result.problem)


@dataclass
class _Computed:
    dataset: Dataset | None
    boxes: list[Box]
    problem: str
    # A large original read as its header (`dataset`): where its pixels lie, and the frames
    # to write when the pixel stage blanked any (None: they are copied as they are).
    tail: PixelTail | None = None
    plan: FramePlan | None = None


def _box_fields(box: Box) -> dict[str, object]:
    return {"x0": box.x0, "y0": box.y0, "x1": box.x1, "y1": box.y1, "source": box.source,
            "frame": box.frame}  # fmt: skip


def _compute(original: Path, settings: EngineSettings) -> _Computed:
    """De-identification then pixel cleaning, as a worker does them (no verify gate: the
    reviewer is the gate here). Failures are named by stage and exception type only."""
    engine = settings.profile.build_engine(
        Pseudonyms(settings.secret, settings.site_id), settings.storage_dir
    )
    engine.set_free_text(settings.free_text)
    with_table(engine, settings)
    try:
        # A large original is read as its header and cleaned frame by frame, as a worker
        # does: a reviewer's click must not load a 2 GiB loop into the service process.
        headed = read_header(original)
        tail = None if headed is None else headed[1]
        if headed is not None and streamable(headed[0]):
            ds = headed[0]
        else:
            ds, tail = dcmread(original, force=True), None
        identifiers = collect_identifiers(ds, engine.profile.keeps)
    except TailError:
        return _Computed(None, [], "read: the original's pixel data is cut short")
    except Exception as exc:
        return _Computed(None, [], f"read: the original cannot be parsed ({type(exc).__name__})")
    try:
        engine.deidentify(ds, identifiers)
    except DeidError as exc:  # its message is a quarantine reason's: no patient data
        return _Computed(None, [], f"deid: {exc.reason}: {exc}")
    except Exception as exc:  # another's text may quote a value: its type only
        return _Computed(None, [], f"deid: cannot de-identify ({type(exc).__name__})")
    boxes: list[Box] = []
    plan = None
    if settings.pixels is not None:
        try:
            if tail is None:
                report = clean_pixels(ds, identifiers, settings.pixels, engine.recognizer)
            else:
                report = clean_pixels_streamed(
                    ds, identifiers, settings.pixels, engine.recognizer, tail.frames()
                )
                plan = report.plan
            boxes = list(report.boxes)
        except PixelError as exc:  # a quarantine message: no patient data
            return _Computed(None, [], f"pixels: {exc}")
        except Exception as exc:
            log.info("console preview: pixel cleaning failed (%s)", type(exc).__name__)
            return _Computed(None, [], f"pixels: cannot clean ({type(exc).__name__})")
    return _Computed(ds, boxes, "", tail, plan)


def _shown(element: DataElement) -> str:
    if element.VR == "SQ":
        return f"(sequence of {len(element.value)} items)"
    if element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return f"({element.VR}, {len(element.value or b'')} bytes)"
    text = str(element.value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def header_diff(original: Dataset, cleaned: Dataset) -> list[DiffRow]:
    """Top-level elements whose value the cleaning changed, added or removed (pixel data
    aside), in tag order. Holds patient data: for reviewers' eyes only, never logged."""
    rows: list[DiffRow] = []
    tags = sorted(set(original.keys()) | set(cleaned.keys()))
    for tag in tags:
        if tag == 0x7FE00010 or len(rows) >= MAX_DIFF_ROWS:
            continue
        before = original.get(tag)
        after = cleaned.get(tag)
        shown_before = _shown(before) if before is not None else "(absent)"
        shown_after = _shown(after) if after is not None else "(removed)"
        if shown_before == shown_after and (before is None or after is None or
                                            before.value == after.value):  # fmt: skip
            continue
        keyword = (before or after).keyword or "(private)"  # type: ignore[union-attr]
        rows.append(DiffRow(f"({tag.group:04X},{tag.element:04X})", keyword, shown_before,
                            shown_after))  # fmt: skip
    return rows
