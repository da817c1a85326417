"""Burned-in text on a frame: where it is (every time) and what it says (once per look).

Two backends behind one contract (`missing()` names what is not installed, STYLE.md):
- "fast": a learned text detector plus a classical OpenCV pass (detect.py) finds the lines,
  one Tesseract kept alive per worker process reads each line (line_reader.py);
- "tesseract": pytesseract over the whole frame (ocr.py), the fallback where the fast
  backend's packages are missing.
Both return `ocr.Word`s, so the redaction modes (`ocr.boxes_to_redact`) are the same.

Multi-frame images repeat their annotations on every frame: `FrameMemory` remembers what
each line crop was read as, by a hash of its pixels, so a cine loop's static text is read
once; detection still runs on every frame, so text that appears mid-loop is found.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass, field

import numpy as np

from gateway.pixels import detect, line_reader, ocr
from gateway.pixels.box_merge import areas
from gateway.pixels.regions import Box

# A detected line's box is drawn in to its ink (pixels this far from the box's border grey),
# then padded: the detector's boxes are generous, blanking should not be.
INK_CONTRAST = 40
INK_PAD_PX = 3
NEAR_PX = 32  # the neighbourhood of a blanked box looked at again (a line height or two)
CHROMA_TEXT = 100  # max - min of R, G, B where a stroke is drawn in a pure colour
CHROMA_SHARE = 0.02  # share of a box's pixels in colour that makes it a coloured line


def missing(backend: str) -> str | None:
    """None when `backend` can run here, else what is missing and how to get it."""
    if backend == "tesseract":
        return ocr.is_available()
    return detect.is_available() or line_reader.is_available()


@functools.cache
def chosen_backend() -> str:
    """The fast backend where it is installed, else pytesseract (looked up once per
    process: finding the packages costs ~1 ms, more than a text-free CT slice's look)."""
    return "fast" if missing("fast") is None else "tesseract"


def is_available() -> str | None:
    """None when some backend can read burned-in text here."""
    fast = missing("fast")
    if fast is None:
        return None
    fallback = ocr.is_available()
    return None if fallback is None else f"{fast}; or for the fallback: {fallback}"


@dataclass
class FrameMemory:
    """What line crops of one instance were read as, by the hash of their pixels."""

    readings: dict[bytes, ocr.Word] = field(default_factory=dict)
    reused: int = 0  # lines not read again because an earlier frame showed the same pixels

    def key(self, image: np.ndarray, box: Box) -> bytes:
        height, width = image.shape[:2]
        clipped = box.clipped(width, height)
        crop = np.ascontiguousarray(image[clipped.y0 : clipped.y1, clipped.x0 : clipped.x1])
        digest = hashlib.blake2b(crop.tobytes(), digest_size=16)
        digest.update(np.asarray(crop.shape, dtype=np.int64).tobytes())
        return digest.digest()


def find_words(
    image: np.ndarray,
    colour: np.ndarray | None = None,
    backend: str | None = None,
    memory: FrameMemory | None = None,
    near: list[Box] | None = None,
) -> list[ocr.Word]:
    """Text on one frame: `image` is its 8-bit grey view (`frames.ocr_image`), `colour` the
    8-bit RGB frame when it has one (yellow or red text stands out in colour). With `near`
    (the fast backend), only the neighbourhoods of those boxes are looked at: after blanking
    them, that is the only place where the frame changed."""
    backend = backend or chosen_backend()
    if backend == "tesseract":
        return ocr.detect_text(image)
    source = colour if colour is not None else image
    found = detect.find_lines(source) if near is None else _detect_near(source, near)
    boxes = [_to_ink(image, box) for box, _ in found]
    if colour is not None:
        image = _coloured_text_as_grey(image, colour, boxes)
    words = [
        dataclasses.replace(word, detected=score) if score else word
        for word, (_, score) in zip(_read(image, boxes, memory), found, strict=True)
    ]
    return words + _closer_look(image, source, words, memory)


def _closer_look(
    image: np.ndarray, source: np.ndarray, words: list[ocr.Word], memory: FrameMemory | None
) -> list[ocr.Word]:
    """Boxes read as nothing, looked at again by the learned detector alone (the classical
    pass can join two lines, or a line and an edge of anatomy, into one box Tesseract
    cannot read): the lines it is sure of inside them, read one by one. The unread box
    stays as it was; these are added."""
    height, width = image.shape[:2]
    sure: list[tuple[Box, float]] = []
    for word in words:
        if word.text.strip() or word.detected:
            continue
        area = word.box.padded(detect.LOOK_PAD_PX, width, height)
        crop = np.ascontiguousarray(source[area.y0 : area.y1, area.x0 : area.x1])
        for box, score in detect.learned_lines(crop):
            box = box.moved(area.x0, area.y0)
            if score and _inside(box, word.box):
                sure.append((box, score))
    if not sure:
        return []
    boxes = [_to_ink(image, box) for box, _ in sure]
    return [
        dataclasses.replace(word, detected=score)
        for word, (_, score) in zip(_read(image, boxes, memory), sure, strict=True)
    ]


def _inside(box: Box, outer: Box) -> bool:
    """Most of `box` lies within `outer`."""
    width = min(box.x1, outer.x1) - max(box.x0, outer.x0)
    height = min(box.y1, outer.y1) - max(box.y0, outer.y0)
    return width > 0 and height > 0 and width * height >= 0.5 * box.area()


def _read(image: np.ndarray, boxes: list[Box], memory: FrameMemory | None) -> list[ocr.Word]:
    """Each box read, or its reading remembered from an earlier look at the same pixels."""
    if memory is None:
        return line_reader.read_lines(image, boxes)
    words: list[ocr.Word | None] = []
    unread: list[tuple[int, Box, bytes]] = []
    for box in boxes:
        key = memory.key(image, box)
        known = memory.readings.get(key)
        if known is None:
            unread.append((len(words), box, key))
            words.append(None)
        else:
            memory.reused += 1
            words.append(ocr.Word(box, known.text, known.confidence))
    read = line_reader.read_lines(image, [box for _, box, _ in unread])
    for (index, _, key), word in zip(unread, read, strict=True):
        memory.readings[key] = word
        words[index] = word
    return [word for word in words if word is not None]


def _detect_near(image: np.ndarray, near: list[Box]) -> list[tuple[Box, float]]:
    """Detection in the neighbourhood of each box (NEAR_PX around it), crops merged."""
    height, width = image.shape[:2]
    out: list[tuple[Box, float]] = []
    for area in areas([box.padded(NEAR_PX, width, height) for box in near]):
        crop = np.ascontiguousarray(image[area.y0 : area.y1, area.x0 : area.x1])
        out += [(box.moved(area.x0, area.y0), s) for box, s in detect.find_lines(crop)]
    return out


def chroma(rgb: np.ndarray) -> np.ndarray:
    """max - min of R, G, B per pixel (uint8): 0 for greys, high for pure colours. Channel
    by channel, which is several times faster than a reduction over the last axis."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)


def _coloured_text_as_grey(image: np.ndarray, colour: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """The grey view, where a box holds coloured strokes (yellow, cyan, green annotations)
    its chroma instead: over grey speckle or tissue, colour is the text's only contrast."""
    out = image
    height, width = image.shape[:2]
    for box in boxes:
        inner = box.clipped(width, height)
        crop = colour[inner.y0 : inner.y1, inner.x0 : inner.x1]
        if not crop.size:
            continue
        part = chroma(crop)
        if (part >= CHROMA_TEXT).mean() >= CHROMA_SHARE:
            out = out.copy() if out is image else out
            out[inner.y0 : inner.y1, inner.x0 : inner.x1] = part
    return out


def _to_ink(image: np.ndarray, box: Box) -> Box:
    """`box` drawn in to the pixels that differ from its border's grey, then padded; kept
    whole when its border is not one grey (text over speckle: all of it may be ink)."""
    height, width = image.shape[:2]
    inner = box.clipped(width, height)
    crop = image[inner.y0 : inner.y1, inner.x0 : inner.x1].astype(np.int16)
    if crop.shape[0] < 3 or crop.shape[1] < 3:
        return box
    border = np.concatenate([crop[0], crop[-1], crop[1:-1, 0], crop[1:-1, -1]])
    grey = int(np.median(border))
    if np.percentile(np.abs(border - grey), 90) > INK_CONTRAST // 2:
        return box
    rows, cols = np.nonzero(np.abs(crop - grey) > INK_CONTRAST)
    if rows.size == 0:
        return box
    tight = Box(
        inner.x0 + int(cols.min()), inner.y0 + int(rows.min()),
        inner.x0 + int(cols.max()) + 1, inner.y0 + int(rows.max()) + 1, box.source, box.frame,
    )  # fmt: skip
    return tight.padded(INK_PAD_PX, width, height)
