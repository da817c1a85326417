"""Mutations of encoded DICOM bytes, and searching encoded outputs (see mutate.py).

A small walker finds every element of a Part 10 file (any depth, explicit or implicit VR,
either endianness; not a deflated body), so that a mutator can aim at a real tag, VR or
length field instead of random bytes only.
"""

from __future__ import annotations

import itertools
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from fuzzing import shared_conftest
from pydicom.datadict import dictionary_VR

PLANTED_NAME: str = shared_conftest().PLANTED_NAME

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
_OTHER_SYNTAXES = (
    IMPLICIT_LE,
    EXPLICIT_LE,
    EXPLICIT_BE,
    DEFLATED,
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression: unsupported
    "1.2.3.4.5.6.7",  # no such transfer syntax
    "",
)
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF


# --- the encoded bytes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Element:
    """Where one element sits in the encoded bytes (at any depth)."""

    offset: int  # of the tag
    tag: int
    vr: bytes  # b"" for implicit VR, items and delimiters
    length_at: int
    length_size: int  # 2 or 4
    length: int
    value_at: int

    @property
    def end(self) -> int:
        return self.value_at + (0 if self.length == _UNDEFINED else self.length)


def meta_end(data: bytes) -> int:
    """Where the data set starts: after the preamble and the file meta (0 without them)."""
    if data[128:132] != b"DICM":
        return 0
    at = 132
    while at + 8 <= len(data) and data[at : at + 2] == b"\x02\x00":
        vr = data[at + 4 : at + 6]
        if vr in _LONG_VRS:
            at += 12 + struct.unpack_from("<I", data, at + 8)[0]
        else:
            at += 8 + struct.unpack_from("<H", data, at + 6)[0]
    return min(at, len(data))


def transfer_syntax_of(data: bytes) -> str:
    start = data.find(b"\x02\x00\x10\x00", 132, meta_end(data) or 0)
    if start < 0:
        return IMPLICIT_LE
    length = struct.unpack_from("<H", data, start + 6)[0]
    return data[start + 8 : start + 8 + length].rstrip(b"\0 ").decode("latin-1")


def elements(data: bytes, limit: int = 5000) -> list[Element]:
    """Every element of the data set, descending into sequences and items (not deflated)."""
    syntax = transfer_syntax_of(data)
    if syntax == DEFLATED:
        return []
    explicit = syntax != IMPLICIT_LE
    endian = ">" if syntax == EXPLICIT_BE else "<"
    found: list[Element] = []
    at = meta_end(data)
    fragments = 0  # > 0: inside encapsulated pixel data, whose items are fragments
    while at + 8 <= len(data) and len(found) < limit:
        group, elem = struct.unpack_from(endian + "HH", data, at)
        tag = (group << 16) | elem
        if group == 0xFFFE:
            length = struct.unpack_from(endian + "I", data, at + 4)[0]
            found.append(Element(at, tag, b"", at + 4, 4, length, at + 8))
            skip = tag == _ITEM and (fragments or length == 0)
            if tag == _SEQ_END:
                fragments = max(0, fragments - 1)
            at += 8 + (length if skip and length != _UNDEFINED else 0)
            continue
        if explicit:
            vr = data[at + 4 : at + 6]
            if vr in _LONG_VRS:
                length = struct.unpack_from(endian + "I", data, at + 8)[0]
                element = Element(at, tag, vr, at + 8, 4, length, at + 12)
            else:
                length = struct.unpack_from(endian + "H", data, at + 6)[0]
                element = Element(at, tag, vr, at + 6, 2, length, at + 8)
        else:
            vr = b""
            length = struct.unpack_from("<I", data, at + 4)[0]
            element = Element(at, tag, vr, at + 4, 4, length, at + 8)
        found.append(element)
        descend = vr == b"SQ" or (not explicit and _is_sequence(tag, length))
        if length == _UNDEFINED and not descend:
            fragments += 1  # encapsulated pixel data or UN with undefined length
            at = element.value_at
        elif descend:
            at = element.value_at
        else:
            at = element.end
    return found


def _is_sequence(tag: int, length: int) -> bool:
    if length == _UNDEFINED:
        return tag != 0x7FE00010
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


def _pack(data: bytes, fmt: str, at: int, *values: int) -> bytes:
    return data[:at] + struct.pack(fmt, *values) + data[at + struct.calcsize(fmt) :]


def _endian(data: bytes) -> str:
    return ">" if transfer_syntax_of(data) == EXPLICIT_BE else "<"


def _pick(data: bytes, rnd: random.Random) -> Element | None:
    found = elements(data)
    return rnd.choice(found) if found else None


def truncate(data: bytes, rnd: random.Random) -> bytes:
    return data[: rnd.randint(0, max(0, len(data) - 1))]


def set_length(data: bytes, rnd: random.Random) -> bytes:
    """A declared length that is huge, undefined, odd, zero, or off by a few bytes."""
    element = _pick(data, rnd)
    if element is None:
        return truncate(data, rnd)
    top = 0xFFFF if element.length_size == 2 else 0xFFFFFFFF
    choices = [top, top - 15, 0, element.length + 1, max(0, element.length - 1)]
    choices += [element.length | 1, rnd.randint(0, top)]
    length = min(rnd.choice(choices), top)
    fmt = _endian(data) + ("H" if element.length_size == 2 else "I")
    return _pack(data, fmt, element.length_at, length)


_VRS = (b"ZZ", b"\0\0", b"un", b"UN", b"SQ", b"OB", b"UT", b"PN", b"  ", b"OW", b"FD")


def bad_vr(data: bytes, rnd: random.Random) -> bytes:
    element = _pick(data, rnd)
    if element is None or not element.vr:
        return flip(data, rnd)
    return data[: element.offset + 4] + rnd.choice(_VRS) + data[element.offset + 6 :]


def flip(data: bytes, rnd: random.Random) -> bytes:
    """A few random bytes of the data set replaced."""
    start = meta_end(data)
    if start >= len(data):
        return data + bytes(rnd.randrange(256) for _ in range(8))
    buffer = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        buffer[rnd.randrange(start, len(buffer))] = rnd.randrange(256)
    return bytes(buffer)


def insert_garbage(data: bytes, rnd: random.Random) -> bytes:
    at = rnd.randint(meta_end(data), len(data))
    garbage = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
    return data[:at] + garbage + data[at:]


def duplicate(data: bytes, rnd: random.Random) -> bytes:
    """An element written twice in a row (a duplicate tag), or after a later one."""
    plain = [e for e in elements(data) if e.length != _UNDEFINED and e.tag >> 16 != 0xFFFE]
    if not plain:
        return insert_garbage(data, rnd)
    element = rnd.choice(plain)
    chunk = data[element.offset : element.end]
    at = element.end if rnd.random() < 0.5 else rnd.choice(plain).end
    if at < element.end and at > element.offset:
        at = element.end
    return data[:at] + chunk + data[at:]


def swap(data: bytes, rnd: random.Random) -> bytes:
    """Two neighbouring elements swapped: tags out of ascending order."""
    plain = [e for e in elements(data) if e.length != _UNDEFINED and e.tag >> 16 != 0xFFFE]
    pairs = [(a, b) for a, b in itertools.pairwise(plain) if a.end == b.offset]
    if not pairs:
        return duplicate(data, rnd)
    a, b = rnd.choice(pairs)
    return data[: a.offset] + data[b.offset : b.end] + data[a.offset : a.end] + data[b.end :]


def open_sequence(data: bytes, rnd: random.Random) -> bytes:
    """An undefined-length sequence whose item never ends: no item or sequence delimiter."""
    endian = _endian(data)
    explicit = transfer_syntax_of(data) != IMPLICIT_LE
    head = struct.pack(endian + "HH", 0x0040, 0xA730)
    head += (b"SQ\0\0" if explicit else b"") + struct.pack(endian + "I", _UNDEFINED)
    head += struct.pack(endian + "HHI", 0xFFFE, 0xE000, _UNDEFINED)
    name = PLANTED_NAME.encode() + b" "
    if explicit:
        head += struct.pack(endian + "HH", 0x0040, 0xA123) + b"PN" + struct.pack(endian + "H", 18)
    else:
        head += struct.pack(endian + "HHI", 0x0040, 0xA123, 18)
    head += name
    found = [e for e in elements(data) if e.tag >= 0x0040A730 and e.tag >> 16 != 0xFFFE]
    at = found[0].offset if found and rnd.random() < 0.5 else len(data)
    return data[:at] + head + data[at:]


def nest_deep(data: bytes, rnd: random.Random) -> bytes:
    """Undefined-length sequences nested hundreds of levels deep, with their delimiters."""
    if transfer_syntax_of(data) not in (EXPLICIT_LE, IMPLICIT_LE):
        return open_sequence(data, rnd)
    explicit = transfer_syntax_of(data) == EXPLICIT_LE
    depth = rnd.choice((100, 400, 1500))
    seq = b"\x40\x00\x30\xa7" + (b"SQ\0\0" if explicit else b"") + b"\xff\xff\xff\xff"
    opening = seq + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\0\0\0\0" + b"\xfe\xff\xdd\xe0\0\0\0\0"
    name = PLANTED_NAME.encode() + b" "
    leaf = b"\x40\x00\x23\xa1" + (b"PN\x12\x00" if explicit else b"\x12\0\0\0") + name
    block = opening * depth + leaf + closing * depth
    found = [e for e in elements(data) if e.tag >= 0x0040A730 and e.tag >> 16 != 0xFFFE]
    at = found[0].offset if found else len(data)
    return data[:at] + block + data[at:]


def meta_syntax(data: bytes, rnd: random.Random) -> bytes:
    """The file meta names a transfer syntax the body is not encoded in."""
    end = meta_end(data)
    start = data.find(b"\x02\x00\x10\x00", 132, end)
    if start < 0:
        return flip(data, rnd)
    old = struct.unpack_from("<H", data, start + 6)[0]
    uid = rnd.choice(_OTHER_SYNTAXES).encode()
    uid += b"\0" * (len(uid) % 2)
    element = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(uid)) + uid
    data = data[:start] + element + data[start + 8 + old :]
    group = data.find(b"\x02\x00\x00\x00UL\x04\x00", 132)
    if group >= 0:
        data = _pack(data, "<I", group + 8, meta_end(data) - (group + 12))
    return data


def strip_meta(data: bytes, rnd: random.Random) -> bytes:
    """No preamble and no file meta: a bare data set (or only the preamble gone)."""
    if rnd.random() < 0.5:
        return data[128:]
    return data[meta_end(data) :]


def trailing_garbage(data: bytes, rnd: random.Random) -> bytes:
    tail = rnd.choice((b"\0" * 3, b"\xfe\xff\x00\xe0", b"\xe0\x7f\x10\x00OB\0\0\xf0\xff\xff\xff"))
    return data + tail + bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 32)))


BYTE_MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": truncate,
    "set_length": set_length,
    "bad_vr": bad_vr,
    "flip": flip,
    "insert_garbage": insert_garbage,
    "duplicate": duplicate,
    "swap": swap,
    "open_sequence": open_sequence,
    "nest_deep": nest_deep,
    "meta_syntax": meta_syntax,
    "strip_meta": strip_meta,
    "trailing_garbage": trailing_garbage,
}


# --- searching outputs -----------------------------------------------------------------------


def searchable(encoded: bytes) -> bytes:
    """An output file as bytes a substring search sees into (a deflated body inflated)."""
    if encoded[128:132] != b"DICM" or transfer_syntax_of(encoded) != DEFLATED:
        return encoded
    start = meta_end(encoded)
    return encoded[:start] + zlib.decompress(encoded[start:], -zlib.MAX_WBITS)


def leaked(encoded: bytes, needles: set[str]) -> list[str]:
    haystack = searchable(encoded).lower()
    return sorted(n for n in needles if n.encode("latin-1") in haystack)
