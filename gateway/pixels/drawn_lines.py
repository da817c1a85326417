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
clipped to one value), clipping and noise floors. So a frame holds text when a spiking
value outside its large regions makes a cluster shaped like a line of type (wider than
high, 6-70 px, pieces of ink apart and of a few pixels each, standing out from the pixels
that touch them), when the background's own value does so on a flat label of another
grey, or when islands in a flat background or pixels far above the picture's own values
do (type anti-aliased into its surroundings keeps few pixels at its exact value). Small
type blended into the picture at the picture's own greys can still pass unseen: this is
a screen, not the cleaning.
"""

from __future__ import annotations

from collections.abc import Callable

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
BOX_PX, BOX_FILL = (40, 12), 0.6  # ...and so is a box at least this wide and high, filled
LINE_HEIGHT = (6, 70)
LINE_SHAPE = 1.5  # a line is at least this many times as wide as high
LINE_INK = 15  # ink pixels in a line
LETTERS = 3  # pieces of ink in a line
PIECE_PX = 3.0  # ink pixels a piece holds on average: strokes, not specks
EDGE_CONTRAST = 0.15  # of the frame's range, between ink and the pixels touching it
INK_SHARE = (0.03, 0.75)  # of the line's box: sparse dots and solid bars are no text
LETTER_GAP = np.ones((3, 7), np.uint8)  # closing joins the letters of a word
LABEL_SHARE = 0.5  # of the ring around a line in the background's value: one flat grey
FLAT_CONTRAST = 0.25  # of the frame's range: type on a flat background, not noise in it
ABOVE_SHARE = 99.0  # percentile: the top of the picture's own values
INK_ABOVE = 0.4  # of the frame's range: ink this far above the picture's top
THIN_SHARE = 0.35  # of the ink surviving a 3x3 erosion: strokes, not blobs


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
    values, grey = _packed(frame), frame.ndim == 2
    found: list[Box] = []
    if grey and frame.size:
        found += _lines(_above_the_picture(frame, int(frame.max())), _thin)
    for value in _spiking(values):
        ink, background = _small_parts(values == value)
        if not background:
            found += _lines(ink, _contrasting(frame, value) if grey else _any)
            continue
        # The background's own value: type in it is drawn on a flat label, while dark
        # anatomy clipped to it leaves specks on texture.
        found += [line for line in _lines(ink) if _on_label(values, line, value, grey)]
        if grey:
            found += _lines(_on_background(frame, value))
    return found


def _any(_x: int, _y: int, _crop: np.ndarray) -> bool:
    return True


def _above_the_picture(frame: np.ndarray, top: int) -> np.ndarray:
    """Type drawn in a value far above everything the picture holds (a 12-bit white over a
    CT whose bone stops at 1,200) keeps few pixels at that value when anti-aliased, but every
    pixel it covers by half or more lies above the midpoint between the picture's own top
    (its ABOVE_SHARE percentile) and the ink."""
    flat = frame.ravel()
    rank = min(int(flat.size * ABOVE_SHARE / 100), flat.size - 1)
    picture_top = float(np.partition(flat, rank)[rank])
    low = int(frame.min())
    if top - picture_top < INK_ABOVE * max(top - low, 1):
        return np.zeros(frame.shape, np.uint8)
    return _small_parts(frame >= (picture_top + top) / 2)[0]


def _thin(_x: int, _y: int, crop: np.ndarray) -> bool:
    """Strokes, not blobs: little of the ink survives a 3x3 erosion (metal clipped to the
    top value, dental fillings in a row, is solid)."""
    import cv2

    kept = int(cv2.erode(crop, np.ones((3, 3), np.uint8)).sum())
    return kept <= THIN_SHARE * int(crop.sum())


def _contrasting(frame: np.ndarray, value: int) -> Callable[[int, int, np.ndarray], bool]:
    """For ink of one grey `value`: whether the pixels touching it differ from it by
    EDGE_CONTRAST of the frame's range on average, as type does from what it is drawn on;
    a noise floor or clipped metal at one value has neighbours a few units off."""
    import cv2

    reach = EDGE_CONTRAST * max(int(frame.max()) - int(frame.min()), 1)

    def check(x: int, y: int, crop: np.ndarray) -> bool:
        height, width = crop.shape
        y0, x0 = max(y - 1, 0), max(x - 1, 0)
        area = frame[y0 : y + height + 1, x0 : x + width + 1]
        ink = np.zeros(area.shape, np.uint8)
        ink[y - y0 : y - y0 + height, x - x0 : x - x0 + width] = crop
        edge = (cv2.dilate(ink, np.ones((3, 3), np.uint8)) > 0) & (ink == 0)
        if not edge.any():
            return False
        return float(np.abs(area[edge].astype(np.float64) - value).mean()) >= reach

    return check


def _on_label(values: np.ndarray, line: Box, ink: int, grey: bool) -> bool:
    """Whether the ring around `line` is mostly one value other than its `ink`, and far from
    it (grey frames: FLAT_CONTRAST of the range): the flat label it is drawn on."""
    pad = max(2, line.height // 2)
    outer = values[max(line.y0 - pad, 0) : line.y1 + pad, max(line.x0 - pad, 0) : line.x1 + pad]
    ring = np.ones(outer.shape[:2], bool)
    top, left = line.y0 - max(line.y0 - pad, 0), line.x0 - max(line.x0 - pad, 0)
    ring[top : top + line.height, left : left + line.width] = False
    around = outer[ring]
    if around.size == 0:
        return False
    found, counts = np.unique(around, return_counts=True)
    label = int(found[np.argmax(counts)])
    if int(counts.max()) < LABEL_SHARE * around.size or label == ink:
        return False
    if not grey:  # packed colour: any other colour contrasts
        return True
    low, high = int(values.min()), int(values.max())
    return abs(label - ink) >= FLAT_CONTRAST * max(high - low, 1)


def _small_parts(mask: np.ndarray) -> tuple[np.ndarray, bool]:
    """`mask` without its large regions (uint8), and whether it had any."""
    import cv2  # in the workers only: the service process never reads a pixel

    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    small = ((stats[:, 2] <= LARGE_PX) & (stats[:, 3] <= LARGE_PX)).astype(np.uint8)
    large = len(small) - 1 - int(small[1:].sum())
    # A flat box of one value (a label drawn behind type) is a background too.
    boxes = stats[1:][(stats[1:, 2] >= BOX_PX[0]) & (stats[1:, 3] >= BOX_PX[1])]
    filled = boxes[:, 4] >= BOX_FILL * boxes[:, 2] * boxes[:, 3]
    small[0] = 0  # label 0: outside the mask
    return small[labels], large > 0 or bool(filled.any())


def _on_background(frame: np.ndarray, background: int) -> np.ndarray:
    """Type blended into a flat background keeps few pixels at its own value, but every
    pixel of it differs from the background: the small islands in a region of one value,
    where they stand out from it by FLAT_CONTRAST of the frame's range (noise does not)."""
    islands, _ = _small_parts(frame != background)
    low, high = int(frame.min()), int(frame.max())
    reach = FLAT_CONTRAST * max(high - low, 1)
    strong = (frame <= background - reach) | (frame >= background + reach)
    return islands & strong.astype(np.uint8)


def _lines(ink: np.ndarray, stands_out: Callable[[int, int, np.ndarray], bool] = _any) -> list[Box]:
    """The clusters of `ink` shaped like a line of text, of which `stands_out(x, y, crop)`
    (the crop of `ink` at x, y) holds."""
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
        # Letters are apart; a contour of one value across a smooth picture is one curve,
        # and specks of a clipped value (metal, noise) are pieces of a pixel or two.
        pieces = cv2.connectedComponents(crop, connectivity=8)[0] - 1
        if pieces >= LETTERS and pixels >= PIECE_PX * pieces and stands_out(x, y, crop):
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
