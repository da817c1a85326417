"""How fast the text detector (and the line reader after it) runs, and how much text it finds.

Frames are the synthetic ones of tests/test_text_detection.py (rendered, not timed):
ultrasound 640x480 RGB (speckle sector, labels on black, over speckle, on a light banner)
and CT-like 512x512 grey (body, corner annotations, orientation letters), plus text-free
CT slices. Recall is the share of drawn lines whose every ink pixel lies in a box.

Each worker process runs one single-threaded onnxruntime session and one Tesseract, as the
gateway's pool would, so frames/s divided by workers is the figure per core. It prints
figures and never judges them: timings depend on the machine and on what else runs.

    .venv/bin/python bench/text_detection.py [--frames 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # Tesseract's OpenMP: processes share cores

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np
from test_text_detection import box_mask, coverage, synthetic_frame

from gateway.pixels import detect, line_reader

_frames: dict[tuple[str, int], np.ndarray] = {}


def _frame(kind: str, seed: int) -> np.ndarray:
    """Rendered once per process, so that workers time detection, not drawing."""
    key = (kind, seed)
    if key not in _frames:
        _frames[key] = synthetic_frame(kind, seed)[0]
    return _frames[key]


def _job(args: tuple[str, int, bool]) -> float:
    """Seconds to detect (and read, if asked) one frame."""
    kind, seed, read = args
    image = _frame(kind, seed)
    start = time.perf_counter()
    boxes = detect.detect_boxes(image)
    if read:
        line_reader.read_lines(image, boxes)
    return time.perf_counter() - start


def _warm(args: tuple[str, int, bool]) -> None:
    kind, seed, read = args
    for s in range(seed, seed + 2):
        _job((kind, s, read))


def frames_per_second(kind: str, frames: int, workers: int, read: bool) -> float:
    jobs = [(kind, seed, read) for seed in range(frames)]
    if workers == 1:
        _warm(jobs[0])
        for job in jobs:  # render before the clock starts
            _frame(job[0], job[1])
        start = time.perf_counter()
        for job in jobs:
            _job(job)
        return frames / (time.perf_counter() - start)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_warm, [jobs[0]] * workers))  # sessions, models, first frames
        list(pool.map(_frame, [k for k, _, _ in jobs], [s for _, s, _ in jobs]))
        start = time.perf_counter()
        list(pool.map(_job, jobs))
        return frames / (time.perf_counter() - start)


def recall(kinds: list[str], frames: int) -> tuple[int, int, int, float]:
    """(lines fully covered, lines drawn, of them 1-2 characters, worst blanked share)."""
    found = drawn = short = 0
    worst_outside = 0.0
    for kind in kinds:
        for seed in range(frames):
            image, lines = synthetic_frame(kind, seed)
            boxes = detect.detect_boxes(image)
            covered = box_mask(image.shape, boxes)
            drawn += len(lines)
            short += sum(len(line.text) <= 2 for line in lines)
            found += sum(coverage(line, covered) == 1.0 for line in lines)
            text = np.zeros(image.shape[:2], bool)
            for line in lines:
                x0, y0, x1, y1 = line.box
                text[max(y0 - 4, 0) : y1 + 4, max(x0 - 4, 0) : x1 + 4] = True
            worst_outside = max(worst_outside, float((covered & ~text).mean()))
    return found, drawn, short, worst_outside


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames per kind and run")
    parser.add_argument("--workers", type=int, default=2, help="processes for the pool run")
    args = parser.parse_args(argv)
    for missing in (detect.is_available(), line_reader.is_available()):
        if missing is not None:
            print(f"not available: {missing}", file=sys.stderr)
            return 2
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {args.frames} frames/kind")
    found, drawn, short, outside = recall(["us", "ct"], args.frames)
    print(
        f"recall: {found}/{drawn} lines fully covered ({100 * found / drawn:.1f}%; "
        f"{short} of them 1-2 characters), worst blanked share outside text {outside:.3f}"
    )
    _warm(("ct-blank", 0, False))
    start = time.perf_counter()
    for seed in range(args.frames):
        _job(("ct-blank", seed, False))
    blank_ms = (time.perf_counter() - start) / args.frames * 1000
    print(f"text-free CT 512x512: {blank_ms:.1f} ms/frame (detection)")
    names = {"us": "ultrasound 640x480", "ct": "CT-like 512x512", "ct-blank": "text-free CT"}
    for kind in ("us", "ct", "ct-blank"):
        for read in (False, True):
            for workers in sorted({1, args.workers}):
                rate = frames_per_second(kind, args.frames, workers, read)
                what = "detect+read" if read else "detect"
                print(
                    f"{names[kind]:20s} {what:11s} workers={workers}  {rate:6.2f} frames/s  "
                    f"({rate / workers:6.2f} frames/s/core)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
