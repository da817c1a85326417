"""Large instances through a worker without their pixel data in memory.

Reading a 2 GiB multi-frame whole and writing it again costs a worker about twice its size.
The header is what gets de-identified and verified, so an instance of LARGE_INSTANCE_BYTES
or more is read up to its Pixel Data element only. When the pixel stage does not select it,
the clean header is written and the Pixel Data element is copied after it from the source
file, as encoded, in COPY_CHUNK pieces; when it does, the stage reads the frames from the
source one at a time and they are written after the header one at a time
(pixels/clean_stream.py; 1-bit data and embedded overlays are read whole). The copy keeps
the source's transfer syntax (it is only valid then): Explicit or Implicit VR Little
Endian, or an encapsulated (compressed) syntax; deflated and big-endian files are read whole.

What follows Pixel Data in a source is not copied: only Data Set Trailing Padding
(FFFC,FFFC), Digital Signatures (FFFA,FFFA) (both removed by the Basic Profile) and private
groups past 7FE0 can stand there.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from gateway.pixels.frame_files import PixelSource

__all__ = ["LARGE_INSTANCE_BYTES", "PixelTail", "TailError", "copy_tail", "read_header"]

LARGE_INSTANCE_BYTES = 32 << 20
COPY_CHUNK = 1 << 20
PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
             b"UV"}  # fmt: skip


class TailError(Exception):
    """The Pixel Data element runs past the end of the file (the file is cut short)."""


@dataclass(frozen=True)
class PixelTail:
    """Where the source's Pixel Data element lies: `length` bytes from `offset`, tag to
    value (for encapsulated data, to its sequence delimiter)."""

    source: Path
    offset: int
    length: int
    value_length: int | None  # None: encapsulated (undefined length)
    value_offset: int = 0  # where the value starts, past the tag, VR and length

    def frames(self) -> PixelSource:
        """Where the pixel stage reads the frames from (pixels/frame_files.py)."""
        return PixelSource(self.source, self.value_offset, self.value_length)


def read_header(path: Path) -> tuple[Dataset, PixelTail] | None:
    """The dataset up to its Pixel Data, and where that lies, for a large instance whose
    pixel data can be copied as is; None: read it whole (small, no pixel data, deflated or
    big endian, or not a Part 10 file). Raises TailError for pixel data cut short, and what
    dcmread raises for an unreadable header."""
    if path.stat().st_size < LARGE_INSTANCE_BYTES:
        return None
    with open(path, "rb") as handle:
        ds = dcmread(handle, stop_before_pixels=True)
        offset = handle.tell()
        meta = getattr(ds, "file_meta", None)
        syntax = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
        if not syntax or not syntax.is_little_endian or syntax.is_deflated:
            return None
        found = _pixel_element(handle, offset, syntax.is_implicit_VR, os.fstat(handle.fileno()))
    if found is None:
        return None
    length, value_length, header = found
    return ds, PixelTail(path, offset, length, value_length, offset + header)


def _pixel_element(
    handle: BinaryIO, offset: int, implicit: bool, stat: os.stat_result
) -> tuple[int, int | None, int] | None:
    """The element's length, its value's (None: undefined) and its header's."""
    handle.seek(offset)
    head = handle.read(8)
    if len(head) < 8:
        return None  # no Pixel Data: nothing to copy
    group, element = struct.unpack("<HH", head[:4])
    if (group << 16 | element) != PIXEL_DATA:
        return None  # float pixel data or another element first: read whole
    if implicit:
        header, value_length = 8, struct.unpack("<I", head[4:8])[0]
    elif head[4:6] in _LONG_VRS:
        more = handle.read(4)
        if len(more) < 4:
            raise TailError("Pixel Data header cut short")
        header, value_length = 12, struct.unpack("<I", more)[0]
    else:
        header, value_length = 8, struct.unpack("<H", head[6:8])[0]
    if value_length != _UNDEFINED:
        if offset + header + value_length > stat.st_size:
            raise TailError("pixel data ends before its length")
        return header + value_length, value_length, header
    return _encapsulated_length(handle, offset + header, stat.st_size) - offset, None, header


def _encapsulated_length(handle: BinaryIO, position: int, size: int) -> int:
    """The end of an encapsulated Pixel Data element: past its items and delimiter."""
    while True:
        handle.seek(position)
        item = handle.read(8)
        if len(item) < 8:
            raise TailError("encapsulated pixel data has no sequence delimiter")
        group, element, length = struct.unpack("<HHI", item)
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return position + 8
        if tag != _ITEM or length == _UNDEFINED or position + 8 + length > size:
            raise TailError("encapsulated pixel data is cut short or malformed")
        position += 8 + length


def copy_tail(tail: PixelTail, handle: BinaryIO) -> None:
    """Append the source's Pixel Data element to `handle`, a piece at a time."""
    with open(tail.source, "rb") as source:
        source.seek(tail.offset)
        left = tail.length
        while left:
            piece = source.read(min(COPY_CHUNK, left))
            if not piece:
                raise TailError("the source file shrank while its pixel data was copied")
            handle.write(piece)
            left -= len(piece)
