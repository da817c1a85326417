"""Rectangles of pixels to redact, shared by OCR, rules, ultrasound regions and overlays.

A leaf of the pixel engine: detection (OCR, rules, US regions) produces `Box`es and redaction
paints only what it is given, so the audit record can keep exactly what was blanked and why.
Coordinates are pixel columns (x) and rows (y) from the top-left corner, with x1/y1
exclusive, so a box's width is ``x1 - x0`` and slicing is ``frame[y0:y1, x0:x1]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SOURCES: tuple[str, ...] = ("ocr", "rule", "us-outside", "overlay")
"""The sources the pixel stage produces; `Box.union` joins differing ones with "+"."""


@dataclass(frozen=True)
class Box:
    """A rectangle to blank, on one frame (``frame``, 0-based) or on every frame (None)."""

    x0: int
    y0: int
    x1: int
    y1: int
    source: str
    frame: int | None = None

    def __post_init__(self) -> None:
        # Fail loudly on an inverted box: silently treating it as empty would leave text
        # unredacted when a caller swapped coordinates.
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(
                f"Box corners are inverted: ({self.x0}, {self.y0}) to ({self.x1}, {self.y1})"
            )
        if self.frame is not None and self.frame < 0:
            raise ValueError(f"Box frame must be 0-based and not negative, got {self.frame}")

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def area(self) -> int:
        """Pixels covered (per frame), 0 for an empty box."""
        return self.width * self.height

    def moved(self, dx: int, dy: int) -> Box:
        """This box shifted by (dx, dy): a box found in a crop, in the frame's coordinates."""
        return Box(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy, self.source, self.frame)

    def padded(self, px: int, width: int, height: int) -> Box:
        """This box grown by `px` on every side and clipped to a `width` x `height` image.

        OCR boxes hug the glyphs; padding covers anti-aliased edges and descenders.
        """
        return Box(
            x0=min(max(self.x0 - px, 0), width),
            y0=min(max(self.y0 - px, 0), height),
            x1=max(min(self.x1 + px, width), 0),
            y1=max(min(self.y1 + px, height), 0),
            source=self.source,
            frame=self.frame,
        )

    def clipped(self, width: int, height: int) -> Box:
        """This box limited to a `width` x `height` image (possibly empty)."""
        return self.padded(0, width, height)

    def same_frames(self, other: Box) -> bool:
        """True when both boxes apply to the same frame(s): both all-frames, or the same one."""
        return self.frame == other.frame

    def _shares_frame(self, other: Box) -> bool:
        return self.frame is None or other.frame is None or self.frame == other.frame

    def intersects(self, other: Box) -> bool:
        """True when the boxes share at least one pixel on at least one frame."""
        return (
            self._shares_frame(other)
            and self.x0 < other.x1
            and other.x0 < self.x1
            and self.y0 < other.y1
            and other.y0 < self.y1
        )

    def gap_to(self, other: Box) -> int:
        """Pixels between the boxes (Chebyshev distance between edges; 0 if they touch/overlap)."""
        dx = max(0, other.x0 - self.x1, self.x0 - other.x1)
        dy = max(0, other.y0 - self.y1, self.y0 - other.y1)
        return max(dx, dy)

    def union(self, other: Box) -> Box:
        """The bounding box of both.

        The frame is kept when equal, else None (all frames): over-redacting a frame is safe,
        under-redacting is not. Differing sources are joined ("ocr+rule") for the audit record.
        """
        if self.source == other.source:
            source = self.source
        else:
            source = "+".join(sorted(set(self.source.split("+")) | set(other.source.split("+"))))
        return Box(
            x0=min(self.x0, other.x0),
            y0=min(self.y0, other.y0),
            x1=max(self.x1, other.x1),
            y1=max(self.y1, other.y1),
            source=source,
            frame=self.frame if self.frame == other.frame else None,
        )


def merge_boxes(boxes: Iterable[Box], gap: int) -> list[Box]:
    """Union boxes on the same frame(s) that are at most `gap` pixels apart, until none are.

    OCR finds words; merging neighbours turns a line of text into one box, which blanks the
    spaces between words too (a name split into words is still a name) and keeps the audit
    record short. ``gap=0`` merges only overlapping or touching boxes. Boxes for different
    frames are never merged, so a per-frame box does not spread to every frame. Empty boxes
    are dropped. The result is sorted by frame, then top-left corner, for stable output.
    """
    if gap < 0:
        raise ValueError(f"gap must not be negative, got {gap}")
    pending = [b for b in boxes if b.area() > 0]
    merged = True
    while merged:
        merged = False
        result: list[Box] = []
        for box in pending:
            current = box
            keep: list[Box] = []
            for other in result:
                if current.same_frames(other) and current.gap_to(other) <= gap:
                    current = current.union(other)
                    merged = True
                else:
                    keep.append(other)
            keep.append(current)
            result = keep
        pending = result
    return sorted(pending, key=lambda b: (-1 if b.frame is None else b.frame, b.y0, b.x0))
