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
from gateway.pixels.classical import (
    SOURCE,
    bright_glyphs,
    classical_boxes,
    component_stats,
    drawn_glyphs,
)
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
    classical, look_at = classical_boxes(image)
    found = [(box, 0.0) for box in classical]
    places = areas([box.padded(LOOK_PAD_PX, width, height) for box in look_at])
    if sum(place.area() for place in places) > WHOLE_FRAME_SHARE * width * height:
        found += _dbnet_boxes(image)
    else:  # DBNet only where the classical pass saw something it could not settle
        for area in places:
            crop = np.ascontiguousarray(image[area.y0 : area.y1, area.x0 : area.x1])
            found += [(b.moved(area.x0, area.y0), s) for b, s in _dbnet_boxes(crop)]
    # Glyphs near white or drawn in one bright grey that the passes above missed (where
    # they found text, their boxes stand).
    extra = bright_glyphs(image) + drawn_glyphs(image, near_white=False)
    found += [(b, 0.0) for b in extra if not any(overlap(b, f) for f, _ in found)]
    return merge_scored(found, width, height)


def learned_lines(image: np.ndarray) -> list[tuple[Box, float]]:
    """DBNet alone on `image` (a crop around a box that could not be read), boxes merged per
    line, each with its score when DBNet is sure it is a word (else 0)."""
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        return []
    return merge_scored(_dbnet_boxes(image), width, height)


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
    points = cv2.findNonZero(mask)
    if points is None:
        return []
    # Mean probability per region (DBNet's box score), all regions at once, from the
    # region pixels alone (the map is mostly empty).
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    points = points.reshape(-1, 2)
    xs, ys = points[:, 0], points[:, 1]
    which = labels[ys, xs]
    sums = np.bincount(which, weights=probability[ys, xs], minlength=count)
    sizes = np.bincount(which, minlength=count)
    boxes: list[tuple[Box, float]] = []
    for label, row in enumerate(component_stats(mask).tolist(), start=1):
        x, y, w, h, _area = row
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
