"""Malformed DICOM made from real sample files, for the fuzz tests.

Two kinds of mutators, both driven by a `random.Random` (hypothesis hands one in through
`st.randoms()`, so a failing case shrinks and replays; the folder and network tests use a
seeded one):

- dataset mutators change a pydicom Dataset before it is encoded (odd character sets and
  invalid bytes in text, deep nesting, pixel data shorter or longer than the header says,
  image attributes that are not numbers, missing or malformed UIDs, identifiers under the
  wrong VR);
- byte mutators change the encoded Part 10 bytes (truncation, wrong or huge element
  lengths, bad VRs, duplicated and swapped elements, undefined-length sequences and items
  without delimiters, a transfer syntax in the file meta that does not match the body, no
  file meta at all, random bytes).

Every mutant starts from a sample with the synthetic identifiers of tests/conftest.py
planted, so an output can be searched for them afterwards.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import random
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import generate_uid


def _shared_conftest() -> ModuleType:
    """tests/conftest.py, found by its path: with a conftest.py in another test folder
    (tests/faults), `import conftest` can give that one, depending on collection order."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    for module in list(sys.modules.values()):
        if Path(getattr(module, "__file__", None) or "/nonexistent").resolve() == path:
            return module
    spec = importlib.util.spec_from_file_location("shared_test_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


_conftest = _shared_conftest()
PLANTED_NAME: str = _conftest.PLANTED_NAME
PLANTED_PATIENT_ID: str = _conftest.PLANTED_PATIENT_ID
PlantedIdentifiers = _conftest.PlantedIdentifiers
plant_identifiers = _conftest.plant_identifiers

TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata"

# Small, valid instances of several IODs and every uncompressed encoding, plus a few
# compressed and deflated ones: mutants of these are quick to read and to process.
SEEDS = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle_2frame.dcm",
    "emri_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "image_dfl.dcm",
)

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


# --- seeds ---------------------------------------------------------------------------------


@cache
def _seed_bytes(name: str) -> bytes:
    return (TESTDATA / name).read_bytes()


def seed_dataset(name: str, rnd: random.Random) -> tuple[Dataset, PlantedIdentifiers]:
    """A fresh copy of a sample with the synthetic identifiers planted and a new SOP
    Instance UID from `rnd` (so that mutants never replace each other in the gateway's
    spool, and the same `rnd` gives the same bytes)."""
    ds = dcmread(io.BytesIO(_seed_bytes(name)), force=True)
    planted = plant_identifiers(ds)
    uid = generate_uid(entropy_srcs=[name, str(rnd.getrandbits(64))])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds, planted


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


# --- dataset mutators ----------------------------------------------------------------------

_CHARSETS = (
    "ISO_IR 192",
    "ISO 2022 IR 87",
    "ISO 2022 IR 6\\ISO 2022 IR 87",
    "GB18030",
    "ISO_IR 13",
    "ISO_IR 999",
    "utf-8",
    "\\ISO_IR 100",
    "ISO_IR 100\\ISO_IR 144\\ISO_IR 192",
    "",
)
_BAD_TEXT = (b"\xff\xfe", b"\x1b$B", b"\xc3\x28", b"\x00", b"\x1b(J\x8e", b"\xed\xa0\x80", b"\\")


def charset(ds: Dataset, rnd: random.Random) -> None:
    """An odd or unknown Specific Character Set, and identifiers among invalid bytes."""
    ds.SpecificCharacterSet = rnd.choice(_CHARSETS)
    bad = rnd.choice(_BAD_TEXT)
    for tag, vr, value in (
        (0x00100010, "PN", PLANTED_NAME.encode() + bad),
        (0x00081030, "LO", bad + b"for " + PLANTED_NAME.encode() + b" " + bad),
        (0x00204000, "LT", PLANTED_PATIENT_ID.encode() + bad * 3),
    ):
        if len(value) % 2:
            value += b" "
        ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def deep_nesting(ds: Dataset, rnd: random.Random) -> None:
    """Sequences nested tens of levels deep, a name at the bottom."""
    depth = rnd.randint(8, 90)
    leaf = Dataset()
    leaf.PersonName = PLANTED_NAME
    leaf.TextValue = f"for {PLANTED_NAME} {PLANTED_PATIENT_ID}"
    item = leaf
    for _ in range(depth):
        parent = Dataset()
        parent.ContentSequence = Sequence([item])
        item = parent
    ds.ContentSequence = Sequence([item])


def pixel_length(ds: Dataset, rnd: random.Random) -> None:
    """Pixel data shorter or longer than Rows x Columns x frames says."""
    if "PixelData" not in ds:
        ds.Rows, ds.Columns, ds.BitsAllocated = 16, 16, 16
        ds.PixelData = b"\0" * rnd.choice((0, 10, 511, 513, 600))
        ds["PixelData"].VR = "OW"
        return
    value = bytes(ds.PixelData)
    cut = rnd.randint(0, max(0, len(value) - 1))
    ds.PixelData = value[:cut] if rnd.random() < 0.6 else value + b"\0" * (cut + 2)


def image_attributes(ds: Dataset, rnd: random.Random) -> None:
    """Image pixel attributes that are missing, zero, huge or not numbers."""
    keyword = rnd.choice(("Rows", "Columns", "BitsAllocated", "NumberOfFrames", "SamplesPerPixel"))
    choice = rnd.randint(0, 3)
    if choice == 0 and keyword in ds:
        del ds[keyword]
    elif choice == 1:
        vr = "IS" if keyword == "NumberOfFrames" else "US"
        value = b"1A" if vr == "IS" else b"\xff"
        ds[Tag(keyword)] = RawDataElement(Tag(keyword), vr, len(value), value, 0, False, True)
    elif keyword == "NumberOfFrames":
        ds.NumberOfFrames = rnd.choice((0, -1, 999_999_999))
    else:
        setattr(ds, keyword, rnd.choice((0, 1, 65535)))


def uids(ds: Dataset, rnd: random.Random) -> None:
    """SOP, study or series UIDs missing, empty, too long, multi-valued or not UIDs."""
    keyword = rnd.choice(("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"))
    bad = rnd.choice((None, "", "1." * 60, "1.2.3\\4.5.6", "not-a-uid", "1.2.\x013"))
    if bad is None:
        ds.pop(Tag(keyword), None)
    else:
        raw = bad.encode("latin-1")
        raw += b"\0" * (len(raw) % 2)
        ds[Tag(keyword)] = RawDataElement(Tag(keyword), "UI", len(raw), raw, 0, False, True)


def wrong_vr(ds: Dataset, rnd: random.Random) -> None:
    """An identifying attribute's own value under a VR that is not its (binary, UN, ...)."""
    tag = rnd.choice((0x00100010, 0x00100020, 0x00080080, 0x00080090))
    vr = rnd.choice(("UN", "OB", "UT", "SH", "DS", "US", "AE"))
    value = ds[tag].value if tag in ds else PLANTED_NAME
    value = value if isinstance(value, bytes) else str(value).encode("latin-1")
    value = value.rstrip(b" ") + b" " * (len(value.rstrip(b" ")) % 2)
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def long_value(ds: Dataset, rnd: random.Random) -> None:
    """A text value far past its VR's maximum, the name buried in it."""
    size = rnd.choice((70, 1024, 70_000))
    value = (b"x" * size + b" " + PLANTED_NAME.encode() + b" " + b"y" * size)[: 2 * size + 40]
    value += b" " * (len(value) % 2)
    ds[0x00104000] = RawDataElement(Tag(0x00104000), "LT", len(value), value, 0, False, True)


DATASET_MUTATORS: dict[str, Callable[[Dataset, random.Random], None]] = {
    "charset": charset,
    "deep_nesting": deep_nesting,
    "pixel_length": pixel_length,
    "image_attributes": image_attributes,
    "uids": uids,
    "wrong_vr": wrong_vr,
    "long_value": long_value,
}


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
MUTATORS = (*DATASET_MUTATORS, *BYTE_MUTATORS)


# --- mutants ---------------------------------------------------------------------------------


# Where plant_identifiers puts identifying values (tests/conftest.py): its attributes at
# top level, in the Other Patient IDs item and the deepest item, the private block and the
# file meta. Not Image Comments: free text repeating them is no source of its own.
_PLANTED_TAGS = frozenset(
    {
        int(Tag(keyword))
        for keyword in (
            "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate",
            "AccessionNumber", "InstitutionName", "ReferringPhysicianName", "OperatorsName",
            "PerformingPhysicianName", "PatientAddress", "PersonName",
            "SourceApplicationEntityTitle",
        )
    }
    | {0x00111001}
)  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One malformed input: its bytes, how it was made, and what was planted in it."""

    seed: str
    mutations: tuple[str, ...]
    data: bytes
    planted: PlantedIdentifiers
    sop_instance_uid: str

    def describe(self) -> str:
        return f"{self.seed} + {' + '.join(self.mutations)}"

    def needles(self, kept: Callable[[int], bool]) -> set[str]:
        """The planted values the mutant still holds where they were planted.

        A mutation can move a value out of its attribute (a flipped bit turns Accession
        Number (0008,0050) into (0108,0050), a wrong length makes it part of a neighbour's
        value); no de-identifier can know such a value identifies anyone, so it is not
        searched for. Values still in place are, wherever the output might carry them.
        When the mutant does not read at all, every planted value is.
        """
        needles = self.planted.needles(kept)
        try:
            ds = dcmread(io.BytesIO(self.data), force=True)
            texts = _planted_texts(ds, _planted_texts(ds.file_meta, []))
        except Exception:
            return needles
        held = " ".join(texts).lower()
        held += " " + held.replace("^", " ")
        return {n for n in needles if n in held}


def _planted_texts(ds: Dataset, found: list[str], depth: int = 0) -> list[str]:
    """The text of every planted attribute of `ds`, at every depth, added to `found`."""
    for tag in list(ds.keys()):
        try:
            element = ds[tag]
            if element.VR == "SQ" and depth < 100:
                for item in element.value or ():
                    _planted_texts(item, found, depth + 1)
            elif int(tag) in _PLANTED_TAGS:
                value = element.value
                found.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
        except Exception:
            continue  # a value that does not convert holds nothing a reader would see
    return found


def make_mutant(seed: str, mutations: tuple[str, ...], rnd: random.Random) -> Mutant:
    """Apply the dataset mutators (before encoding), then the byte mutators, in order."""
    ds, planted = seed_dataset(seed, rnd)
    uid = str(ds.SOPInstanceUID)
    plain = encode(ds)
    for name in mutations:
        if name in DATASET_MUTATORS:
            try:
                DATASET_MUTATORS[name](ds, rnd)
            except Exception:  # an earlier mutation left a value pydicom will not convert
                continue
    try:
        data = encode(ds)
    except Exception:  # pydicom will not write it (e.g. an ambiguous VR): bytes only
        data = plain
        mutations = tuple(m for m in mutations if m in BYTE_MUTATORS)
    for name in mutations:
        if name in BYTE_MUTATORS:
            data = BYTE_MUTATORS[name](data, rnd)
    return Mutant(seed, mutations, data, planted, uid)


def random_mutant(rnd: random.Random, *, seeds: tuple[str, ...] = SEEDS) -> Mutant:
    """A mutant with one to three mutations, all choices from `rnd`."""
    count = rnd.choice((1, 1, 2, 3))
    return make_mutant(rnd.choice(seeds), tuple(rnd.choice(MUTATORS) for _ in range(count)), rnd)


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
