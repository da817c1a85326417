"""Joining the boxes the text detector found: the words of a line into one box, a text
found twice into one, and the places DBNet must look at into as few areas as possible.

Lines stay apart even when their boxes touch: their union would blank the margins of the
shorter line. Covering too much is safe, covering too little is not.
"""

from __future__ import annotations

from gateway.pixels.regions import Box

PAD_PX = 2  # anti-aliased edges lie just outside the detected regions
# Words of one line merge across a space up to this many times the text height (a word
# space is ~0.3 em; columns of a table or screen corners lie much further apart).
WORD_SPACE_FACTOR = 1.0
# A 24 px line with ascenders and descenders, plus the gradient's 2 px (detect.py uses it
# too): words further apart than two of these never join.
MAX_TEXT_HEIGHT = 32


def overlap(a: Box, b: Box) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def areas(boxes: list[Box]) -> list[Box]:
    """Overlapping boxes joined into one, until none overlap."""
    areas: list[Box] = []
    for box in boxes:
        while True:
            hit = next((a for a in areas if a.x0 < box.x1 and box.x0 < a.x1
                        and a.y0 < box.y1 and box.y0 < a.y1), None)  # fmt: skip
            if hit is None:
                break
            areas.remove(hit)
            box = hit.union(box)
        areas.append(box)
    return areas


def same_line_neighbours(a: Box, b: Box) -> bool:
    """Two boxes of one line with no more than a word space between them."""
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    if overlap < 0.5 * min(a.height, b.height):
        return False
    space = max(b.x0 - a.x1, a.x0 - b.x1)
    return space <= WORD_SPACE_FACTOR * max(a.height, b.height)


def _mostly_overlapping(a: Box, b: Box) -> bool:
    """Two findings of the same text (DBNet's and the classical pass's)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > 0 and h > 0 and w * h >= 0.5 * min(a.area(), b.area())


def merge(boxes: list[Box], width: int, height: int) -> list[Box]:
    """Join the boxes of a line (a name split into words is still a name) and the boxes
    of one text found twice, then pad. Lines stay apart even when their boxes touch: their
    union would blank the margins of the shorter line. Boxes may overlap."""
    return [box for box, _ in merge_scored([(box, 0.0) for box in boxes], width, height)]


def merge_scored(
    found: list[tuple[Box, float]], width: int, height: int
) -> list[tuple[Box, float]]:
    """`merge` for boxes that carry the detector's confidence that they hold text; a
    joined box carries the highest of its parts'."""
    found = [(b, s) for b, s in found if b.area() > 0]
    if not found:
        return []
    boxes = [b for b, _ in found]
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    changed = True
    while changed:  # a union may make a line reach the next word: repeat until stable
        changed = False
        lines: dict[int, Box] = {}
        for i, box in enumerate(boxes):
            r = root(i)
            lines[r] = box if r not in lines else lines[r].union(box)
        keys = sorted(lines, key=lambda r: lines[r].x0)
        for n, i in enumerate(keys):
            for j in keys[n + 1 :]:
                a, b = lines[i], lines[j]
                if b.x0 - a.x1 > WORD_SPACE_FACTOR * MAX_TEXT_HEIGHT * 2:
                    break
                if root(i) != root(j) and (same_line_neighbours(a, b) or _mostly_overlapping(a, b)):
                    parent[root(i)] = root(j)
                    changed = True
    merged = {root(i): boxes[i] for i in range(len(boxes))}
    scores = {root(i): 0.0 for i in range(len(boxes))}
    for i, (box, score) in enumerate(found):
        merged[root(i)] = merged[root(i)].union(box)
        scores[root(i)] = max(scores[root(i)], score)
    padded: dict[Box, float] = {}
    for r, box in merged.items():
        grown = box.padded(PAD_PX, width, height)
        padded[grown] = max(padded.get(grown, 0.0), scores[r])
    return sorted(padded.items(), key=lambda item: (item[0].y0, item[0].x0, item[0].y1, item[0].x1))
