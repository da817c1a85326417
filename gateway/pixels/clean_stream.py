"""The pixel stage for a large instance read without its Pixel Data: one frame at a time.

A 512 MiB ultrasound loop decoded whole costs a worker several times its size. Its header
is read alone (pipeline/pixel_tail.py) and its frames are taken one at a time from the
source file, twice: `clean_pixels_streamed` finds what to blank on each, with the same
FrameCleaning as the whole array (rules, regions, OCR, cine reuse, the pixel verify), and
records the boxes; once the instance has passed the verify gate, `write_clean_frames`
paints those boxes on the frames again and writes them after the clean header. Detect
apart from clean: the second pass only paints what the first found. The output is what
`clean_pixels` and `write_frames` make of the whole array, byte for byte.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from gateway.base.identifiers import Identifiers
from gateway.pixels.clean import (
    FrameCleaning,
    PixelError,
    PixelReport,
    blank_frame,
    clean_overlays,
    mark_cleaned,
)
from gateway.pixels.drawn_lines import SCREENED_BITS, drawn_lines
from gateway.pixels.frame_files import (
    FramePlan,
    PixelSource,
    frame_count,
    iter_frames,
    native_bytes,
    write_pixel_data,
)
from gateway.pixels.frames import (
    ENCAPSULATION_TAGS,
    PixelDecodeError,
    check_encoder,
    describe_frames,
    extremes_of,
    output_syntax,
    set_pixel_header,
)
from gateway.pixels.redact import OVERLAY_BITS_ALLOCATED, OVERLAY_DATA, OVERLAY_GROUPS
from gateway.pixels.regions import Box
from gateway.pixels.rules import PixelConfig

if TYPE_CHECKING:
    from gateway.text.recognizer import Recognizer


def streamable(ds: Dataset) -> bool:
    """Whether the pixels of `ds` can be cleaned one frame at a time: not 1-bit data (its
    frames share bytes) nor an overlay embedded in the pixel cells (retired, PS3.5 8.1.2:
    removed from every frame's raw cells at once), which are read whole."""
    bits = ds.get("BitsAllocated")
    if not isinstance(bits, int) or bits < 8 or bits % 8:
        return False
    return not any(
        (group, OVERLAY_BITS_ALLOCATED) in ds and (group, OVERLAY_DATA) not in ds
        for group in OVERLAY_GROUPS
    )


def clean_pixels_streamed(
    ds: Dataset,
    identifiers: Identifiers,
    config: PixelConfig,
    recognizer: Recognizer | None,
    source: PixelSource,
) -> PixelReport:
    """`clean_pixels` for `ds` read without its Pixel Data, which lies in `source`: the
    header is cleaned in place; the report's `plan` says how to write the frames (None:
    the source's Pixel Data stays as it is, nothing was blanked)."""
    screened = not config.selection.selects(ds)
    if screened and not (config.selection.screen and _screens_in(ds, source)):
        return PixelReport(selected=False)
    if not streamable(ds):
        raise PixelError("pixel data of this kind cannot be cleaned frame by frame")
    report = PixelReport(selected=True, screened=screened)
    report.overlays_removed = clean_overlays(ds, identifiers, config, config.allow_list())
    decoding = _pixel_header(ds)
    n_frames = frame_count(ds)
    found: list[tuple[Box, ...]] = []
    extremes: tuple[int, int] | None = None
    with _SameBytes(ds, source) as same:
        try:
            frames = iter_frames(decoding, source)
            first = next(frames)
            cleaning = FrameCleaning(ds, identifiers, config, recognizer,
                                     first[np.newaxis][:0], n_frames)  # fmt: skip
            for index, frame in enumerate(chain([first], frames)):
                same.check(frame, bool(cleaning.ruled or cleaning.found))
                blank_frame(frame, _fixed(cleaning.ruled, index), cleaning.fill)
                found.append(tuple(cleaning.look(frame, index)))
                extremes = _spanning(extremes, extremes_of(frame))
        except PixelDecodeError as exc:
            raise PixelError(f"pixel data cannot be decoded ({exc})") from exc
        held = same.held(n_frames)
    report.frames = n_frames
    cleaning.report(report)
    if report.boxes or not held:  # nothing blanked: the bytes and syntax stay
        tsyntax = output_syntax(config.encoding)
        desc = describe_frames(ds, (n_frames, *first.shape), first.dtype, extremes)
        if tsyntax != ExplicitVRLittleEndian:
            check_encoder(tsyntax, desc["bits_allocated"] == 1)
        set_pixel_header(ds, desc, n_frames, tsyntax)
        report.plan = FramePlan(source, decoding, tuple(cleaning.ruled), tuple(found),
                                cleaning.fill, desc, tsyntax)  # fmt: skip
    mark_cleaned(ds)
    return report


def _screens_in(ds: Dataset, source: PixelSource) -> bool:
    """The screen (drawn_lines.py) over the frames read one at a time, to the first line
    found. Frames that cannot be read pass, as the whole path passes them unselected."""
    if ds.get("BitsAllocated") not in SCREENED_BITS or not streamable(ds):
        return False
    try:
        return any(drawn_lines(frame) for frame in iter_frames(_pixel_header(ds), source))
    except PixelDecodeError:
        return False


def write_clean_frames(plan: FramePlan, handle: BinaryIO) -> None:
    """The clean Pixel Data element appended to `handle`: each frame decoded from the
    source again, the recorded boxes painted, encoded and written."""

    def frames() -> Iterator[np.ndarray]:
        for index, frame in enumerate(iter_frames(plan.decoding, plan.source)):
            blank_frame(frame, [*_fixed(list(plan.ruled), index), *plan.found[index]], plan.fill)
            yield frame

    write_pixel_data(handle, frames(), plan.desc, len(plan.found), plan.tsyntax)


class _SameBytes:
    """Whether the source's Pixel Data is the decoded frames' own (`holds`): compressed
    data with no bits outside Bits Stored, or native bytes compared frame by frame while
    it can still matter (nothing blanked yet)."""

    def __init__(self, ds: Dataset, source: PixelSource) -> None:
        self.source = source
        allocated, stored = ds.get("BitsAllocated"), ds.get("BitsStored")
        self.same = source.length is not None or allocated == stored
        self.handle: BinaryIO | None = None
        if source.length is not None:
            self.handle = open(source.path, "rb")  # noqa: SIM115 (closed on exit)
            self.handle.seek(source.offset)
        self.frame_bytes = 0

    def __enter__(self) -> _SameBytes:
        return self

    def __exit__(self, *_: object) -> None:
        if self.handle is not None:
            self.handle.close()

    def check(self, frame: np.ndarray, blanked: bool) -> None:
        if blanked:
            self.same = False
        if not self.same or self.handle is None:
            return
        data = native_bytes(frame)
        self.frame_bytes = len(data)
        self.same = self.handle.read(len(data)) == data

    def held(self, n_frames: int) -> bool:
        if not self.same or self.handle is None:
            return self.same
        total = self.frame_bytes * n_frames
        padded = total + total % 2
        return self.source.length == padded and (padded == total or self.handle.read(1) == b"\0")


def _fixed(ruled: list[Box], index: int) -> list[Box]:
    return [box for box in ruled if box.frame in (None, index)]


def _spanning(
    extremes: tuple[int, int] | None, more: tuple[int, int] | None
) -> tuple[int, int] | None:
    if extremes is None or more is None:
        return extremes if more is None else more
    return min(extremes[0], more[0]), max(extremes[1], more[1])


def _pixel_header(ds: Dataset) -> Dataset:
    """The elements the frames are decoded with (group 0028, the offset tables, the
    transfer syntax), kept apart from `ds`, whose header is rewritten for the output."""
    header = Dataset()
    for element in ds:
        if element.tag.group == 0x0028 or int(element.tag) in ENCAPSULATION_TAGS:
            header.add(copy.deepcopy(element))
    header.file_meta = FileMetaDataset()
    header.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    return header
