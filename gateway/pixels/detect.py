"""Find where burned-in text is, fast: a DBNet text detector beside a classical OpenCV pass.

Reading every frame with Tesseract is slow (~0.5 ultrasound frames/s) and misses text, so
finding text is apart from reading it (`line_reader.py` reads the boxes found here).

- DBNet (PaddleOCR's PP-OCRv4 detection model, shipped inside rapidocr-onnxruntime; only
  the detection model is used) finds lines of 3+ characters, also over ultrasound speckle,
  but misses isolated single characters ("R", "L", "0", "5").
- The classical pass (morphological gradient, threshold, horizontal close, connected
  components of text size standing on a quiet background) finds those single characters,
  but cannot see labels drawn over speckle. Together they found every line of the test set.

The image is fed to DBNet at its own size, padded to a multiple of 32: the library's default
enlarges small frames to 736 px, which costs ~2x and found nothing more. A frame whose
classical pass finds nothing text-sized (a text-free CT slice) skips DBNet: ~1-2 ms
instead of ~60 ms. Boxes are axis-aligned, padded and merged per line.

Availability contract (as `ocr.py`): `is_available()` names exactly what is missing, so the
gateway can refuse to start rather than forward pixels it cannot search.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.pixels.box_merge import MAX_TEXT_HEIGHT, areas, merge_scored, overlap
from gateway.pixels.regions import Box

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "MODEL_FILE",
    "bright_glyphs",
    "detect_boxes",
    "find_lines",
    "is_available",
    "learned_lines",
    "model_path",
]

MODEL_FILE = "ch_PP-OCRv4_det_infer.onnx"
SOURCE = "ocr"  # the audit source of the boxes (regions.SOURCES)

# DBNet post-processing, as rapidocr's defaults: a pixel is text above DB_THRESH, a region
# is kept when its mean probability reaches DB_BOX_THRESH, then grown back by UNCLIP (the
# model was trained on text regions shrunk by a ratio of 0.4).
DB_THRESH = 0.3
DB_BOX_THRESH = 0.5
UNCLIP_RATIO = 1.6
DB_MIN_SIDE = 3
# Words over speckle came out up to ~half a line height short at one end: boxes are
# widened by this share of their height on each side.
DB_EXTEND_X = 0.6
STRIDE = 32  # the network needs sides that are multiples of 32
# A region is a word the detector is sure of (its score is passed on with the box) when
# its mean probability reaches this and it is word-shaped: speckle regions scored up to
# 0.56 and were at most 12 px long, labels over speckle 0.63-0.88 and 32 px or longer.
SURE_SCORE = 0.6
SURE_MIN_WIDTH = 16
SURE_ASPECT = 3.0

# Classical pass. A 3x3 morphological gradient is the local range: glyph edges of text at
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
# DBNet looks at the places the classical pass could not settle, this much around each (a
# line or two of context), or at the whole frame when those cover more than this share.
LOOK_PAD_PX = 32
WHOLE_FRAME_SHARE = 0.5

_session: onnxruntime.InferenceSession | None = None
_session_lock = threading.Lock()


def model_path() -> Path | None:
    """Where rapidocr-onnxruntime's detection model lies, without importing the package.

    Importing rapidocr_onnxruntime loads its recognizer and classifier code too; only the
    model file is needed here.
    """
    try:
        spec = importlib.util.find_spec("rapidocr_onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / MODEL_FILE
        if path.is_file():
            return path
    return None


def is_available() -> str | None:
    """None when text detection can run here, else what is missing and how to get it."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return "cv2 (pip install opencv-python-headless)"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime (pip install onnxruntime)"
    if model_path() is None:
        return (
            f"rapidocr model file {MODEL_FILE} "
            "(pip install --no-deps rapidocr-onnxruntime==1.4.4, see the Makefile)"
        )
    return None


def _get_session() -> onnxruntime.InferenceSession:
    """One session per process, single-threaded: worker processes, not threads, share cores."""
    global _session
    with _session_lock:
        if _session is None:
            import onnxruntime

            path = model_path()
            if path is None:
                raise RuntimeError(f"text detection model {MODEL_FILE} not found")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            _session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        return _session


def detect_boxes(image: np.ndarray) -> list[Box]:
    """Boxes around the burned-in text of one uint8 frame (H x W grey, or H x W x 3 RGB).

    Light and dark text alike; each box padded by PAD_PX and merged per line, clipped to
    the image. Covering too much is safe, covering too little is not.
    """
    return [box for box, _ in find_lines(image)]


def find_lines(image: np.ndarray) -> list[tuple[Box, float]]:
    """`detect_boxes`, each box with the detector's confidence that it holds a word: the
    DBNet score of a word-shaped region it contains (SURE_SCORE and up), else 0."""
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    ):
        raise ValueError(f"detect_boxes needs uint8 H x W or H x W x 3, got {image.dtype} "
                         f"{image.shape}")  # fmt: skip
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        return []
    classical, look_at = _classical_boxes(image)
    found = [(box, 0.0) for box in classical]
    places = areas([box.padded(LOOK_PAD_PX, width, height) for box in look_at])
    if sum(place.area() for place in places) > WHOLE_FRAME_SHARE * width * height:
        found += _dbnet_boxes(image)
    else:  # DBNet only where the classical pass saw something it could not settle
        for area in places:
            crop = np.ascontiguousarray(image[area.y0 : area.y1, area.x0 : area.x1])
            found += [(b.moved(area.x0, area.y0), s) for b, s in _dbnet_boxes(crop)]
    # Near-white glyphs the passes above missed (where they found text, their boxes stand).
    found += [(b, 0.0) for b in bright_glyphs(image) if not any(overlap(b, f) for f, _ in found)]
    return merge_scored(found, width, height)


def learned_lines(image: np.ndarray) -> list[tuple[Box, float]]:
    """DBNet alone on `image` (a crop around a box that could not be read), boxes merged per
    line, each with its score when DBNet is sure it is a word (else 0)."""
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        return []
    return merge_scored(_dbnet_boxes(image), width, height)


# --- the classical pass ----------------------------------------------------------------


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
    _, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    return stats[1:]  # label 0 is the background


def _text_sized(stats: np.ndarray) -> np.ndarray:
    w, h = stats[:, 2], stats[:, 3]
    return (h >= MIN_TEXT_HEIGHT) & (h <= MAX_TEXT_HEIGHT) & (w >= 2) & (w <= MAX_ASPECT * h)


def _classical_boxes(image: np.ndarray) -> tuple[list[Box], list[Box]]:
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
    closed = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((1, CLOSE_WIDTH), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    stats = stats[1:]
    fill = stats[:, 4] / np.maximum(stats[:, 2] * stats[:, 3], 1)
    glyphs = _text_sized(stats) & (stats[:, 3] >= MIN_GLYPH_HEIGHT) & (fill <= MAX_GLYPH_FILL)
    return _stat_boxes(stats[glyphs])


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


# --- DBNet -----------------------------------------------------------------------------


def _dbnet_input(image: np.ndarray) -> np.ndarray:
    """1 x 3 x H' x W' float32, normalised as the model was trained (mean 0.5, std 0.5), the
    frame at its own scale, padded (edge pixels repeated) to multiples of STRIDE."""
    import cv2

    height, width = image.shape[:2]
    pad_h, pad_w = -height % STRIDE, -width % STRIDE
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
    if image.ndim == 2:
        planes = np.broadcast_to(image, (3, *image.shape))
    else:
        planes = image[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR planes, as trained
    batch = planes.astype(np.float32)[None]
    batch *= 2.0 / 255.0
    batch -= 1.0
    return batch


def _dbnet_boxes(image: np.ndarray) -> list[tuple[Box, float]]:
    """DBNet's regions as boxes, each with its score when it is a word it is sure of."""
    import cv2

    session = _get_session()
    height, width = image.shape[:2]
    batch = _dbnet_input(image)
    feed: dict[str, Any] = {session.get_inputs()[0].name: batch}
    probability = session.run(None, feed)[0][0, 0, :height, :width]
    mask = cv2.dilate((probability > DB_THRESH).astype(np.uint8), np.ones((2, 2), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return []
    # Mean probability per region (DBNet's box score), all regions at once.
    flat = labels.ravel()
    sums = np.bincount(flat, weights=probability.ravel(), minlength=count)
    sizes = np.bincount(flat, minlength=count)
    boxes: list[tuple[Box, float]] = []
    for label in range(1, count):
        x, y, w, h, _area = stats[label].tolist()
        score = sums[label] / max(sizes[label], 1)
        if min(w, h) < DB_MIN_SIDE or score < DB_BOX_THRESH:
            continue
        worded = (
            score >= SURE_SCORE
            and w >= SURE_MIN_WIDTH
            and w >= SURE_ASPECT * h
            and h <= MAX_TEXT_HEIGHT
        )
        # Unclip as DBNet does: grow by area * ratio / perimeter of the shrunk region.
        grow = int(np.ceil(w * h * UNCLIP_RATIO / (2 * (w + h))))
        # Over speckle, DBNet's region stops short of a word's first or last stroke.
        reach = grow + int(np.ceil(DB_EXTEND_X * h))
        box = Box(max(x - reach, 0), max(y - grow, 0), x + w + reach, y + h + grow, SOURCE)
        boxes.append((box.clipped(width, height), float(score) if worded else 0.0))
    return boxes
