"""What every document cleaner shares: the error, the callables' shapes, blanking spans.

A leaf of the documents engine, so that the PDF, XML and text cleaners and the dispatcher
in `encapsulated.py` can all raise the same `DocumentError` without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "REDACTION_CHAR",
    "DocumentError",
    "FindSpans",
    "OcrWords",
    "blank_spans",
    "blank_spans_in_parts",
    "merge_spans",
    "shown_mime_type",
]

SpanLike = Any  # (start, end), or an object with .start and .end
FindSpans = Callable[[str], Sequence[SpanLike]]
"""PHI spans (start, end) in a text: the instance's identifiers plus a recognizer."""
OcrWords = Callable[["Image.Image"], list[tuple[str, tuple[int, int, int, int]]]]
"""Words read in an image, each with its (x0, y0, x1, y1) pixel box, x1/y1 exclusive."""

# One mark per character removed: fixed-width layouts (plain-text reports, <pre> tables)
# keep their columns, and the mark is ASCII so any encoding of the document can hold it.
REDACTION_CHAR = "*"
_MIME_TOKEN = re.compile(r"[a-z0-9][a-z0-9.+-]{0,40}/[a-z0-9][a-z0-9.+-]{0,40}")


class DocumentError(Exception):
    """An encapsulated document cannot be made safe; the message carries no patient data.

    The pipeline quarantines the instance with this message, so it names what was wrong
    (a MIME type, a page number, a limit), never text read from the document.
    """


def merge_spans(spans: Sequence[SpanLike], length: int) -> list[tuple[int, int]]:
    """Spans clipped to [0, length), sorted and overlapping ones joined.

    A span is a (start, end) pair or anything with .start and .end (the recognizer's
    `Span`), so `Recognizer.find` can be passed as find_spans without a wrapper.

    The recognizer and the identifier matcher report spans independently; joined spans
    count once in the report and blank once. A span that is not a pair of ints is an error
    in the caller, raised as DocumentError rather than skipped (fail closed).
    """
    clipped: list[tuple[int, int]] = []
    for span in spans:
        try:
            if hasattr(span, "start") and hasattr(span, "end"):  # a recognizer's Span
                start, end = int(span.start), int(span.end)
            else:
                start, end = int(span[0]), int(span[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise DocumentError("find_spans returned a span that is not (start, end)") from exc
        start, end = max(start, 0), min(end, length)
        if start < end:
            clipped.append((start, end))
    clipped.sort()
    merged: list[tuple[int, int]] = []
    for start, end in clipped:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def blank_spans(text: str, find_spans: FindSpans) -> tuple[str, int]:
    """`text` with every PHI span overwritten by REDACTION_CHAR, and how many spans there were.

    Whitespace inside a span is kept, so line breaks and columns survive a multi-line match.
    """
    parts, count = blank_spans_in_parts([text], find_spans)
    return parts[0], count


def blank_spans_in_parts(parts: list[str], find_spans: FindSpans) -> tuple[list[str], int]:
    """`parts` read as one text (joined as they are), each returned with its PHI blanked.

    A name split over markup (`<content>Jane</content> Doe`) is one name to a reader, so
    the recognizer must see the joined text; the blanking lands back in each part.
    """
    text = "".join(parts)
    if not text.strip():
        return list(parts), 0
    spans = merge_spans(find_spans(text), len(text))
    if not spans:
        return list(parts), 0
    chars = list(text)
    for start, end in spans:
        for i in range(start, end):
            if not chars[i].isspace():
                chars[i] = REDACTION_CHAR
    blanked: list[str] = []
    offset = 0
    for part in parts:
        blanked.append("".join(chars[offset : offset + len(part)]))
        offset += len(part)
    return blanked, len(spans)


def shown_mime_type(mime: str) -> str:
    """The MIME type as it may appear in a message: a sender could put anything there."""
    return repr(mime) if _MIME_TOKEN.fullmatch(mime) else "(not a MIME type)"
