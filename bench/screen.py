"""The pixel screen for images outside the selection (`pixels/drawn_lines.py`): what it
costs per frame, what it lets through on text-free images, and which lines of type it sees.

    .venv/bin/python bench/screen.py [--samples ../shared/testdata] [--repeat 10]

1. Cost and false alarms: every text-free image of a kind the shipped selection leaves out
   (CT, MR, CR, DX, NM, PT, SEG, RT dose) among `--samples`: CPU ms per frame of the
   screen after decoding, and whether it would select the instance.
2. Recall: one line of type (a name, an ID, a date) drawn on each such 16-bit frame of at
   least 64x64 px, 4 DejaVu faces x 8 sizes x 4 renderings (thresholded in the frame's
   maximum; anti-aliased in it, in the sample type's maximum, in a mid grey) x 2 places
   (a corner, over the body): the share found, by size and rendering.

It prints figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread

from gateway.pixels.drawn_lines import drawn_lines, holds_drawn_text
from gateway.pixels.frames import decode_frames
from gateway.pixels.rules import Selection

ROOT = Path(__file__).resolve().parents[1]
FONTS = Path("/usr/share/fonts/truetype/dejavu")
FACES = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf")
SIZES = (7, 8, 9, 10, 12, 14, 18, 24)
RENDERINGS = ("thresholded", "blended", "type-maximum", "mid-grey")
TEXTS = ("SMITH^JOHN", "ID 77304188", "03/05/1956", "Doe, Jane", "MRN:4471203")


def text_free_frames(folder: Path) -> list[tuple[str, object, list[np.ndarray]]]:
    """(name, dataset, frames) of each decodable image the shipped selection leaves out."""
    shipped = Selection()
    found = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            ds = dcmread(path)
            if "PixelData" not in ds or shipped.selects(ds):
                continue
            found.append((path.name, ds, list(decode_frames(ds))))
        except Exception:  # a sample that will not read or decode
            continue
    return found


def cost(samples: list[tuple[str, object, list[np.ndarray]]], repeat: int) -> None:
    print("text-free images outside the selection: screen CPU ms/frame, selected?")
    for name, ds, frames in samples:
        started = time.process_time()
        for _ in range(repeat):
            for frame in frames:
                drawn_lines(frame)
        each = (time.process_time() - started) / (repeat * len(frames)) * 1000
        shape = "x".join(str(n) for n in frames[0].shape)
        print(f"  {name:44s} {shape:>12s} {each:7.2f} ms  {holds_drawn_text(ds)}")


def _line(frame: np.ndarray, face: str, size: int, rendering: str, corner: bool,
          text: str) -> tuple[np.ndarray, int] | None:  # fmt: skip
    rows, columns = frame.shape
    if size * len(text) * 0.7 > columns:
        return None
    layer = Image.new("L", (columns, rows), 0)
    y = 4 if corner else rows // 2
    ImageDraw.Draw(layer).text((4 if corner else columns // 4, y), text, fill=255,
                               font=ImageFont.truetype(str(FONTS / face), size))  # fmt: skip
    cover = np.asarray(layer) / 255.0
    image = frame.astype(np.float64)
    top = float(np.iinfo(frame.dtype).max) if frame.dtype.kind in "ui" else image.max()
    ink = {
        "thresholded": image.max(), "blended": image.max(),
        "type-maximum": min(top, 4095.0) if image.max() < 4096 else top,
        "mid-grey": (image.max() + image.min()) / 2,
    }[rendering]  # fmt: skip
    if rendering == "thresholded":
        drawn = np.where(cover > 0.5, ink, image)
    else:
        drawn = image * (1 - cover) + ink * cover
    return np.rint(drawn).astype(frame.dtype), y


def recall(samples: list[tuple[str, object, list[np.ndarray]]]) -> None:
    frames = [(n, f[0]) for n, _, f in samples if f[0].ndim == 2 and min(f[0].shape) >= 64]
    frames = [(n, f) for n, f in frames if f.dtype.itemsize == 2]
    found, total = Counter(), Counter()
    rng = np.random.default_rng(1)
    for _, frame in frames:
        for face in FACES:
            for size in SIZES:
                for rendering in RENDERINGS:
                    for corner in (True, False):
                        text = TEXTS[int(rng.integers(len(TEXTS)))]
                        made = _line(frame, face, size, rendering, corner, text)
                        if made is None:
                            continue
                        image, y = made
                        hit = any(b.y0 <= y + size and b.y1 >= y for b in drawn_lines(image))
                        for key in (size, rendering, "all"):
                            total[key] += 1
                            found[key] += hit
    print(f"one line of type on {len(frames)} 16-bit frames: found {found['all']} of "
          f"{total['all']} ({100 * found['all'] / max(total['all'], 1):.0f}%)")  # fmt: skip
    for key in (*SIZES, *RENDERINGS):
        if total[key]:
            label = f"{key} px" if isinstance(key, int) else key
            print(f"  {label:14s} {found[key]:5d} / {total[key]:5d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=ROOT.parent / "shared" / "testdata")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    samples = text_free_frames(args.samples)
    if not samples:
        print(f"no samples in {args.samples}")
        return 1
    cost(samples, args.repeat)
    recall(samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
