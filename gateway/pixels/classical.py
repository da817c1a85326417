"""The classical half of text finding: glyph edges standing on a quiet background.

A 3x3 morphological gradient, long straight rims removed, a horizontal close and connected
components of a line's size whose middle rows are crossed by strokes: this finds isolated
single characters ("R", "0", "5") that DBNet misses, and tells detect.py where it cannot
settle (text-like edges on texture, strong edges drawn in thin strokes) so DBNet looks only
there. A text-free CT slice leaves nothing to settle: the whole pass costs a few ms.
"""

from __future__ import annotations

import functools

import numpy as np

from gateway.pixels.box_merge import MAX_TEXT_HEIGHT
from gateway.pixels.regions import Box

__all__ = [
    "SOURCE",
    "bright_glyphs",
    "classical_boxes",
    "component_stats",
    "drawn_glyphs",
    "drawn_levels",
]

SOURCE = "ocr"  # the audit source of the boxes (regions.SOURCES)
# A 3x3 morphological gradient is the local range: glyph edges of text at
# >= ~60 grey levels from its background exceed EDGE_THRESH, smooth anatomy does not.
EDGE_THRESH = 40
# Burned-in text is usually drawn near white: edges this strong that form text-sized
# components make DBNet run even when none stands on a quiet background (text over speckle).
STRONG_EDGE_THRESH = 120
CLOSE_WIDTH = 7  # joins the glyphs of a word (gaps of 1-4 px at 7-24 px text)
MIN_TEXT_HEIGHT = 5  # a 7 px "0" has a ~5 px cap; its gradient is ~7 px tall
# Straight edges at least this long (banner rims, table tops) are not text; removed before
# the components are formed, so that text touching a rim is not joined to it. Shorter runs
# stay: the bottom edge of a line of digits runs unbroken for 50+ px.
MIN_RULE_PX = 40
RIM_END_WIDTH = 8  # the end of a bar between two rules is a component this narrow
RIM_REACH = 4  # how far beside it a rule is looked for
MAX_ASPECT = 60.0  # width / height of one line
RING_PX = 3  # the background around a candidate, read to tell text from texture
MAX_RING_EDGES = 0.25  # share of edge pixels in that ring: above it is speckle, not text
# Glyph strokes are thin, so edges cover much of a text component's middle rows; a solid
# blob (a vertebra, a table top) has edges only at its rim.
MIN_MIDDLE_EDGES = 0.2

# A strong edge is a glyph's when one of its sides is thin: eroding that side by this many
# px leaves at most this share of it (strokes of 7-24 px text are 1-4 px wide).
STROKE_ERODE = 2
SOLID_SHARE = 0.15
# Near-white text over texture: pixels this bright, in components at least this tall and at
# most this full (a line of glyphs after the horizontal close is about half ink).
BRIGHT_GLYPH = 225
MIN_GLYPH_HEIGHT = 7
MAX_GLYPH_FILL = 0.8
# Text drawn in one grey over texture: anti-aliasing leaves the 1 px strokes of small text
# (10 px capitals) below BRIGHT_GLYPH, but the strokes drawn full width keep the text's own
# grey exactly, a spike in the histogram that speckle (a smooth spread of greys) never has.
DRAWN_LEVEL = 200  # the grey text is drawn in is at least this bright
DRAWN_SPREAD = 1  # greys this close to it count as it
MIN_DRAWN_PIXELS = 15
SPIKE_REACH = 8  # greys this close to it are its neighbours in the histogram
PEAK_RATIO = 2.0  # a grey with this many times the pixels of any neighbour may be drawn text
FILLED_SHARE = 0.9  # of the greys beside it the frame must use
SPIKE_SHARE = 0.5  # in a glyph's box, the share it must hold
MAX_LEVELS = 2  # the brightest such greys looked at
STROKE_JOIN = (5, CLOSE_WIDTH)  # rows x columns closed: the bars of an "E" join into one
# Above this share of set pixels a mask's components are counted by OpenCV itself.
SPARSE_SHARE = 0.2


def _edges(image: np.ndarray) -> np.ndarray:
    """Local range (3x3 morphological gradient); for colour, the largest over channels, so
    yellow or red text on grey stays visible whatever its luminance."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    gradient = cv2.morphologyEx(image, cv2.MORPH_GRADIENT, kernel)
    return gradient if gradient.ndim == 2 else _channel_max(gradient)


def _channel_max(values: np.ndarray) -> np.ndarray:
    """The largest of the last axis's 3 channels, channel by channel (a reduction over a
    last axis of 3 is several times slower)."""
    return np.maximum(np.maximum(values[..., 0], values[..., 1]), values[..., 2])


def _without_rules(mask: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edge mask less straight steps at least MIN_RULE_PX long (banner rims, tables),
    and those steps (the rules) as a mask.

    Found on the one-directional difference, which must hold along the whole run: in
    speckle or along the foot of a line of digits it breaks, on a drawn rim it does not.
    """
    import cv2

    grey = image.astype(np.int16)
    if grey.ndim == 3:
        step_y = _channel_max(np.abs(np.diff(grey, axis=0)))
        step_x = _channel_max(np.abs(np.diff(grey, axis=1)))
    else:
        step_y, step_x = np.abs(np.diff(grey, axis=0)), np.abs(np.diff(grey, axis=1))
    rows = (step_y >= EDGE_THRESH).astype(np.uint8)
    cols = (step_x >= EDGE_THRESH).astype(np.uint8)
    rows = cv2.morphologyEx(rows, cv2.MORPH_OPEN, np.ones((1, MIN_RULE_PX), np.uint8))
    cols = cv2.morphologyEx(cols, cv2.MORPH_OPEN, np.ones((MIN_RULE_PX, 1), np.uint8))
    if not rows.any() and not cols.any():
        return mask, np.zeros_like(mask)
    rules = np.zeros_like(mask)
    rules[:-1] |= rows  # a step between rows y and y+1 marks both in the 3x3 gradient
    rules[1:] |= rows
    rules[:, :-1] |= cols
    rules[:, 1:] |= cols
    rules = cv2.dilate(rules, np.ones((1, 3), np.uint8)) | cv2.dilate(
        rules, np.ones((3, 1), np.uint8)
    )
    return mask & (1 - rules), rules


def _components(mask: np.ndarray) -> np.ndarray:
    """Stats (x, y, w, h, area) of the mask's components after a horizontal close."""
    import cv2

    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((1, CLOSE_WIDTH), np.uint8))
    return component_stats(closed)


def _text_sized(stats: np.ndarray) -> np.ndarray:
    w, h = stats[:, 2], stats[:, 3]
    return (h >= MIN_TEXT_HEIGHT) & (h <= MAX_TEXT_HEIGHT) & (w >= 2) & (w <= MAX_ASPECT * h)


def classical_boxes(image: np.ndarray) -> tuple[list[Box], list[Box]]:
    """Text-like edge components on a quiet background, and where DBNet must look.

    Text-like: text-sized, with edges across the middle rows (thin strokes). Kept when few
    edge pixels lie in the ring around it: a glyph on a flat background passes, a blob of
    speckle or body noise does not. What this pass keeps it covers whole, so DBNet must look
    only where there may be text it did not keep: a text-like component on a busy
    background, a block of lines or a textured region (edges across the middle rows of a
    component taller than a line), or strong (bright-text) edges outside what it kept. A
    smooth text-free CT slice (body outline, bone, table) has none of these.
    """
    import cv2

    _one_thread()
    edges = _edges(image)
    mask, rules = _without_rules((edges >= EDGE_THRESH).astype(np.uint8), image)
    integral = cv2.integral(mask)  # (h+1) x (w+1) sums: any rectangle's count in O(1)
    stats = _components(mask)
    stroke_like = _stroke_like(stats, integral)
    candidates = stats[_text_sized(stats) & stroke_like]
    # Taller with edges across its middle: lines closer than ~3 px joined into one block,
    # or a textured region (speckle) that text may be drawn over. DBNet looks at both.
    look_at = _stat_boxes(stats[(stats[:, 3] > MAX_TEXT_HEIGHT) & stroke_like])
    height, width = mask.shape

    def count(x0: int, y0: int, x1: int, y1: int) -> int:
        return int(integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0])

    boxes: list[Box] = []
    for x, y, w, h, _area in candidates.tolist():
        if _rim_end(rules, x, y, w, h):
            continue
        x0, y0 = max(x - RING_PX, 0), max(y - RING_PX, 0)
        x1, y1 = min(x + w + RING_PX, width), min(y + h + RING_PX, height)
        ring_area = (x1 - x0) * (y1 - y0) - w * h
        ring_edges = count(x0, y0, x1, y1) - count(x, y, x + w, y + h)
        if ring_area > 0 and ring_edges <= MAX_RING_EDGES * ring_area:
            boxes.append(Box(x, y, x + w, y + h, SOURCE))
        else:
            look_at.append(Box(x, y, x + w, y + h, SOURCE))
    strong = (edges >= STRONG_EDGE_THRESH).astype(np.uint8)
    for box in boxes:  # what was kept is covered already
        strong[box.y0 : box.y1, box.x0 : box.x1] = 0
    strong_stats = _components(strong)
    # One noisy pixel makes a 5 px edge blob; a bright glyph over texture is taller.
    tall = _text_sized(strong_stats) & (strong_stats[:, 3] > MIN_TEXT_HEIGHT + 1)
    strong_boxes = _stat_boxes(
        strong_stats[tall & _stroke_like(strong_stats, cv2.integral(strong))]
    )
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    look_at += [box for box in strong_boxes if _thin_strokes(grey, box)]
    return boxes, look_at


@functools.cache
def _one_thread() -> None:
    """OpenCV in a worker runs one thread, as Tesseract and onnxruntime do: worker
    processes, not threads, share the cores (its own pool only added CPU time here)."""
    import cv2

    cv2.setNumThreads(1)


def _rim_end(rules: np.ndarray, x: int, y: int, w: int, h: int) -> bool:
    """Whether a narrow component is the square end of a bar or table top: rules (its
    long rims) leave its top and its bottom towards one side only. It reads as "I" or "L",
    and blanking it would only make a new end one box further on. A colon between the
    fields of a banner has the banner's rims on both sides: it stays a candidate."""
    if w > RIM_END_WIDTH:
        return False
    for rows in (slice(max(y - 1, 0), y + 2), slice(max(y + h - 2, 0), y + h + 1)):
        left = bool(rules[rows, max(x - RIM_REACH, 0) : x].any())
        right = bool(rules[rows, x + w : x + w + RIM_REACH].any())
        if left == right:
            return False
    return True


def bright_glyphs(image: np.ndarray) -> list[Box]:
    """Text drawn near white over a busy picture ("LIVER" over ultrasound speckle), which
    both passes above can miss: the brightest pixels, joined along a line, in components of
    a glyph's height and with a glyph's share of ink (speckle's bright dots are smaller,
    a bright reflector is solid)."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    bright = (grey >= BRIGHT_GLYPH).astype(np.uint8)
    if int(bright.sum()) < MIN_TEXT_HEIGHT * MIN_TEXT_HEIGHT:
        return []
    stats = _components(bright)
    fill = stats[:, 4] / np.maximum(stats[:, 2] * stats[:, 3], 1)
    glyphs = _text_sized(stats) & (stats[:, 3] >= MIN_GLYPH_HEIGHT) & (fill <= MAX_GLYPH_FILL)
    return _stat_boxes(stats[glyphs])


def drawn_glyphs(
    image: np.ndarray, near_white: bool = True, levels: list[int] | None = None
) -> list[Box]:
    """Glyphs drawn in one bright grey over texture ("LIVER" over speckle): `bright_glyphs`
    (with `near_white`), and the strokes of a grey that spikes in the histogram (`levels`:
    those of the frame this is a crop of, by default the image's own), joined into
    components of a glyph's height where that grey holds most of the pixels near it (in
    speckle each grey holds a few) and is drawn thin (a saturated reflector is solid)."""
    import cv2

    found = bright_glyphs(image) if near_white else []
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    for level in drawn_levels(grey) if levels is None else levels:
        found += _drawn_in(grey, level)
    return found


def drawn_levels(grey: np.ndarray) -> list[int]:
    """The bright greys of a frame text may be drawn in: each with PEAK_RATIO times the
    pixels of any grey beside it, in a part of the histogram the frame fills (an image of
    a few greys stretched apart, or colour-mapped, has a spike at every grey it uses);
    the window's clipping grey 255 is not one."""
    counts = np.bincount(grey.ravel(), minlength=256)
    padded = np.pad(counts, SPIKE_REACH)
    shifted = [padded[SPIKE_REACH + d : SPIKE_REACH + d + 256]
               for d in range(-SPIKE_REACH, SPIKE_REACH + 1) if abs(d) > DRAWN_SPREAD]  # fmt: skip
    beside = np.max(shifted, axis=0)
    filled = np.mean([level > 0 for level in shifted], axis=0)
    spiky = (counts >= MIN_DRAWN_PIXELS) & (counts >= PEAK_RATIO * beside)
    spiky &= filled >= FILLED_SHARE
    spiky[:DRAWN_LEVEL] = False
    spiky[255] = False  # where a window's clipping piles up all that is brighter
    levels = np.flatnonzero(spiky)
    return [] if levels.size > MAX_LEVELS * 2 else levels[-MAX_LEVELS:].tolist()


def _drawn_in(grey: np.ndarray, level: int) -> list[Box]:
    """The glyph-sized components of `grey`'s pixels at `level` (see `drawn_glyphs`)."""
    import cv2

    mask = cv2.inRange(grey, level - DRAWN_SPREAD, level + DRAWN_SPREAD) // 255
    joined = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones(STROKE_JOIN, np.uint8))
    stats = component_stats(joined)
    stats = stats[_text_sized(stats) & (stats[:, 4] >= MIN_DRAWN_PIXELS)]
    if not len(stats):
        return []
    near = cv2.inRange(grey, level - SPIKE_REACH, level + SPIKE_REACH) // 255
    solid = cv2.erode(mask, np.ones((3, 3), np.uint8))
    sums = [cv2.integral(m) for m in (mask, near, solid)]
    x0, y0 = stats[:, 0], stats[:, 1]
    x1, y1 = x0 + stats[:, 2], y0 + stats[:, 3]
    drawn, around, thick = (s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0] for s in sums)
    keep = (drawn >= MIN_DRAWN_PIXELS) & (drawn >= SPIKE_SHARE * around)
    keep &= thick <= SOLID_SHARE * drawn
    return _stat_boxes(stats[keep])


def _thin_strokes(grey: np.ndarray, box: Box) -> bool:
    """Whether the bright or the dark side of a strong edge is drawn in thin strokes, as
    glyphs are, rather than being a solid area (a body outline, bone against fat): the side
    left after an erosion of STROKE_ERODE px is small."""
    import cv2

    height, width = grey.shape
    area = box.padded(RING_PX, width, height)
    crop = grey[area.y0 : area.y1, area.x0 : area.x1]
    middle = (int(crop.min()) + int(crop.max())) // 2
    kernel = np.ones((2 * STROKE_ERODE + 1, 2 * STROKE_ERODE + 1), np.uint8)
    for side in (crop > middle, crop <= middle):
        drawn = int(side.sum())
        if drawn and cv2.erode(side.astype(np.uint8), kernel).sum() <= SOLID_SHARE * drawn:
            return True
    return False


def _stat_boxes(stats: np.ndarray) -> list[Box]:
    """Boxes of connected-component statistics rows (x, y, w, h, area)."""
    return [Box(x, y, x + w, y + h, SOURCE) for x, y, w, h, _ in stats.tolist()]


def _stroke_like(stats: np.ndarray, integral: np.ndarray) -> np.ndarray:
    """Which components have edges across their middle third of rows (MIN_MIDDLE_EDGES)."""
    x, y, w, h = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    top, bottom = y + h // 3, y + h - h // 3
    edges = integral[bottom, x + w] - integral[top, x + w] - integral[bottom, x] + integral[top, x]
    return edges >= MIN_MIDDLE_EDGES * w * (bottom - top)


def component_stats(mask: np.ndarray) -> np.ndarray:
    """(x, y, w, h, area) of each 8-connected component of a 0/1 uint8 mask, in OpenCV's
    label order, as `cv2.connectedComponentsWithStats` gives them less the background.

    OpenCV's statistics visit every pixel (~1.7 ms for 512x512, the largest cost of a
    text-free slice); a sparse mask's are taken from its set pixels alone (~0.3 ms).
    """
    import cv2

    points = cv2.findNonZero(mask)
    if points is None:
        return np.zeros((0, 5), np.int32)
    if len(points) > SPARSE_SHARE * mask.size:
        return cv2.connectedComponentsWithStats(mask, connectivity=8)[2][1:]
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    points = points.reshape(-1, 2)
    which = labels[points[:, 1], points[:, 0]]
    order = np.argsort(which, kind="stable")  # raster order kept within a component
    which, xs, ys = which[order], points[order, 0], points[order, 1]
    starts = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
    ends = np.r_[starts[1:], len(which)]
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    y0, y1 = ys[starts], ys[ends - 1]
    return np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1, ends - starts], axis=1).astype(np.int32)
