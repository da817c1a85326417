"""Read the text lines `detect.py` found, one box at a time, with Tesseract in-process.

Why not pytesseract: it starts a tesseract process and loads the language model per call
(~100 ms before any reading). tesserocr keeps one `PyTessBaseAPI` per process, loaded once,
and reads a line crop in a few ms. Each crop is read as one line (psm 7), enlarged 2x
(Tesseract reads best at 20-40 px caps; annotation text is 7-18 px), and turned dark on
light, as Tesseract expects; when that reading is unsure, the other polarity is read too.

The text read is patient data: it is never logged (`Word` keeps it out of its repr).
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from gateway.pixels.ocr import Word
from gateway.pixels.regions import Box

__all__ = ["LANGUAGE", "is_available", "read_lines", "tessdata_path"]

LANGUAGE = "eng"
UPSCALE = 2
MARGIN_PX = 4  # background around the crop: Tesseract needs a little to find the baseline
SURE_CONFIDENCE = 70.0  # below this, the other polarity is read too and the surer one kept
# A line read as nothing is read once more, as:
BRIGHT_TEXT = 200  # a crop this bright at its brightest may hold near-white text...
BRIGHT_SPREAD = 30  # ...drawn at one grey: its brightest pixels within this many levels
# Where Debian, Fedora, Alpine and Homebrew put traineddata (TESSDATA_PREFIX comes first).
TESSDATA_GLOBS = (
    "/usr/share/tesseract-ocr/*/tessdata",
    "/usr/share/tesseract-ocr/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)

_api: Any = None
_api_lock = threading.Lock()  # one API reads one image at a time


def tessdata_path() -> Path | None:
    """The folder holding eng.traineddata: TESSDATA_PREFIX (the folder itself, or its
    parent of tessdata/, both in use), else the usual system places, newest version first.

    tesserocr's wheel bundles Tesseract but no language data, and its compiled-in default
    path is the wheel builder's, so the path is always given explicitly.
    """
    candidates: list[str] = []
    prefix = os.environ.get("TESSDATA_PREFIX")
    if prefix:
        candidates += [prefix, os.path.join(prefix, "tessdata")]
    for pattern in TESSDATA_GLOBS:
        candidates += sorted(glob.glob(pattern), reverse=True)
    for folder in candidates:
        if (Path(folder) / f"{LANGUAGE}.traineddata").is_file():
            return Path(folder)
    return None


def is_available() -> str | None:
    """None when lines can be read here, else what is missing and how to get it."""
    try:
        import tesserocr  # noqa: F401
    except ImportError:
        return "tesserocr (pip install tesserocr)"
    if tessdata_path() is None:
        return (
            f"{LANGUAGE}.traineddata (apt install tesseract-ocr-{LANGUAGE}, "
            "or set TESSDATA_PREFIX to the folder holding it)"
        )
    return None


def _get_api() -> Any:
    """The process's one Tesseract, created on first use (loading eng takes ~0.2 s)."""
    global _api
    if _api is None:
        # One thread per worker process: processes, not OpenMP threads, share the cores.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        import tesserocr

        path = tessdata_path()
        if path is None:
            raise RuntimeError(f"{LANGUAGE}.traineddata not found")
        _api = tesserocr.PyTessBaseAPI(
            path=str(path) + os.sep,
            lang=LANGUAGE,
            psm=tesserocr.PSM.SINGLE_LINE,
            oem=tesserocr.OEM.LSTM_ONLY,
        )
    return _api


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _prepared(crop: np.ndarray) -> np.ndarray:
    """The crop enlarged, dark text on light: the background is the crop's commonest grey,
    so a dark median means light text, which is inverted."""
    import cv2

    enlarged = cv2.resize(crop, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
    if np.median(crop) < 128:
        enlarged = 255 - enlarged
    return cv2.copyMakeBorder(
        enlarged, MARGIN_PX, MARGIN_PX, MARGIN_PX, MARGIN_PX, cv2.BORDER_REPLICATE
    )


def _read_one(api: Any, image: np.ndarray) -> tuple[str, float]:
    # Raw bytes: SetImage(PIL image) encodes a BMP with a palette on every call.
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape
    api.SetImageBytes(image.tobytes(), width, height, 1, width)
    text = " ".join(api.GetUTF8Text().split())
    confidence = float(api.MeanTextConf()) if text else 0.0
    return text, confidence


def read_lines(image: np.ndarray, boxes: Iterable[Box]) -> list[Word]:
    """Each box's text (one line) and Tesseract's confidence (0-100), in the boxes' order.

    A box where nothing is read still yields a Word with empty text and confidence 0, so a
    caller can tell "read as nothing" from "not read".
    """
    grey = _grey(image)
    height, width = grey.shape
    words: list[Word] = []
    with _api_lock:
        api = _get_api()
        for box in boxes:
            clipped = box.clipped(width, height)
            if clipped.area() == 0:
                words.append(Word(box, "", 0.0))
                continue
            crop = grey[clipped.y0 : clipped.y1, clipped.x0 : clipped.x1]
            prepared = _prepared(crop)
            text, confidence = _read_one(api, prepared)
            if confidence < SURE_CONFIDENCE:
                other = _read_one(api, 255 - prepared)
                if other[1] > confidence:
                    text, confidence = other
            if not text and int(crop.max()) >= BRIGHT_TEXT:
                # Near-white text over speckle: its brightest pixels alone, dark on white.
                only = np.where(crop >= int(crop.max()) - BRIGHT_SPREAD, 0, 255).astype(np.uint8)
                other = _read_one(api, _prepared(255 - only))
                if other[1] > confidence:
                    text, confidence = other
            words.append(Word(box, text, confidence))
    return words
