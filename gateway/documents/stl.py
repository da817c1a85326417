"""Clean an STL model (Encapsulated STL, PS3.3 A.85): its only free text is names.

A binary STL has an 80-byte header that exporters fill with whatever they like (software,
file name, sometimes the patient's name) and 50 bytes per triangle of numbers; an ASCII STL
names its solids. The header is zeroed and the names dropped; the geometry is kept as is.
An ASCII file with any line that is not STL grammar is refused rather than passed through.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from gateway.documents.redaction import DocumentError

__all__ = ["CleanedStl", "clean_stl", "placeholder_stl"]

HEADER_BYTES = 80
TRIANGLE_BYTES = 50
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ASCII_LINE = re.compile(
    rf"facet\s+normal(?:\s+{_NUMBER}){{3}}|outer\s+loop|vertex(?:\s+{_NUMBER}){{3}}"
    r"|endloop|endfacet"
)


@dataclass(frozen=True)
class CleanedStl:
    """The cleaned model and how many names or headers were blanked."""

    data: bytes
    redacted: int


def clean_stl(data: bytes) -> CleanedStl:
    """`data` with the binary header zeroed or the ASCII solid names removed."""
    if len(data) >= HEADER_BYTES + 4:
        (triangles,) = struct.unpack_from("<I", data, HEADER_BYTES)
        if len(data) == HEADER_BYTES + 4 + TRIANGLE_BYTES * triangles:
            blanked = int(any(data[:HEADER_BYTES]))
            return CleanedStl(bytes(HEADER_BYTES) + data[HEADER_BYTES:], blanked)
    if not data.lstrip().startswith(b"solid"):
        raise DocumentError("STL model that is neither binary nor ASCII STL")
    try:
        text = data.rstrip(b"\x00").decode("ascii")  # a NUL pad left by a sender
    except UnicodeDecodeError:
        raise DocumentError("ASCII STL model with bytes that are not ASCII") from None
    lines: list[str] = []
    redacted = 0
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] in ("solid", "endsolid"):
            lines.append(words[0])
            redacted += len(words) > 1
        elif _ASCII_LINE.fullmatch(" ".join(words)):
            lines.append(" ".join(words))
        else:
            raise DocumentError("ASCII STL model with a line that is not STL")
    return CleanedStl(("\n".join(lines) + "\n").encode("ascii"), redacted)


def placeholder_stl() -> bytes:
    """A binary STL with no triangles: a valid, empty model."""
    return bytes(HEADER_BYTES) + struct.pack("<I", 0)
