"""Where the picture is, as opposed to the screen around it: the ultrasound regions, or the
central area of any other image.

Text detectors see text in texture: ultrasound speckle, trabecular bone and lung markings
make strokes of the right size. Burned-in annotations sit mostly around the picture; inside
it, a box counts as text only when it is read as text (clean.py), while around it a box
that cannot be read is blanked anyway. Multi-frame images repeat the screen around a moving
picture: the hash of that screen tells whether a frame's annotations changed (clean.py).
"""

from __future__ import annotations

import hashlib

import numpy as np
from pydicom.dataset import Dataset

from gateway.pixels.redact import US_REGION_ATTRS
from gateway.pixels.regions import Box

# Without ultrasound regions, the picture is taken to be the central area: this share of
# each side is the screen around it (patient banners, corner labels, scale bars).
MARGIN_SHARE = 0.15
SMALL_SIDE = 128
INSIDE_SHARE = 0.5  # a box at least this much inside the picture is inside it


def anatomy_mask(ds: Dataset, rows: int, columns: int) -> np.ndarray:
    """True where the picture is: the union of the ultrasound regions, else the centre."""
    mask = np.zeros((rows, columns), dtype=bool)
    regions = ds.get("SequenceOfUltrasoundRegions") or []
    for item in regions:
        values = [item.get(name) for name in US_REGION_ATTRS]
        if any(v is None or v == "" for v in values):
            continue
        x0, y0, x1, y1 = (int(v) for v in values)
        mask[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = True
    if min(rows, columns) < SMALL_SIDE:
        mask[:] = True  # a thumbnail-sized image is all picture: no screen around it
    if not mask.any():
        top, left = int(rows * MARGIN_SHARE), int(columns * MARGIN_SHARE)
        mask[top : rows - top, left : columns - left] = True
    return mask


def inside(mask: np.ndarray, box: Box) -> bool:
    """Whether most of `box` lies in the picture."""
    clipped = box.clipped(mask.shape[1], mask.shape[0])
    area = clipped.area()
    if area == 0:
        return False
    covered = int(mask[clipped.y0 : clipped.y1, clipped.x0 : clipped.x1].sum())
    return covered >= INSIDE_SHARE * area


def outside_parts(mask: np.ndarray, box: Box) -> list[Box]:
    """The parts of `box` around the picture: its columns (then rows) where no pixel of the
    box's rows (columns) is picture, as boxes. A line the detector joined across the picture
    ("PWR" beside an unreadable run of texture) keeps its ends outside."""
    clipped = box.clipped(mask.shape[1], mask.shape[0])
    if clipped.area() == 0:
        return []
    window = mask[clipped.y0 : clipped.y1, clipped.x0 : clipped.x1]
    parts: list[Box] = []
    for axis, flip in ((0, False), (1, True)):
        free = ~window.any(axis=axis)
        start = None
        for i, outside in enumerate([*free, False]):
            if outside and start is None:
                start = i
            elif not outside and start is not None:
                if flip:
                    parts.append(Box(clipped.x0, clipped.y0 + start, clipped.x1,
                                     clipped.y0 + i, box.source, box.frame))  # fmt: skip
                else:
                    parts.append(Box(clipped.x0 + start, clipped.y0, clipped.x0 + i,
                                     clipped.y1, box.source, box.frame))  # fmt: skip
                start = None
    return parts


def screen_hash(frame: np.ndarray, mask: np.ndarray) -> bytes:
    """A hash of the frame's pixels outside the picture (its screen and annotations)."""
    outside = frame[~mask] if frame.ndim == 2 else frame[~mask, :]
    return hashlib.blake2b(np.ascontiguousarray(outside).tobytes(), digest_size=16).digest()
