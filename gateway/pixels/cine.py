"""Frames of a cine loop that show the same screen: cleaned once, the rest reuse the boxes.

A 60-frame ultrasound loop repeats its patient banner, date and scale on every frame while
the picture moves. When a frame's pixels outside the picture (anatomy.py) hash the same as
an earlier frame's, its annotations are those of that frame: the same boxes are blanked
without looking again. Text can still appear over the picture mid-loop (a measurement, a
label): text is drawn bright or in pure colour, so a frame whose picture gains bright or
coloured pixels that the earlier frame did not have near the same place is looked at in
full, as is any frame whose screen changed. The last MAX_SCREENS frames looked at in full
are remembered, not all: a loop whose screen changes on every frame (a frame counter, an ECG
trace) would otherwise keep a mask of the picture per frame.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from gateway.pixels.anatomy import screen_hash
from gateway.pixels.regions import Box
from gateway.pixels.text_finder import chroma

BRIGHT = 220  # grey level of drawn text (white 255, yellow ~226 in the grey view)
CHROMA = 100  # max - min of R, G, B of pure colours (yellow, cyan, green annotations)
NEAR_PX = 2  # a bright pixel this close to one of the earlier frame's is not new
NEW_TEXT_PIXELS = 24  # about one small character's strokes
MAX_SCREENS = 64  # frames remembered: a 640x480 picture's mask is 300 KB


@dataclass
class Probe:
    """What is compared of one frame, taken before the frame is cleaned."""

    screen: bytes
    marks: np.ndarray  # bright or coloured pixels inside the picture


@dataclass
class _Seen:
    boxes: list[Box]
    near: np.ndarray  # the marks of that frame, grown by NEAR_PX


@dataclass
class CineMemory:
    picture: np.ndarray
    seen: dict[bytes, list[_Seen]] = field(default_factory=dict)
    order: deque[tuple[bytes, _Seen]] = field(default_factory=deque)  # oldest first
    reused: int = 0
    _box: tuple[int, int, int, int] = (0, 0, 0, 0)  # the picture's bounding rows and columns
    _rectangle: bool = False

    def __post_init__(self) -> None:
        rows, columns = (
            np.nonzero(self.picture.any(axis=1))[0],
            np.nonzero(self.picture.any(axis=0))[0],
        )
        if rows.size:
            self._box = (int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1)
            y0, y1, x0, x1 = self._box
            self._rectangle = bool(self.picture[y0:y1, x0:x1].all())

    def probe(self, frame: np.ndarray, grey: np.ndarray | None) -> Probe:
        """The frame's screen hash and the marks in its picture (its bounding box); `grey`,
        the grey view, is needed for monochrome frames only."""
        y0, y1, x0, x1 = self._box
        if self._rectangle:  # the common case: four strips, no mask copy of the frame
            digest = hashlib.blake2b(digest_size=16)
            for strip in (frame[:y0], frame[y1:], frame[y0:y1, :x0], frame[y0:y1, x1:]):
                digest.update(np.ascontiguousarray(strip).tobytes())
            screen = digest.digest()
        else:
            screen = screen_hash(frame, self.picture)
        if frame.ndim == 3 and frame.dtype == np.uint8:
            crop = frame[y0:y1, x0:x1]
            bright = np.maximum(crop[..., 0], crop[..., 1]) >= BRIGHT
            marks = bright | (chroma(crop) >= CHROMA)  # white, yellow; or any pure colour
        else:
            assert grey is not None
            marks = grey[y0:y1, x0:x1] >= BRIGHT
        return Probe(screen, marks & self.picture[y0:y1, x0:x1])

    def boxes_for(self, probe: Probe) -> list[Box] | None:
        """The boxes of an earlier frame with this screen and no new marks, else None."""
        for seen in self.seen.get(probe.screen, ()):
            if int(np.count_nonzero(probe.marks & ~seen.near)) < NEW_TEXT_PIXELS:
                self.reused += 1
                return seen.boxes
        return None

    def remember(self, probe: Probe, boxes: list[Box]) -> None:
        near = probe.marks.copy()
        for dy in range(-NEAR_PX, NEAR_PX + 1):
            for dx in range(-NEAR_PX, NEAR_PX + 1):
                near |= np.roll(np.roll(probe.marks, dy, axis=0), dx, axis=1)
        seen = _Seen(boxes, near)
        self.seen.setdefault(probe.screen, []).append(seen)
        self.order.append((probe.screen, seen))
        if len(self.order) > MAX_SCREENS:
            screen, oldest = self.order.popleft()
            kept = [entry for entry in self.seen[screen] if entry is not oldest]
            if kept:
                self.seen[screen] = kept
            else:
                del self.seen[screen]
