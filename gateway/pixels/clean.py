"""The pixel stage: find burned-in text, blank it, check again, write the pixels back.

Detect apart from clean (STYLE.md): rules, ultrasound regions and text finding
(text_finder.py) return boxes; blanking paints only those boxes; a last look at each
frame (the pixel verify) must find nothing more to blank and none of the instance's
identifying values, or the instance goes to quarantine. Anything that cannot be
decoded or checked raises PixelError: a selected instance is never forwarded unchecked.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset

from gateway.base.identifiers import Identifiers
from gateway.pixels.anatomy import anatomy_mask, inside, outside_parts
from gateway.pixels.cine import CineMemory
from gateway.pixels.classical import bright_glyphs, drawn_glyphs, drawn_levels
from gateway.pixels.drawn_lines import holds_drawn_text
from gateway.pixels.frames import PixelDecodeError, decode_frames, holds, ocr_image, write_frames
from gateway.pixels.ocr import AllowList, Word, boxes_to_redact
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
from gateway.pixels.text_finder import FrameMemory, chosen_backend, find_words, is_available

if TYPE_CHECKING:
    from gateway.pixels.frame_files import FramePlan
    from gateway.text.recognizer import Recognizer

# Reading passes per frame before the pixel verify (redaction can expose more text).
MAX_OCR_PASSES = 3
# Inside the picture a reading of two letters or more is text, not texture, from this
# confidence; one character from SURE_CHARACTER (texture reads as "y" at 52).
PICTURE_CONFIDENCE = 50.0
SURE_CHARACTER = 80.0
SAME_BOX = 0.7
GLYPH_PAD_PX = 3  # around drawn glyphs found by their grey: their anti-aliased edges
GLYPH_REACH = 1.5
RING_PX = 2  # the ring around a blanked box whose grey fills it in the next look
BUSY_SPREAD = 20.0  # grey spread around a box beyond which it stands on texture, not screen

# PS3.16 CID 7050: Clean Pixel Data Option.
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")


class PixelError(Exception):
    """A selected instance whose pixels could not be cleaned or checked (no patient data)."""


@dataclass
class PixelReport:
    """What the stage did, for the audit trail: boxes and reasons, never the text read."""

    selected: bool
    screened: bool = False  # selected by the screen (drawn_lines.py), not by the selection
    frames: int = 0
    boxes: list[Box] = field(default_factory=list)
    overlays_removed: int = 0
    lines_reused: int = 0  # text lines not read again: same pixels in an earlier look or frame
    frames_reused: int = 0  # frames that showed an earlier frame's screen (cine.py)
    # A large instance cleaned one frame at a time: how its new Pixel Data is to be written
    # (None: its own stays, or it was cleaned whole).
    plan: FramePlan | None = field(default=None, repr=False)

    @property
    def reasons(self) -> dict[str, int]:
        """Boxes blanked by source, and (for the audit) the frames and text lines of a
        multi-frame image that reused an earlier frame's result."""
        counts: dict[str, int] = {}
        for box in self.boxes:
            counts[box.source] = counts.get(box.source, 0) + 1
        for name, count in (
            ("screened-in", int(self.screened)),
            ("frames-reused", self.frames_reused),
            ("lines-reused", self.lines_reused),
        ):
            if count:
                counts[name] = count
        return counts


def check_available() -> None:
    """Refuse to run with pixel cleaning required and no OCR (STYLE.md: availability)."""
    missing = _missing_seen_apart()
    if missing is not None:
        raise PixelError(f"OCR is required but not available: {missing}")


_CHECK = "from gateway.pixels.clean import is_available; print(is_available() or '', end='')"


@cache
def _missing_seen_apart() -> str | None:
    """`is_available()` asked of a fresh interpreter: importing OpenCV, onnxruntime and
    Tesseract costs the process that does it 39 MiB (measured), which the service process
    (it never reads a pixel) and the sender it forks would carry for nothing; the workers
    import them on first use. Asked here instead if that interpreter cannot be run. Once
    per process (0.8 s): the site and every route with OCR on ask it."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHECK],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return is_available()
    if done.returncode != 0:  # the package is not importable there: ask here
        return is_available()
    return done.stdout.strip() or None


def clean_pixels(
    ds: Dataset,
    identifiers: Identifiers,
    config: PixelConfig,
    recognizer: Recognizer | None = None,
) -> PixelReport:
    """Clean `ds` in place if the configuration selects it, or its screen finds a line drawn
    in one value on an image it does not select (drawn_lines.py); raise PixelError otherwise
    fails.
    `recognizer` (redact_identifiers mode): words in which it finds PHI are blanked too.
    (clean_stream.py does the same one frame at a time for a large instance.)"""
    if "PixelData" not in ds:
        return PixelReport(selected=False)
    screened = not config.selection.selects(ds)
    if screened and not (config.selection.screen and holds_drawn_text(ds)):
        return PixelReport(selected=False)
    report = PixelReport(selected=True, screened=screened)
    report.overlays_removed = clean_overlays(ds, identifiers, config, config.allow_list())
    try:
        frames = decode_frames(ds)
    except PixelDecodeError as exc:
        raise PixelError(f"pixel data cannot be decoded ({exc})") from exc
    report.frames = len(frames)
    cleaning = FrameCleaning(ds, identifiers, config, recognizer, frames[:0], len(frames))
    blank_boxes(frames, cleaning.ruled, cleaning.fill)
    for index in range(len(frames)):
        cleaning.look(frames[index], index)
    cleaning.report(report)
    if report.boxes or not holds(ds, frames):  # nothing blanked: the bytes and syntax stay
        write_frames(ds, frames, config.encoding)
    mark_cleaned(ds)
    return report


class FrameCleaning:
    """The stage over one instance's frames, looked at one by one in order: the fixed
    boxes (rules, ultrasound regions), the fill, the picture, and what earlier frames
    showed (cine.py) and were read as (text_finder.FrameMemory). One class for the whole
    array and for frames read one at a time, so that both blank the same boxes. `empty`:
    no frames, of the decoded frames' dtype and shape."""

    def __init__(
        self,
        ds: Dataset,
        identifiers: Identifiers,
        config: PixelConfig,
        recognizer: Recognizer | None,
        empty: np.ndarray,
        n_frames: int,
    ) -> None:
        self.ds, self.identifiers, self.config = ds, identifiers, config
        self.recognizer, self.n_frames, self.allow = recognizer, n_frames, config.allow_list()
        boxes = [box for rule in config.rules if rule.matches(ds) for box in rule.boxes_for(ds)]
        if config.us_outside_regions:
            boxes += us_region_boxes(ds)
        for box in boxes:
            if box.frame is not None and box.frame >= n_frames:
                raise ValueError(f"box is for frame {box.frame}, but there are {n_frames} frames")
        self.ruled = boxes
        self.fill = black_fill(ds, empty)
        self.backend, self.memory = chosen_backend(), FrameMemory()
        self.picture = anatomy_mask(ds, empty.shape[1], empty.shape[2])
        self.cine = CineMemory(self.picture)
        self.found: list[Box] = []

    def look(self, frame: np.ndarray, index: int) -> list[Box]:
        """Find and blank the text on `frame` (frame `index`, its fixed boxes already
        blanked), in place; the boxes found."""
        probe, view = None, None
        if self.n_frames > 1:
            if not (frame.ndim == 3 and frame.dtype == np.uint8):
                view = ocr_image(frame, self.ds)  # the probe's, and the first look's
            probe = self.cine.probe(frame, view)
        earlier = self.cine.boxes_for(probe) if probe is not None else None
        if earlier is not None:  # the same screen as an earlier frame, nothing new drawn
            found = [_on_frame(box, index) for box in earlier]
            blank_frame(frame, found, self.fill)
        else:
            found = _clean_frame(frame, index, self.ds, self.fill, self.identifiers,
                                 self.config, self.allow, self.recognizer, self.backend,
                                 self.memory, self.ruled, self.picture, view)  # fmt: skip
            if probe is not None:
                self.cine.remember(probe, found)
        self.found += found
        return found

    def report(self, report: PixelReport) -> None:
        """What was blanked and reused, into `report`."""
        report.lines_reused, report.frames_reused = self.memory.reused, self.cine.reused
        report.boxes = self.ruled + self.found


def blank_frame(frame: np.ndarray, boxes: list[Box], fill: int) -> None:
    """`boxes` (of this frame, or of every frame) blanked on one frame, in place."""
    blank_boxes(frame[np.newaxis], [_on_frame(box, None) for box in boxes], fill)


def mark_cleaned(ds: Dataset) -> None:
    """Burned In Annotation NO, and the method recorded (the pixel data was cleaned)."""
    ds.BurnedInAnnotation = "NO"
    _record_method(ds)


def _clean_frame(
    frame: np.ndarray,
    index: int,
    ds: Dataset,
    fill: int,
    identifiers: Identifiers,
    config: PixelConfig,
    allow: AllowList,
    recognizer: Recognizer | None,
    backend: str,
    memory: FrameMemory,
    ruled: list[Box],
    picture: np.ndarray,
    view: np.ndarray | None = None,
) -> list[Box]:
    """Read, blank, read again (blanking one word can make a neighbour legible) until a
    look finds nothing more to blank or MAX_OCR_PASSES + 1 looks were taken (what the last
    finds is blanked too). Looks after the first see only the neighbourhoods of what the
    previous one blanked: nothing else changed. The looks are the pixel verify: none of
    the instance's identifying values may be readable in what they leave. `view`: the
    frame's grey view when the caller already made it.

    Each look sees the blanked boxes filled with the grey around them, not black: the
    edge of a black box on a light screen would itself look like text ("|").
    """
    colour = frame.ndim == 3 and frame.dtype == np.uint8
    here = [box for box in ruled if box.frame in (None, index)]
    blanked: list[Box] = []
    kept_before: list[Box] = []
    kept_texts: list[str] = []
    near: list[Box] | None = None  # the first look sees the whole frame
    # The views of the frame before this frame's blanking: each look fills what was blanked
    # with the grey around it, which is what the view of the blanked frame would show.
    grey = _unboxed(view if view is not None else ocr_image(frame, ds), here)
    original = _unboxed(frame, here) if colour else None
    for _ in range(MAX_OCR_PASSES + 1):
        image = _unboxed(grey, blanked)
        rgb = _unboxed(original, blanked) if original is not None else None
        words, levels = [], None
        for word in find_words(image, rgb, backend, memory, near):
            if not inside(picture, word.box) and not _busy(image, word.box):
                words.append(word)  # on the screen around the picture
                continue
            # Drawn glyphs make a box text; its box then reaches all of them.
            levels = drawn_levels(image) if levels is None else levels
            glyphs = _glyph_box(image, word, levels)
            if glyphs is not None:
                words.append(dataclasses.replace(word, box=glyphs))
            elif _sure_text(word):
                words.append(word)
            else:  # texture inside the picture; its ends outside it are blanked unread
                words += [Word(part, "", 0.0) for part in outside_parts(picture, word.box)]
        chosen = boxes_to_redact(words, config.mode, allow, identifiers, recognizer)
        # A line an earlier look read and kept ("R", "7.5 MHz") is not read anew into
        # something else because the detector drew its box a pixel wider this time.
        chosen = [box for box in chosen if not any(_same_box(box, k) for k in kept_before)]
        kept = [word for word in words if word.box not in chosen]
        kept_before += [word.box for word in kept if word.text]
        kept_texts += [word.text.strip() for word in kept]
        blank_frame(frame, chosen, fill)
        blanked += [_on_frame(box, index) for box in chosen]
        if not chosen:
            break
        # Blanking changed the frame only in those boxes: the next look (and the verify)
        # looks around them; the fallback backend reads whole frames only.
        near = chosen if backend == "fast" else None
    # The looks are the verify: what they left (allowed, or not identifying in
    # redact_identifiers mode) must hold none of the instance's identifying values.
    if any(_identifying(text, identifiers) for text in kept_texts):
        raise PixelError("an identifying value is still readable after redaction")
    return blanked


def _same_box(a: Box, b: Box) -> bool:
    """Boxes of one line on two looks: they overlap by SAME_BOX of the larger one."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width > 0 and height > 0 and width * height >= SAME_BOX * max(a.area(), b.area())


def _busy(image: np.ndarray, box: Box) -> bool:
    """Whether the ring around a box is textured (anatomy reaching the image's edge), not
    the flat screen that banners and labels are drawn on."""
    around = _ring(image, box, RING_PX * 2)
    return around.size > 0 and float(around.std()) >= BUSY_SPREAD


def _ring(image: np.ndarray, box: Box, px: int) -> np.ndarray:
    """The pixels of `image` in a ring `px` wide around `box` (clipped to the image)."""
    height, width = image.shape[:2]
    inner, outer = box.clipped(width, height), box.padded(px, width, height)
    ring = np.ones((outer.y1 - outer.y0, outer.x1 - outer.x0), dtype=bool)
    ring[inner.y0 - outer.y0 : inner.y1 - outer.y0, inner.x0 - outer.x0 : inner.x1 - outer.x0] = (
        False
    )
    return image[outer.y0 : outer.y1, outer.x0 : outer.x1][ring]


def _sure_text(word: Word) -> bool:
    """Inside the picture a box is text when it reads as text (see anatomy.py) or when the
    detector is sure it is a word (a label over speckle that Tesseract reads unsure)."""
    letters = sum(c.isalnum() for c in word.text)
    return bool(
        (letters >= 2 and word.confidence >= PICTURE_CONFIDENCE)
        or (letters and word.confidence >= SURE_CHARACTER)
        or word.detected
    )


def _glyph_box(image: np.ndarray, word: Word, levels: list[int]) -> Box | None:
    """For a box on texture: the box joined with the glyphs drawn in one of the frame's
    spiking greys (`levels`) in and beside it (a line height either side: over speckle
    DBNet's box can stop short of a word's first letters), widened GLYPH_REACH glyph
    heights beyond them; else, where nothing at all was read, the box itself when it holds
    near-white glyphs (`bright_glyphs`: speckle has near-white dots too, so only then);
    else None."""
    height, width = image.shape[:2]
    box = word.box.clipped(width, height)
    line = box.y1 - box.y0
    area = Box(max(box.x0 - line, 0), box.y0, min(box.x1 + line, width), box.y1, box.source)
    crop = np.ascontiguousarray(image[area.y0 : area.y1, area.x0 : area.x1])
    if crop.size == 0:
        return None
    found = [g.moved(area.x0, area.y0) for g in drawn_glyphs(crop, False, levels)]
    if not found:
        inner = np.ascontiguousarray(image[box.y0 : box.y1, box.x0 : box.x1])
        return word.box if not word.text.strip() and bright_glyphs(inner) else None
    # The grey spikes in the strokes drawn full width; letters of thin strokes only ("I",
    # "V" in "LIVER") can lie GLYPH_REACH glyph heights beyond them.
    reach = int(GLYPH_REACH * max(glyph.y1 - glyph.y0 for glyph in found))
    glyphs = found[0]
    for glyph in found[1:]:
        glyphs = glyphs.union(glyph)
    glyphs = glyphs.padded(GLYPH_PAD_PX, width, height)
    return Box(
        min(box.x0, max(glyphs.x0 - reach, 0)), min(box.y0, glyphs.y0),
        max(box.x1, min(glyphs.x1 + reach, width)), max(box.y1, glyphs.y1),
        word.box.source, word.box.frame,
    )  # fmt: skip


def _identifying(text: str, identifiers: Identifiers) -> bool:
    """An identifier read in a word the mode keeps; a single character or a number of one
    or two digits ("7" on a depth scale) is no one's identity, though it may equal a Study
    ID or Series Number matched as a whole value."""
    if len(text) < 2 or (len(text) < 3 and not any(c.isalpha() for c in text)):
        return False
    return identifiers.found_in(text)


def _unboxed(image: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """`image` with each box filled with the median of a thin ring around it."""
    if not boxes:
        return image
    out = image.copy()
    height, width = image.shape[:2]
    for box in boxes:
        inner = box.clipped(width, height)
        if inner.area() == 0:
            continue
        around = _ring(out, box, RING_PX)
        value = np.median(around, axis=0) if around.size else 0
        out[inner.y0 : inner.y1, inner.x0 : inner.x1] = np.asarray(value).astype(image.dtype)
    return out


def _on_frame(box: Box, index: int | None) -> Box:
    return Box(box.x0, box.y0, box.x1, box.y1, box.source, index)


def clean_overlays(
    ds: Dataset, identifiers: Identifiers, config: PixelConfig, allow: AllowList
) -> int:
    """Overlay planes go, unless kept by configuration and free of text to redact (PS3.3 C.9.2).

    A kept plane with any text to redact is removed whole: a bitmap plane is cheap to lose
    and costly to leak.
    """
    if config.overlays == "remove":
        return remove_overlays(ds)
    dirty = 0
    for group in overlay_planes(ds):
        words = find_words(overlay_image(ds, group))
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
