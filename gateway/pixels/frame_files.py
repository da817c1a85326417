"""Frames read from an instance's file one at a time, and Pixel Data written to a file one
frame at a time, laid out as `write_frames` lays out the whole array.

A large multi-frame the pixel stage cleans is never held whole (clean_stream.py). pydicom's
decoders read the source file itself: native frames by offset, encapsulated ones through
the Basic or Extended Offset Table, else fragment by fragment (`pydicom.encaps`). Errors
are those of `decode_frames` and `write_frames`, with no patient data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import itemize_frame
from pydicom.pixels import as_pixel_options, get_encoder
from pydicom.uid import UID, ExplicitVRLittleEndian

from gateway.pixels.frames import (
    PixelDecodeError,
    PixelEncodeError,
    decode_failed,
    decoder_for,
    finish_frames,
    pixel_vr,
)
from gateway.pixels.regions import Box

_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
BOT_LIMIT = 2**32 - 1  # PS3.5 A.4: a Basic Offset Table's offsets are 32-bit


@dataclass(frozen=True)
class PixelSource:
    """Where the Pixel Data value of a dataset read without it lies in its file."""

    path: Path
    offset: int  # of the value, past the element's tag, VR and length
    length: int | None  # the value's length; None: encapsulated (undefined length)


@dataclass(frozen=True)
class FramePlan:
    """How the clean frames are written: the source, what to blank on each frame, and the
    Pixel Data's new description and transfer syntax."""

    source: PixelSource
    decoding: Dataset  # the source's pixel description, as the frames were decoded
    ruled: tuple[Box, ...]  # the fixed boxes (rules, outside the ultrasound regions)
    found: tuple[tuple[Box, ...], ...]  # per frame, what was found on it
    fill: int
    desc: dict[str, int | str]
    tsyntax: UID


def frame_count(ds: Dataset) -> int:
    """Number of Frames as pydicom's decoders take it (absent or 0: one)."""
    return int(as_pixel_options(ds)["number_of_frames"])


def iter_frames(ds: Dataset, source: PixelSource) -> Iterator[np.ndarray]:
    """The frames of `ds` (its header; its pixels in `source`), one at a time, each as
    `decode_frames` would return it in the whole array; PixelDecodeError as it raises."""
    decoder = decoder_for(ds)
    n_frames = frame_count(ds)
    opts = as_pixel_options(ds)
    opts["pixel_keyword"] = "PixelData"
    opts["pixel_vr"] = pixel_vr({"bits_allocated": int(ds.BitsAllocated)})
    # The whole array's type: a JPEG of 8-bit precision in 16 allocated bits decodes to
    # 8-bit frames, which as_array puts into an array of the allocated size.
    whole = np.dtype(f"{'ui'[int(ds.get('PixelRepresentation', 0) or 0)]}{ds.BitsAllocated // 8}")
    with open(source.path, "rb") as handle:
        handle.seek(source.offset)
        decoded = decoder.iter_array(handle, as_rgb=True, **opts)
        for _ in range(n_frames):
            try:
                arr, meta = next(decoded)
            except StopIteration:
                break
            except Exception as exc:
                raise decode_failed(ds, exc) from exc
            if arr.dtype.itemsize < whole.itemsize and arr.dtype.kind in "ui":
                arr = arr.astype(whole)
            yield finish_frames(arr, meta, ds, 1)[0]
            n_frames -= 1
        found = frame_count(ds) - n_frames + _excess(decoded)
    if found != frame_count(ds):
        raise PixelDecodeError(
            f"cannot decode pixel data: {found} frames decoded, {frame_count(ds)} expected"
        )


def _excess(decoded: Iterator[tuple[np.ndarray, dict[str, str | int]]]) -> int:
    """Frames past Number of Frames that decode (JPEG fragments pydicom takes for frames):
    the whole array counts them too, and is then refused."""
    count = 0
    while True:
        try:
            next(decoded)
        except StopIteration:
            return count
        except Exception:
            continue
        count += 1


def native_bytes(frame: np.ndarray) -> bytes:
    """One frame's native little-endian bytes (the whole value is padded once, at its end)."""
    return frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


def write_native(
    handle: BinaryIO, frames: Iterable[np.ndarray], desc: dict[str, int | str], n_frames: int
) -> None:
    """A defined-length Pixel Data element of `n_frames` frames (Explicit VR Little
    Endian), its length known before the first frame is written."""
    frame_bytes = int(desc["rows"]) * int(desc["columns"]) * int(desc["samples"])
    frame_bytes *= int(desc["bits_allocated"]) // 8
    total = frame_bytes * n_frames
    padded = total + total % 2  # PS3.5 7.1.1: even value length
    handle.write(_PIXEL_DATA_TAG + pixel_vr(desc).encode() + b"\x00\x00")
    handle.write(struct.pack("<I", padded))
    written = 0
    for frame in frames:
        data = native_bytes(frame)
        if len(data) != frame_bytes:
            raise PixelEncodeError("a frame differs in size from the first")
        handle.write(data)
        written += 1
    if written != n_frames:
        raise PixelEncodeError(f"{written} frames written, {n_frames} expected")
    if padded != total:
        handle.write(b"\x00")


def write_encapsulated(
    handle: BinaryIO,
    frames: Iterable[np.ndarray],
    desc: dict[str, int | str],
    n_frames: int,
    tsyntax: UID,
) -> None:
    """An encapsulated Pixel Data element as `Dataset.compress` writes it (one fragment a
    frame, a Basic Offset Table), each frame encoded and written as it comes; the offset
    table is filled in at the end. More than BOT_LIMIT bytes of frames would need an
    Extended Offset Table ahead of the Pixel Data: refused."""
    encoder = get_encoder(tsyntax)
    opts = {
        "rows": int(desc["rows"]),
        "columns": int(desc["columns"]),
        "samples_per_pixel": int(desc["samples"]),
        "photometric_interpretation": str(desc["photometric"]),
        "bits_allocated": int(desc["bits_allocated"]),
        "bits_stored": int(desc["bits_stored"]),
        "pixel_representation": int(desc["signed"]),
        "number_of_frames": 1,
    }
    if int(desc["samples"]) == 3:
        opts["planar_configuration"] = 0
    handle.write(_PIXEL_DATA_TAG + b"OB\x00\x00\xff\xff\xff\xff")
    table = handle.tell() + 8
    handle.write(_ITEM_TAG + struct.pack("<I", 4 * n_frames) + bytes(4 * n_frames))
    offsets: list[int] = []
    position = reach = 0  # reach: as compress() counts it to choose its offset table
    for frame in frames:
        if reach > BOT_LIMIT:
            raise PixelEncodeError("more encoded frames than a Basic Offset Table can index")
        try:
            encoded = encoder.encode(native_bytes(frame), index=0, **opts)
        except Exception as exc:
            raise PixelEncodeError(
                f"cannot encode pixel data as {tsyntax.name} ({type(exc).__name__})"
            ) from exc
        offsets.append(position)
        reach += 8 + len(encoded)
        for item in itemize_frame(encoded, 1):
            handle.write(item)
            position += len(item)
    if len(offsets) != n_frames:
        raise PixelEncodeError(f"{len(offsets)} frames written, {n_frames} expected")
    handle.write(_SEQUENCE_END)
    end = handle.tell()
    handle.seek(table)
    handle.write(struct.pack(f"<{n_frames}I", *offsets))
    handle.seek(end)


def write_pixel_data(
    handle: BinaryIO,
    frames: Iterable[np.ndarray],
    desc: dict[str, int | str],
    n_frames: int,
    tsyntax: UID,
) -> None:
    """The Pixel Data element of `frames` in `tsyntax`, appended to `handle`."""
    if tsyntax == ExplicitVRLittleEndian:
        write_native(handle, frames, desc, n_frames)
    else:
        write_encapsulated(handle, frames, desc, n_frames, tsyntax)
