"""The pixel stage: find burned-in text, blank it, check again, write the pixels back.

Detect apart from clean (STYLE.md): rules, ultrasound regions and OCR return boxes; blanking
paints only those boxes; a second OCR pass (the pixel verify) must find none of the
instance's identifying values, or the instance goes to quarantine. Anything that cannot be
decoded or checked raises PixelError: a selected instance is never forwarded unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from gateway.base.identifiers import Identifiers
from gateway.pixels.frames import PixelDecodeError, decode_frames, ocr_image, write_frames
from gateway.pixels.ocr import AllowList, boxes_to_redact, detect_text, is_available
from gateway.pixels.redact import (
    black_fill,
    blank_boxes,
    overlay_image,
    overlay_planes,
    remove_overlays,
    us_region_boxes,
)
from gateway.pixels.regions import Box
from gateway.pixels.rules import PixelConfig

if TYPE_CHECKING:
    from gateway.text.recognizer import Recognizer

# Reading passes per frame before the pixel verify (redaction can expose more text).
MAX_OCR_PASSES = 3

# PS3.16 CID 7050: Clean Pixel Data Option.
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")


class PixelError(Exception):
    """A selected instance whose pixels could not be cleaned or checked (no patient data)."""


@dataclass
class PixelReport:
    """What the stage did, for the audit trail: boxes and reasons, never the text read."""

    selected: bool
    frames: int = 0
    boxes: list[Box] = field(default_factory=list)
    overlays_removed: int = 0

    @property
    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for box in self.boxes:
            counts[box.source] = counts.get(box.source, 0) + 1
        return counts


def check_available() -> None:
    """Refuse to run with pixel cleaning required and no OCR (STYLE.md: availability)."""
    missing = is_available()
    if missing is not None:
        raise PixelError(f"OCR is required but not available: {missing}")


def clean_pixels(
    ds: Dataset,
    identifiers: Identifiers,
    config: PixelConfig,
    recognizer: Recognizer | None = None,
) -> PixelReport:
    """Clean `ds` in place if the configuration selects it; raise PixelError otherwise fails.
    `recognizer` (redact_identifiers mode): words in which it finds PHI are blanked too."""
    if "PixelData" not in ds or not config.selection.selects(ds):
        return PixelReport(selected=False)
    allow = config.allow_list()
    report = PixelReport(selected=True)
    report.overlays_removed = _overlays(ds, identifiers, config, allow)
    try:
        frames = decode_frames(ds)
    except PixelDecodeError as exc:
        raise PixelError(f"pixel data cannot be decoded ({exc})") from exc
    report.frames = len(frames)
    boxes = [box for rule in config.rules if rule.matches(ds) for box in rule.boxes_for(ds)]
    if config.us_outside_regions:
        boxes += us_region_boxes(ds)
    fill = black_fill(ds, frames)
    blank_boxes(frames, boxes, fill)
    for index in range(len(frames)):
        # Blanking one word can make a neighbour legible to Tesseract: read the frame again
        # until a pass finds nothing more to redact (bounded).
        for _ in range(MAX_OCR_PASSES):
            words = detect_text(ocr_image(frames[index], ds))
            found = [
                _on_frame(box, index)
                for box in boxes_to_redact(words, config.mode, allow, identifiers, recognizer)
            ]
            if not found:
                break
            blank_boxes(frames, found, fill)
            boxes += found
        # The pixel verify: nothing of the patient may be readable in the final frame.
        for word in detect_text(ocr_image(frames[index], ds)):
            if identifiers.found_in(word.text):
                raise PixelError("an identifying value is still readable after redaction")
    report.boxes = boxes
    write_frames(ds, frames, config.encoding)
    ds.BurnedInAnnotation = "NO"
    _record_method(ds)
    return report


def _on_frame(box: Box, index: int) -> Box:
    return Box(box.x0, box.y0, box.x1, box.y1, box.source, index)


def _overlays(ds: Dataset, identifiers: Identifiers, config: PixelConfig, allow: AllowList) -> int:
    """Overlay planes go, unless kept by configuration and free of text to redact (PS3.3 C.9.2).

    A kept plane with any text to redact is removed whole: a bitmap plane is cheap to lose
    and costly to leak.
    """
    if config.overlays == "remove":
        return remove_overlays(ds)
    dirty = 0
    for group in overlay_planes(ds):
        words = detect_text(overlay_image(ds, group))
        if boxes_to_redact(words, config.mode, allow, identifiers):
            for tag in [int(t) for t in ds.keys() if t.group == group]:  # noqa: SIM118
                del ds[tag]
            dirty += 1
    return dirty


def _record_method(ds: Dataset) -> None:
    """PS3.15 E.1.1: say that the pixel data was cleaned (CID 7050 113101)."""
    item = Dataset()
    item.CodeValue, item.CodeMeaning = CLEAN_PIXEL_DATA_CODE
    item.CodingSchemeDesignator = "DCM"
    codes = ds.get("DeidentificationMethodCodeSequence") or []
    if all(existing.get("CodeValue") != CLEAN_PIXEL_DATA_CODE[0] for existing in codes):
        codes.append(item)
        ds.DeidentificationMethodCodeSequence = codes
    method = ds.get("DeidentificationMethod")
    values = [] if method is None else list(method) if not isinstance(method, str) else [method]
    if "PIXELS CLEANED (OCR)" not in values:
        ds.DeidentificationMethod = [*values, "PIXELS CLEANED (OCR)"]
