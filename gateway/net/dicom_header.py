"""What the SCP needs from a received instance's bytes, without decoding the dataset.

The C-STORE handler runs once per instance on the association's own thread, while the
sender waits for the answer, so every millisecond there is a millisecond per instance of
receive time. pydicom's partial reader and its File Meta writer cost ~0.5 ms each per
instance (measured: bench/run.py); the two byte-level helpers here do the same work in a
few microseconds and hand anything unusual back to pydicom:

- `header_uids`: the SOP Instance UID and Study Instance UID texts of a little-endian
  dataset, from a walk over the top-level elements that stops past (0020,000D);
  `file_uids` the same for a received instance already in a file, of any size;
- `top_level_values` / `file_header_values`: the same walk for any few top-level elements
  of a dataset or a DICOM file (the folder destination's path parts);
- `file_meta`: preamble + File Meta Information, byte for byte what pynetdicom writes for a
  received instance (`pynetdicom.dsutils.create_file_meta` + `encode_file_meta`);
  `stored_file_meta` reads back the three UIDs of such a header and where its dataset begins
  (the forwarder, for every outbox file).
"""

from __future__ import annotations

import mmap
import struct
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from pydicom import uid as dicom_uid
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag, Tag
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

__all__ = [
    "PREAMBLE",
    "HeaderUnreadable",
    "file_header_values",
    "file_meta",
    "file_uids",
    "header_uids",
    "stored_file_meta",
    "top_level_values",
]

SOP_INSTANCE_UID = Tag("SOPInstanceUID")
STUDY_UID = Tag("StudyInstanceUID")
_WANTED = {SOP_INSTANCE_UID: b"UI", STUDY_UID: b"UI"}  # the order header_uids returns
_META_TS_TAG = 0x00020010
_META_TS = {_META_TS_TAG: b"UI"}

_TAG = struct.Struct("<HH")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<L")
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _ITEM_DELIMITER, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 16
# PS3.5 7.1.2: the VRs with 2 reserved bytes and a 4-byte length in explicit VR.
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_IMPLICIT_LE = str(dicom_uid.ImplicitVRLittleEndian)
_LEFT_TO_PYDICOM = frozenset(
    (str(dicom_uid.ExplicitVRBigEndian), str(dicom_uid.DeflatedExplicitVRLittleEndian))
)

PREAMBLE = b"\0" * 128 + b"DICM"
# What the walk reads: bytes, or a memory map of a file (slices of either are bytes).
Encoded = bytes | bytearray | mmap.mmap


class HeaderUnreadable(Exception):
    """pydicom could not read the dataset's header either; carries the exception type."""


def header_uids(dataset: bytes, transfer_syntax: str) -> tuple[str, str]:
    """(SOP Instance UID, Study Instance UID) as texts ("" when absent) of an encoded
    dataset; raises HeaderUnreadable when not even pydicom can read that far."""
    found = _uid_texts(top_level_values(dataset, transfer_syntax, _WANTED))
    if found is None:
        return _by_pydicom(dataset, transfer_syntax)
    return found


def file_uids(path: Path, start: int, transfer_syntax: str) -> tuple[str, str]:
    """`header_uids` of the dataset that begins at byte `start` of a file (behind a File
    Meta header `file_meta` wrote). The walk reads a memory map of the file, so only the
    pages it touches are read, however large the file; pydicom, when needed, reads the
    file itself, stopping at the same place."""
    with open(path, "rb") as handle:
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found = _uid_texts(top_level_values(data, transfer_syntax, _WANTED, start))
        if found is None:
            return _read_partial(handle)
    return found


def _uid_texts(found: dict[int, bytes] | None) -> tuple[str, str] | None:
    if found is None:
        return None
    try:
        instance, study = (found.get(tag, b"").decode("ascii") for tag in _WANTED)
    except UnicodeDecodeError:
        return None
    return _clean(instance), _clean(study)


def _meta_end(start: bytes) -> int | None:
    """Where the File Meta group that the first 144 bytes of a Part 10 file open ends (its
    preamble, "DICM" and group length read); None when they are not such a start."""
    if len(start) < 144 or start[128:132] != b"DICM" or start[132:140] != _GROUP_LENGTH:
        return None
    return 144 + _LONG_LENGTH.unpack_from(start, 140)[0]


def _meta_values(meta: bytes, wanted: dict[int, bytes]) -> dict[int, bytes] | None:
    """`top_level_values` of a File Meta group (always explicit VR little endian)."""
    return top_level_values(meta, str(dicom_uid.ExplicitVRLittleEndian), wanted)


def file_header_values(data: bytes, wanted: dict[int, bytes]) -> dict[int, bytes] | None:
    """`top_level_values` for the start of a DICOM file (preamble, File Meta, dataset)."""
    meta_end = _meta_end(data[:144])
    if meta_end is None:
        return None
    meta = _meta_values(data[144:meta_end], _META_TS)
    if meta is None or _META_TS_TAG not in meta:
        return None
    try:
        transfer_syntax = _clean(meta[_META_TS_TAG].decode("ascii"))
    except UnicodeDecodeError:
        return None
    return top_level_values(data[meta_end:], transfer_syntax, wanted)


_STORED_META = {0x00020002: b"UI", 0x00020003: b"UI", 0x00020010: b"UI"}
_META_LIMIT = 1 << 16  # a File Meta group is a few hundred bytes; past this, pydicom's


def stored_file_meta(path: Path) -> tuple[str, str, str, int] | None:
    """(Media Storage SOP Class UID, SOP Instance UID, Transfer Syntax UID, the dataset's
    byte offset) of a Part 10 file, from its File Meta group alone; None when the file has
    no preamble and group length, or a UID is missing or not text (pydicom's reader then
    says what is wrong)."""
    with open(path, "rb") as handle:
        meta_end = _meta_end(handle.read(144))
        if meta_end is None or meta_end - 144 > _META_LIMIT:
            return None
        meta = handle.read(meta_end - 144)
    if len(meta) < meta_end - 144:
        return None
    found = _meta_values(meta, _STORED_META)
    if found is None or len(found) < len(_STORED_META):
        return None
    try:
        sop_class, instance, syntax = (_clean(found[tag].decode("ascii")) for tag in _STORED_META)
    except UnicodeDecodeError:
        return None
    if not (sop_class and instance and syntax):
        return None
    return sop_class, instance, syntax, meta_end


def top_level_values(
    dataset: Encoded, transfer_syntax: str, wanted: dict[int, bytes], start: int = 0
) -> dict[int, bytes] | None:
    """The raw values of the `wanted` top-level elements ({tag: VR}) of the dataset that
    begins at `start`, from a walk that stops past the highest of them; absent elements are
    left out. None for what it leaves to pydicom: big endian, deflate, a VR other than the
    wanted one, a truncated element or odd VR on the way, sequences nested too deep."""
    if transfer_syntax in _LEFT_TO_PYDICOM:
        return None
    explicit = transfer_syntax != _IMPLICIT_LE  # every encapsulated syntax is explicit LE
    last = max(wanted)
    values: dict[int, bytes] = {}
    position: int | None = start
    while position is not None and position + 8 <= len(dataset):
        found = _element_header(dataset, position, explicit)
        if found is None:
            return None
        tag, vr, length, start = found
        if tag > last:
            break
        if tag in wanted:
            if (explicit and vr != wanted[tag]) or start + length > len(dataset):
                return None  # also an undefined length
            values[tag] = dataset[start : start + length]
        position = _skip(dataset, position, explicit, 0)
    return None if position is None else values


def _element_header(
    data: Encoded, position: int, explicit: bool
) -> tuple[int, bytes, int, int] | None:
    """(tag, VR or b"", value length, value position) of the element at `position`."""
    if position + 8 > len(data):
        return None
    group, element = _TAG.unpack_from(data, position)
    tag = group << 16 | element
    if not explicit or group == 0xFFFE:  # items and delimiters carry no VR
        return tag, b"", _LONG_LENGTH.unpack_from(data, position + 4)[0], position + 8
    vr = data[position + 4 : position + 6]
    if vr in _LONG_VRS:
        if position + 12 > len(data):
            return None
        return tag, vr, _LONG_LENGTH.unpack_from(data, position + 8)[0], position + 12
    if vr.isalpha() and vr.isupper():
        return tag, vr, _SHORT_LENGTH.unpack_from(data, position + 6)[0], position + 8
    return None


def _skip(data: Encoded, position: int, explicit: bool, depth: int) -> int | None:
    """Where the element at `position` ends; an undefined-length sequence (PS3.5 7.5) is
    walked item by item to its delimiter. None when cut short or nested too deep."""
    found = _element_header(data, position, explicit)
    if found is None:
        return None
    _tag, vr, length, start = found
    if length != _UNDEFINED_LENGTH:
        return start + length if start + length <= len(data) else None
    if depth >= _MAX_DEPTH or vr not in (b"", b"SQ", b"UN"):
        return None
    if vr == b"UN":
        explicit = False  # PS3.5 6.2.2: an undefined-length UN holds implicit VR LE
    position = start
    for _ in range(len(data)):  # every pass moves on by 8 bytes at least
        item = _element_header(data, position, False)
        if item is None:
            return None
        tag, _vr, length, start = item
        if tag == _SEQUENCE_DELIMITER:
            return start
        if tag != _ITEM:
            return None
        if length != _UNDEFINED_LENGTH:
            position = start + length
            continue
        position = start
        for _ in range(len(data)):
            inner = _element_header(data, position, explicit)
            if inner is None:
                return None
            if inner[0] == _ITEM_DELIMITER:
                position = inner[3]
                break
            next_position = _skip(data, position, explicit, depth + 1)
            if next_position is None:
                return None
            position = next_position
    return None


def _past_study_uid(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag > STUDY_UID


def _by_pydicom(dataset: bytes, transfer_syntax: str) -> tuple[str, str]:
    """pydicom's partial reader, which stops at the first tag past (0020,000D) too."""
    return _read_partial(BytesIO(file_meta("1.2", "1.2", transfer_syntax) + dataset))


def _read_partial(file: BinaryIO) -> tuple[str, str]:
    """(SOP Instance UID, Study Instance UID) of a DICOM file, read by pydicom up to the
    first tag past (0020,000D); the values of other elements are skipped, not read."""
    try:
        ds = read_partial(
            file,
            stop_when=_past_study_uid,
            specific_tags=list(_WANTED),  # type: ignore[arg-type]
        )
        instance, study = (_clean(getattr(ds.get(tag), "value", None)) for tag in _WANTED)
    except Exception as exc:
        raise HeaderUnreadable(type(exc).__name__) from exc
    return instance, study


def _clean(value: object) -> str:
    return "" if value is None else str(value).strip().rstrip("\0")


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, "DICM" and the File Meta Information group (PS3.10 7.1) for a dataset."""
    body = b"".join(
        (
            _META_VERSION,
            _element(0x0002, b"UI", sop_class_uid.encode("ascii"), b"\0"),
            _element(0x0003, b"UI", sop_instance_uid.encode("ascii"), b"\0"),
            _element(0x0010, b"UI", transfer_syntax.encode("ascii"), b"\0"),
            _META_IMPLEMENTATION,
        )
    )
    return PREAMBLE + _GROUP_LENGTH + _LONG_LENGTH.pack(len(body)) + body


def _element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    """One explicit VR little-endian element of group 0002 with a 2-byte length."""
    if len(value) % 2:
        value += pad
    return _TAG.pack(0x0002, element) + vr + _SHORT_LENGTH.pack(len(value)) + value


_GROUP_LENGTH = _TAG.pack(0x0002, 0x0000) + b"UL" + _SHORT_LENGTH.pack(4)
_META_VERSION = _TAG.pack(0x0002, 0x0001) + b"OB\0\0" + _LONG_LENGTH.pack(2) + b"\0\1"
_META_IMPLEMENTATION = _element(
    0x0012, b"UI", PYNETDICOM_IMPLEMENTATION_UID.encode("ascii"), b"\0"
) + _element(0x0013, b"SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii"), b" ")
