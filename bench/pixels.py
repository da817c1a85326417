"""How many frames per second OCR redaction handles, on synthetic frames with burned-in text.

Sizing the pixel stage needs OCR's own cost: Tesseract dominates it by far. This renders
(not timed) 640x480 ultrasound-like frames (speckle sector, light text in the corners) and
512x512 CT-like frames (a disc of noise, light text in the corners), then times
`detect_text` + `boxes_to_redact` per frame in 1 and N worker processes.

It prints figures and never judges them: timings depend on the machine. Each Tesseract run
is limited to one thread (OMP_THREAD_LIMIT=1), as a worker pool should run it, so that
processes, not OpenMP threads, share the cores.

    .venv/bin/python bench/pixels.py [--frames 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gateway.base.identifiers import Identifiers
from gateway.pixels.ocr import AllowList, boxes_to_redact, detect_text, is_available

ALLOWLIST = Path(__file__).resolve().parents[1] / "conf" / "pixel_allowlist.yaml"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if FONT.exists():
        return ImageFont.truetype(str(FONT), size)
    return ImageFont.load_default(size=size)


def _draw(base: np.ndarray, texts: list[tuple[str, int, int, int]]) -> np.ndarray:
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    for text, x, y, size in texts:
        draw.text((x, y), text, font=_font(size), fill=230)
    return np.asarray(image).copy()


def ultrasound_frame(seed: int) -> np.ndarray:
    """A speckle sector with name, ID, date and scanner settings around it."""
    rng = np.random.default_rng(seed)
    base = np.zeros((480, 640), np.uint8)
    yy, xx = np.mgrid[0:480, 0:640]
    sector = ((xx - 320) ** 2 + (yy - 40) ** 2 < 420**2) & (abs(xx - 320) < (yy - 40) * 0.8)
    base[sector] = rng.gamma(2.0, 30.0, int(sector.sum())).clip(0, 255).astype(np.uint8)
    return _draw(
        base,
        [
            ("DOE^JANE", 10, 8, 12),
            ("ID 40971234", 10, 26, 11),
            ("12/03/2021 10:41", 490, 8, 12),
            ("C5-1 5.0 MHz", 540, 60, 10),
            ("60 dB  30 fps", 540, 76, 10),
            ("R", 40, 80, 14),
            ("5 cm", 590, 440, 11),
        ],
    )


def ct_frame(seed: int) -> np.ndarray:
    """A noisy disc (a body section) with the console's corner annotations."""
    rng = np.random.default_rng(seed)
    base = np.zeros((512, 512), np.uint8)
    yy, xx = np.mgrid[0:512, 0:512]
    body = (xx - 256) ** 2 + (yy - 256) ** 2 < 200**2
    base[body] = rng.normal(110, 12, int(body.sum())).clip(0, 255).astype(np.uint8)
    return _draw(
        base,
        [
            ("DOE JANE", 6, 6, 12),
            ("40971234", 6, 22, 12),
            ("1980-01-31", 6, 38, 12),
            ("kV 120  mA 200", 380, 6, 12),
            ("W 400 L 40", 6, 490, 12),
            ("5 mm", 450, 490, 12),
        ],
    )


_ALLOW: AllowList | None = None


def redact_frame(frame: np.ndarray) -> int:
    """What the stage does per frame: read the text, choose the boxes (not painting)."""
    global _ALLOW
    if _ALLOW is None:
        _ALLOW = AllowList.from_file(ALLOWLIST)
    return len(boxes_to_redact(detect_text(frame), "redact_all_text", _ALLOW, Identifiers()))


def frames_per_second(frames: list[np.ndarray], workers: int) -> tuple[float, int]:
    if workers == 1:
        redact_frame(frames[0])  # warm up: imports, allow list
        start = time.perf_counter()
        boxes = sum(redact_frame(f) for f in frames)
        return len(frames) / (time.perf_counter() - start), boxes
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(redact_frame, frames[:workers]))  # warm up every worker
        start = time.perf_counter()
        boxes = sum(pool.map(redact_frame, frames))
        return len(frames) / (time.perf_counter() - start), boxes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames per kind and run")
    parser.add_argument("--workers", type=int, default=2, help="processes for the pool run")
    args = parser.parse_args(argv)
    # Read by each tesseract subprocess, so setting it here reaches the pool workers too.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    missing = is_available()
    if missing is not None:
        print(f"OCR not available: {missing}", file=sys.stderr)
        return 2
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"OMP_THREAD_LIMIT={os.environ.get('OMP_THREAD_LIMIT')}"
    )
    kinds = {
        "ultrasound 640x480": [ultrasound_frame(i) for i in range(args.frames)],
        "CT-like 512x512": [ct_frame(i) for i in range(args.frames)],
    }
    for name, frames in kinds.items():
        for workers in sorted({1, args.workers}):
            rate, boxes = frames_per_second(frames, workers)
            print(
                f"{name:20s} workers={workers}  {rate:6.2f} frames/s  "
                f"({1 / rate * workers:5.2f} s/frame/worker, {boxes / len(frames):.1f} boxes/frame)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
