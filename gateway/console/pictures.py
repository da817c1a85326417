"""Frames rendered server-side to PNG for the console: windowed, boxes drawn, cached.

A browser is never given DICOM: the server decodes the frame (the pixel engine's decoder),
applies the header's Modality and VOI LUT or window (PS3.3 C.11.1, C.11.2) as the OCR view
does, or a window the reviewer asks for, and draws the redaction boxes as outlines. Pictures
are cached as 0600 files in the entry's cache folder, deleted with the entry.
"""

from __future__ import annotations

import io
import os
import secrets
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, pixel_array

from gateway.base.durable import create_folder, create_private_file
from gateway.pipeline.pixel_tail import read_header
from gateway.pixels.clean_stream import streamable
from gateway.pixels.frame_files import iter_frames
from gateway.pixels.frames import decode_frames, ocr_image
from gateway.pixels.regions import Box

__all__ = ["BOX_COLOURS", "THUMBNAIL_SIDE", "frame_count", "render_png"]

MAX_SIDE = 1024  # pictures larger than this are shown scaled down (the boxes with them)
THUMBNAIL_SIDE = 96
BOX_COLOURS = {"rule": (255, 160, 0), "ocr": (255, 0, 0), "us-region": (0, 160, 255)}
DEFAULT_COLOUR = (255, 0, 255)


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _window(frame: np.ndarray, ds: Dataset, window: tuple[float, float] | None) -> np.ndarray:
    """An 8-bit picture of one decoded frame: the header's window, or (centre, width)."""
    if frame.ndim == 3:  # RGB after decode_frames
        full = float(np.iinfo(frame.dtype).max) if frame.dtype.kind in "ui" else 255.0
        return np.clip(np.rint(frame * (255.0 / full)), 0, 255).astype(np.uint8)
    if window is None:
        return ocr_image(frame, ds)
    centre, width = window
    values = apply_modality_lut(frame, ds).astype(np.float64)
    low = centre - width / 2
    image = np.clip((values - low) * (255.0 / max(width, 1e-6)), 0, 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        image = 255 - image
    return image


def _draw(image: np.ndarray, boxes: list[Box], frame: int, side: int) -> Image.Image:
    picture = Image.fromarray(image).convert("RGB")
    scale = min(1.0, side / max(picture.size))
    if scale < 1.0:
        picture = picture.resize(
            (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        )
    draw = ImageDraw.Draw(picture)
    width = max(1, round(2 * max(picture.size) / 512))
    for box in boxes:
        if box.frame is not None and box.frame != frame:
            continue
        corners = [box.x0 * scale, box.y0 * scale, box.x1 * scale - 1, box.y1 * scale - 1]
        draw.rectangle(corners, outline=BOX_COLOURS.get(box.source, DEFAULT_COLOUR), width=width)
    return picture


def _one_frame(ds: Dataset, frame: int) -> np.ndarray:
    """One decoded frame: pydicom decodes only that one (a long cine loop is not decoded
    whole for each picture); PALETTE COLOR goes through the pixel engine's decoder, which
    expands the palette."""
    if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        return decode_frames(ds)[frame]
    return pixel_array(ds, index=frame)


def render_png(
    source: Path,
    cache: Path,
    name: str,
    frame: int,
    boxes: list[Box],
    window: tuple[float, float] | None = None,
    side: int = MAX_SIDE,
) -> bytes:
    """PNG bytes of `frame` of the DICOM file `source` with `boxes` outlined, cached in
    `cache` under `name` (e.g. "original"), the frame and the window; at most `side` pixels
    wide or high. IndexError: no such frame; anything pydicom or the decoder raises when the
    pixels cannot be shown."""
    shown = "" if window is None else f"-w{window[0]:g}_{window[1]:g}"
    path = cache / f"{name}-{frame}{shown}.png"
    if path.is_file():
        return path.read_bytes()
    headed = read_header(source)  # a large file: its header, and one frame read from it
    if headed is not None and not streamable(headed[0]):
        headed = None
    ds = dcmread(source, force=True) if headed is None else headed[0]
    if not 0 <= frame < frame_count(ds):
        raise IndexError(frame)
    if headed is None:
        image = _one_frame(ds, frame)
    else:
        image = next(islice(iter_frames(ds, headed[1].frames()), frame, None))
    picture = _draw(_window(image, ds, window), boxes, frame, side)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    data = buffer.getvalue()
    create_folder(cache)
    os.chmod(cache, 0o700)
    temporary = cache / f".{path.name}.{secrets.token_hex(6)}"
    create_private_file(temporary, data, sync=False)
    temporary.replace(path)
    return data
