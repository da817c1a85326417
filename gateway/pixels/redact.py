"""Paint boxes, find the area outside ultrasound regions, and find or remove overlays.

Detection and cleaning are kept apart (pydicom/deid style): `us_region_boxes` and
`overlay_planes` only report, `blank_boxes` and `remove_overlays` only do what they are given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

import numpy as np
from pydicom.dataset import Dataset

from gateway.pixels.frames import decode_frames, write_frames
from gateway.pixels.regions import Box

# PS3.3 C.9.2: overlay planes live in the even repeating groups 6000-601E.
OVERLAY_GROUPS = tuple(range(0x6000, 0x6020, 2))
OVERLAY_DATA = 0x3000  # (60xx,3000) Overlay Data
OVERLAY_BITS_ALLOCATED = 0x0100  # (60xx,0100)
OVERLAY_BIT_POSITION = 0x0102  # (60xx,0102)

US_REGION_ATTRS = (
    "RegionLocationMinX0",
    "RegionLocationMinY0",
    "RegionLocationMaxX1",
    "RegionLocationMaxY1",
)


def black_fill(ds: Dataset, frames: np.ndarray) -> int:
    """The stored value that displays as black, whatever window a viewer applies.

    PS3.3 C.7.6.3.1.2: MONOCHROME2's minimum is black, MONOCHROME1's maximum is; the extremes
    of the Bits Stored range stay black under any VOI window. Colour (RGB) black is 0.
    """
    if frames.ndim == 4:
        return 0
    bits = int(ds.get("BitsStored") or frames.dtype.itemsize * 8)
    signed = frames.dtype.kind == "i"
    low = -(1 << (bits - 1)) if signed else 0
    high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        return high
    return low


def blank_boxes(frames: np.ndarray, boxes: Iterable[Box], fill: int | Sequence[int] = 0) -> int:
    """Set every pixel inside `boxes` to `fill`, in place; return the pixels blanked.

    `frames` is what `decode_frames` returned: (frames, rows, cols[, 3]). A box with
    ``frame=None`` applies to every frame. Boxes are clipped to the image; a box for a frame
    that does not exist is an error, since it means the detector and the pixels disagree. The
    count is of distinct pixels (overlaps counted once), summed over frames. `fill` is a stored
    value (see `black_fill`), or an (R, G, B) triple for colour.
    """
    if frames.ndim not in (3, 4):
        raise ValueError(f"frames must be (frames, rows, cols[, 3]), got shape {frames.shape}")
    n_frames, rows, cols = frames.shape[:3]
    every = np.zeros((rows, cols), dtype=bool)
    per_frame: dict[int, np.ndarray] = {}
    for box in boxes:
        clipped = box.clipped(cols, rows)
        if box.frame is None:
            mask = every
        else:
            if box.frame >= n_frames:
                raise ValueError(f"box is for frame {box.frame}, but there are {n_frames} frames")
            mask = per_frame.setdefault(box.frame, np.zeros((rows, cols), dtype=bool))
        mask[clipped.y0 : clipped.y1, clipped.x0 : clipped.x1] = True
    fill_value = np.asarray(fill, dtype=frames.dtype)
    blanked = 0
    if every.any():
        frames[:, every] = fill_value
        blanked += int(every.sum()) * n_frames
    for index, mask in per_frame.items():
        extra = mask & ~every
        frames[index][extra] = fill_value
        blanked += int(extra.sum())
    return blanked


def _complement(width: int, height: int, rects: list[tuple[int, int, int, int]]) -> list[Box]:
    """Boxes covering the image minus the union of `rects` (x0, y0, x1, y1; exclusive max).

    Horizontal bands between the rectangles' y edges; in each band, the gaps between the
    covered x intervals; then boxes with the same x extent in touching bands are joined.
    """
    edges = sorted({0, height, *(r[1] for r in rects), *(r[3] for r in rects)})
    bands: list[tuple[int, int, int, int]] = []
    for top, bottom in pairwise(edges):
        if bottom <= top:
            continue
        covered = sorted((r[0], r[2]) for r in rects if r[1] <= top and r[3] >= bottom)
        x = 0
        for start, end in covered:
            if start > x:
                bands.append((x, top, start, bottom))
            x = max(x, end)
        if x < width:
            bands.append((x, top, width, bottom))
    joined: list[tuple[int, int, int, int]] = []
    for band in bands:
        for i, (x0, y0, x1, y1) in enumerate(joined):
            if x0 == band[0] and x1 == band[2] and y1 == band[1]:
                joined[i] = (x0, y0, x1, band[3])
                break
        else:
            joined.append(band)
    return [Box(x0, y0, x1, y1, source="us-outside") for x0, y0, x1, y1 in joined]


def us_region_boxes(ds: Dataset) -> list[Box]:
    """Boxes covering everything outside the Sequence of Ultrasound Regions (0018,6011).

    PS3.3 C.8.5.5: each region is the rectangle RegionLocationMinX0/MinY0 to MaxX1/MaxY1, with
    inclusive maxima (converted here to exclusive). Scanners put patient name, dates and
    institution in the screen-capture margins outside the regions, so everything outside may be
    blanked. With several regions the area blanked is the exact complement of their *union*
    (not of one bounding rectangle): text between two regions (e.g. between a B-mode image and
    a Doppler strip) is blanked too. One region gives at most 4 boxes. Regions are clipped to
    the image (some scanners describe regions larger than the stored image). Returns [] when
    the sequence is absent or empty; a region item without its four coordinates, or with
    inverted ones, raises ValueError (fail closed rather than guess which area is image).
    """
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return []
    width, height = int(ds.Columns), int(ds.Rows)
    rects: list[tuple[int, int, int, int]] = []
    for number, item in enumerate(regions, start=1):
        values = [item.get(name) for name in US_REGION_ATTRS]
        if any(v is None or v == "" for v in values):
            raise ValueError(f"ultrasound region {number} lacks its location (0018,6018-601E)")
        x0, y0, x1, y1 = (int(v) for v in values)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"ultrasound region {number} has inverted corners")
        box = Box(x0, y0, x1 + 1, y1 + 1, source="us-outside").clipped(width, height)
        if box.area():
            rects.append((box.x0, box.y0, box.x1, box.y1))
    return _complement(width, height, rects)


def _embedded_bit(ds: Dataset, group: int) -> int | None:
    """The pixel bit holding overlay `group`, when it is embedded in Pixel Data (else None).

    PS3.5 8.1.2 / PS3.3 C.9.2 (retired usage): with no Overlay Data (60xx,3000), an overlay
    whose Overlay Bits Allocated equals the pixels' Bits Allocated is stored in bit Overlay Bit
    Position of each pixel cell, outside the Bits Stored range.
    """
    if (group, OVERLAY_DATA) in ds:
        return None
    bits = ds.get((group, OVERLAY_BITS_ALLOCATED))
    position = ds.get((group, OVERLAY_BIT_POSITION))
    if bits is None or position is None or "PixelData" not in ds:
        return None
    bits_allocated = int(ds.get("BitsAllocated", 0))
    if int(bits.value) != bits_allocated or bits_allocated <= 1:
        return None
    position = int(position.value)
    high_bit = int(ds.get("HighBit", bits_allocated - 1))
    low_bit = high_bit - int(ds.get("BitsStored", bits_allocated)) + 1
    if low_bit <= position <= high_bit:
        raise ValueError(
            f"overlay group {group:04X} claims bit {position}, which is inside the stored bits"
        )
    if not 0 <= position < bits_allocated:
        raise ValueError(f"overlay group {group:04X} has bit position {position} out of range")
    return position


def overlay_planes(ds: Dataset) -> list[int]:
    """The 60xx groups that carry an overlay, in Overlay Data or embedded in pixel bits."""
    found = []
    for group in OVERLAY_GROUPS:
        if (group, OVERLAY_DATA) in ds or _embedded_bit(ds, group) is not None:
            found.append(group)
    return found


def _native_cells(ds: Dataset) -> np.ndarray:
    """Pixel Data as raw cells (with all bits), for native (uncompressed) transfer syntaxes."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    itemsize = int(ds.BitsAllocated) // 8
    order = "<" if tsyntax.is_little_endian else ">"
    data = bytes(ds.PixelData)
    usable = len(data) - len(data) % itemsize
    return np.frombuffer(data[:usable], dtype=f"{order}u{itemsize}")


def remove_overlays(ds: Dataset) -> int:
    """Drop every overlay group 60xx (even groups, PS3.3 C.9.2); return the groups dropped.

    Overlays can carry burned-in-style text (annotations, names) outside the pixel matrix, so
    the default is to remove them. Embedded overlays (retired, PS3.5 8.1.2) are also cleared
    from Pixel Data: in place for native data, and for compressed data by decoding (which
    masks the bits outside Bits Stored) and rewriting uncompressed with `write_frames`.
    Pixel values inside Bits Stored are never changed.
    """
    embedded = {g: bit for g in OVERLAY_GROUPS if (bit := _embedded_bit(ds, g)) is not None}
    if embedded:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            write_frames(ds, decode_frames(ds))
        else:
            cells = _native_cells(ds).copy()
            mask = 0
            for bit in embedded.values():
                mask |= 1 << bit
            cells &= np.array(~mask & ((1 << (cells.dtype.itemsize * 8)) - 1), cells.dtype)
            tail = bytes(ds.PixelData)[cells.nbytes :]
            ds.PixelData = cells.tobytes() + tail
    groups = {elem.tag.group for elem in ds if elem.tag.group in OVERLAY_GROUPS}
    for tag in [elem.tag for elem in ds if elem.tag.group in OVERLAY_GROUPS]:
        del ds[tag]
    return len(groups)


def overlay_image(ds: Dataset, group: int) -> np.ndarray:
    """One overlay plane as uint8 0/255, for OCR when overlays are kept.

    In the overlay's own coordinates (Overlay Rows x Columns, PS3.3 C.9.2.1.1; Overlay Origin
    is not applied), (rows, cols) for a single-frame overlay, (frames, rows, cols) for a
    multi-frame one. Embedded overlays are read from the raw pixel cells of native data.
    """
    if group not in OVERLAY_GROUPS:
        raise ValueError(f"{group:04X} is not an overlay group (6000-601E, even)")
    if (group, OVERLAY_DATA) in ds:
        plane = np.asarray(ds.overlay_array(group), dtype=np.uint8)
        return np.where(plane != 0, 255, 0).astype(np.uint8)
    bit = _embedded_bit(ds, group)
    if bit is None:
        raise ValueError(f"group {group:04X} has no overlay")
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        raise ValueError("embedded overlays in compressed Pixel Data cannot be read")
    rows, cols = int(ds.Rows), int(ds.Columns)
    cells = _native_cells(ds)
    n_frames = cells.size // (rows * cols * int(ds.get("SamplesPerPixel", 1)))
    cells = cells[: n_frames * rows * cols].reshape(n_frames, rows, cols)
    plane = np.where((cells >> bit) & 1, 255, 0).astype(np.uint8)
    return plane[0] if n_frames == 1 else plane
