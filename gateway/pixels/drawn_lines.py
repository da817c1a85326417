"""Lines drawn in one stored value: the screen for instances the selection leaves out.

The pixel selection names the instances known to carry burned-in text (ultrasound, screen
captures, Burned In Annotation YES). A CT, MR or NM image outside it may still carry a
name or an ID a console drew into the pixels, and running the text finder on every such
image costs too much and sees text in anatomy (on the shared samples it boxed bone and
lung markings in 8 of 21 text-free CT/MR/NM images). This screen asks a cheaper, stricter
question: does the frame hold a line of glyphs drawn in one exact stored value?

A console draws text with one value (white, a fixed grey, the maximum); the strokes' core
pixels all hold it, so it spikes in the frame's histogram against the values beside it.
Anatomy's values are continuous: its only spikes are flat backgrounds (padding, air
clipped to one value), which form large regions, not lines. So: the spiking values, their
pixels outside large regions, joined across the gaps between letters, and a cluster of
them shaped like a line of text (wider than high, 6-70 px high, ink neither sparse nor
solid) makes the instance selected, and the full pixel stage runs on it. Anti-aliased
thin type keeps few pixels at the exact value, so small blended text can pass unseen:
this is a screen, not the cleaning.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.pixels.frames import PixelDecodeError, decode_frames, holds
from gateway.pixels.regions import Box

__all__ = ["drawn_lines", "holds_drawn_text"]

SCREENED_BITS = (8, 16)
MIN_INK = 12  # pixels of one value before it can be ink
SPIKE = 4.0  # ...and this many times as many as either neighbouring value
MAX_VALUES = 6  # the most common spiking values looked at
LARGE_PX = 80  # a region this wide or high in one value is a background, not a glyph
LINE_HEIGHT = (6, 70)
LINE_SHAPE = 1.5  # a line is at least this many times as wide as high
LINE_INK = 15  # ink pixels in a line
LETTERS = 3  # pieces of ink in a line
INK_SHARE = (0.03, 0.75)  # of the line's box: sparse dots and solid bars are no text
LETTER_GAP = np.ones((3, 7), np.uint8)  # closing joins the letters of a word
FLAT_CONTRAST = 0.25  # of the frame's range: type on a flat background, not noise in it


def holds_drawn_text(ds: Dataset) -> bool:
    """Whether any frame of `ds` holds a line drawn in one stored value, or its native
    pixel data sets bits outside Bits Stored, where a retired overlay hides (PS3.5 8.1.2;
    decoding masks them, so no look would see it; the stage clears them). An instance
    that cannot be decoded holds none here: the screen passes it as it passed before; so
    do pixel data no console displays as drawn (1-bit segmentations, 32-bit dose grids)."""
    if ds.get("BitsAllocated") not in SCREENED_BITS:
        return False
    try:
        frames = decode_frames(ds)
    except PixelDecodeError:
        return False
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    native = syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    if native and not holds(ds, frames):
        return True
    return any(drawn_lines(frame) for frame in frames)


def drawn_lines(frame: np.ndarray) -> list[Box]:
    """The lines of text drawn in one stored value on one decoded frame (grey, or colour
    with its samples last), as boxes; [] when there are none."""
    values = _packed(frame)
    found: list[Box] = []
    for value in _spiking(values):
        ink, background = _small_parts(values == value)
        found += _lines(ink)
        if background and frame.ndim == 2:
            found += _lines(_on_background(frame, value))
    return found


def _small_parts(mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """`mask` without its large regions (uint8), and whether it had any."""
    import cv2  # in the workers only: the service process never reads a pixel

    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    small = ((stats[:, 2] <= LARGE_PX) & (stats[:, 3] <= LARGE_PX)).astype(np.uint8)
    large = len(small) - 1 - int(small[1:].sum())
    small[0] = 0  # label 0: outside the mask
    return small[labels], large > 0


def _on_background(frame: np.ndarray, background: int) -> np.ndarray:
    """Type blended into a flat background keeps few pixels at its own value, but every
    pixel of it differs from the background: the small islands in a region of one value,
    where they stand out from it by FLAT_CONTRAST of the frame's range (noise does not)."""
    islands, _ = _small_parts(frame != background)
    low, high = int(frame.min()), int(frame.max())
    reach = FLAT_CONTRAST * max(high - low, 1)
    strong = (frame <= background - reach) | (frame >= background + reach)
    return islands & strong.astype(np.uint8)


def _lines(ink: np.ndarray) -> list[Box]:
    """The clusters of `ink` shaped like a line of text."""
    import cv2

    if int(ink.sum()) < LINE_INK:
        return []
    joined = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, LETTER_GAP)
    _, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    found = []
    for x, y, width, height, _area in stats[1:]:
        if not (LINE_HEIGHT[0] <= height <= LINE_HEIGHT[1] and width >= LINE_SHAPE * height):
            continue
        crop = ink[y : y + height, x : x + width]
        pixels = int(crop.sum())
        if not (pixels >= LINE_INK and INK_SHARE[0] <= pixels / (width * height) <= INK_SHARE[1]):
            continue
        # Letters are apart; a contour of one value across a smooth picture is one curve.
        if cv2.connectedComponents(crop, connectivity=8)[0] - 1 >= LETTERS:
            found.append(Box(int(x), int(y), int(x + width), int(y + height), "drawn"))
    return found


def _packed(frame: np.ndarray) -> np.ndarray:
    """One integer per pixel: the grey, or a colour's samples packed together."""
    if frame.ndim == 3:
        samples = frame.astype(np.int64)
        return (samples[..., 0] << 32) | (samples[..., 1] << 16) | samples[..., 2]
    return frame


def _spiking(values: np.ndarray) -> list[int]:
    """The values held by many more pixels than the values next to them, most held first."""
    found, counts = np.unique(values, return_counts=True)
    if len(found) < 3:
        return [int(v) for v in found]
    below = np.concatenate(([0], counts[:-1]))
    above = np.concatenate((counts[1:], [0]))
    spikes = np.nonzero((counts >= MIN_INK) & (counts >= SPIKE * np.maximum(below, above)))[0]
    spikes = spikes[np.argsort(-counts[spikes], kind="stable")][:MAX_VALUES]
    return [int(found[i]) for i in spikes]
