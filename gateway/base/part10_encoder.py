"""Part 10 files written without pydicom's per-element writer, byte for byte as it would.

`dcmwrite` spends about 10 µs on each element (Tag objects, a BytesIO each, isinstance
chains): a quarter of a worker's time on the gateway's small instances. This encodes the
common case directly (little endian, implicit or explicit VR, native or encapsulated
pixels; raw elements copied, the others encoded as pydicom's writers do) and declines what
it is not sure of (deflate, big endian, ambiguous VRs, buffered or deferred values, another
pydicom than 3.0, any surprise): `write_part10` then calls dcmwrite. Nothing is written
before that choice. Each change made to `ds` here (raw elements converted, ambiguous VRs
corrected, Pixel Data's undefined length set) is one dcmwrite makes itself.
The contract, `dcmwrite(fp, ds, enforce_file_format=True)`'s bytes: test_part10_encoder.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from struct import Struct, pack
from typing import Any, BinaryIO

import pydicom
from numpy import ndarray
from pydicom.charset import convert_encodings, default_encoding, encode_string
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr, dcmwrite
from pydicom.multival import MultiValue
from pydicom.tag import _LUT_DESCRIPTOR_TAGS, Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, IS, DSfloat, PersonName

from gateway.base.transfer_syntaxes import SUPPORTED

_ENABLED = pydicom.__version__.startswith("3.0.")  # the writer this one mirrors
_SYNTAXES = frozenset(SUPPORTED) - {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}
_MULTI = (list, tuple, MultiValue, ndarray)  # filewriter._is_multi_value
_LONG = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)  # explicit VRs, 4-byte length
_SCALARS = frozenset((str, UID, bytes, int, float, IS, DSfloat, PersonName))  # not multi
_TAG, _IMPLICIT, _SHORT, _LONG_HEADER = (Struct(f) for f in ("<HH", "<HHL", "<HH2sH", "<HH2sHL"))
_UNDEFINED = 0xFFFFFFFF
_ITEM = b"\xfe\xff\x00\xe0"
_ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_PIXEL_DATA = 0x7FE00010
# The file meta elements dcmwrite reads through Dataset.__getitem__ (converting raw ones).
_META_READ = frozenset((0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012))

Writer = Callable[[DataElement, Any, list[str], bool], bytes | None]


class _Decline(Exception):
    """The fast path cannot promise dcmwrite's bytes for this dataset."""


def write_part10(handle: BinaryIO, ds: Dataset) -> None:
    """`ds` as a Part 10 file into `handle`: the fast encoding, else dcmwrite's."""
    parts = part10_parts(ds)
    if parts is None:
        dcmwrite(handle, ds, enforce_file_format=True)
    else:
        handle.writelines(parts)


def part10_parts(ds: Dataset) -> list[bytes] | None:
    """The bytes `dcmwrite(fp, ds, enforce_file_format=True)` writes, in pieces (large
    values are not copied); None where only dcmwrite can tell, or where it would raise."""
    if not _ENABLED:
        return None
    try:
        return _file(ds)
    except Exception:  # _Decline, or what dcmwrite would raise itself
        return None


def _file(ds: Dataset) -> list[bytes]:
    if any(tag >> 16 in (0, 2) for tag in ds._dict):
        raise _Decline("command or file meta elements in the dataset")
    meta = getattr(ds, "file_meta", None)
    if not isinstance(meta, Dataset):
        raise _Decline("no file meta")
    elements = _meta_elements(meta)
    syntax = elements[0x00020010].value if 0x00020010 in elements else None
    if not isinstance(syntax, UID) or syntax not in _SYNTAXES:
        raise _Decline("transfer syntax")
    preamble = getattr(ds, "preamble", None)
    if preamble and (not isinstance(preamble, bytes) or len(preamble) != 128):
        raise _Decline("preamble")
    for tag, keyword in ((0x00020002, "SOPClassUID"), (0x00020003, "SOPInstanceUID")):
        old, new = elements.get(tag), ds.get(keyword, None)
        if old is None or old.value is None or (new and new != old.value):
            _set(elements, tag, new)
    if "PixelData" in ds:
        ds["PixelData"].is_undefined_length = syntax.is_compressed
    parts = [preamble or bytes(128), b"DICM", _meta(elements)]
    _dataset(ds, syntax.is_implicit_VR, default_encoding, parts)
    return parts


def _meta_elements(meta: Dataset) -> dict[int, Any]:
    """The file meta elements as held by the copy dcmwrite writes them from."""
    elements: dict[int, Any] = dict(meta._dict)
    convert_all = meta.original_encoding != (False, True) or (
        meta.original_character_set != meta._character_set
    )
    charset = meta.original_character_set or meta._character_set
    for tag, elem in elements.items():
        if tag >> 16 != 2:
            raise _Decline("not a file meta element")
        if isinstance(elem, RawDataElement) and (
            convert_all or tag in _META_READ or elem.value is None
        ):
            if elem.value is None and elem.length:
                raise _Decline("deferred value")
            elements[tag] = elem = convert_raw_data_element(elem, encoding=charset, ds=meta)
        if not isinstance(elem, RawDataElement) and elem.VR not in _WRITERS:
            raise _Decline("ambiguous VR in the file meta")
    return elements


def _set(elements: dict[int, Any], tag: int, value: Any) -> None:
    """`file_meta.<keyword> = value` on dcmwrite's copy (a present element keeps its VR)."""
    old = elements.get(tag)
    elements[tag] = DataElement(tag, old.VR if old is not None else dictionary_VR(tag), value)


def _meta(elements: dict[int, Any]) -> bytes:
    """The file meta group as write_file_meta_info writes it (enforce_standard=True)."""
    if 0x00020001 not in elements:
        _set(elements, 0x00020001, b"\x00\x01")
    if 0x00020012 not in elements:
        _set(elements, 0x00020012, UID(PYDICOM_IMPLEMENTATION_UID))
    if 0x00020013 not in elements:
        _set(elements, 0x00020013, f"PYDICOM {'.'.join(pydicom.__version_info__)}")
    for tag in _META_READ:  # dcmwrite would give a value to some (not in place), or raise
        if elements[tag].is_empty:
            raise _Decline("empty file meta element")
    old = elements.pop(0x00020000, None)  # written first (12 bytes), then with its value
    if old is not None and not (
        old.VR == "UL"
        and (old.length == 4 if isinstance(old, RawDataElement) else _is_uint32(old.value))
    ):
        raise _Decline("unusual group length element")
    parts: list[bytes] = []
    encodings = convert_encodings([default_encoding])
    for tag in sorted(elements, key=int):
        _element(elements[tag], False, encodings, parts)
    rest = b"".join(parts)
    return _SHORT.pack(2, 0, b"UL", 4) + pack("<L", len(rest)) + rest


def _dataset(ds: Dataset, implicit: bool, parent_encoding: Any, parts: list[bytes]) -> None:
    """The elements of `ds` as write_dataset encodes them, appended to `parts`."""
    convert = ds.original_encoding != (implicit, True) or (
        ds.original_character_set != ds._character_set
    )
    if convert:  # dcmwrite re-encodes every element of this dataset from its value
        correct_ambiguous_vr(ds, True)
    charset = ds.get("SpecificCharacterSet", parent_encoding)
    encodings = convert_encodings(charset or [default_encoding])
    elements = ds._dict
    for tag in sorted(elements, key=int):
        if not tag & 0xFFFF and tag >> 16 > 6:
            continue  # retired group length: never written
        elem = elements[tag]
        if isinstance(elem, RawDataElement) and (convert or elem.value is None):
            if elem.value is None and elem.length:
                raise _Decline("deferred value")
            elem = ds[tag]
        _element(elem, implicit, encodings, parts)


def _element(elem: Any, implicit: bool, encodings: list[str], parts: list[bytes]) -> None:
    """One element as write_data_element writes it: header, value, delimiter."""
    tag, vr = int(elem.tag), elem.VR
    if isinstance(elem, RawDataElement):
        value, undefined = elem.value, elem.length == _UNDEFINED
        if elem.is_little_endian is not True or elem.is_implicit_VR is not implicit:
            raise _Decline("raw element of another encoding")
        if type(value) is not bytes or not (implicit or vr in _WRITERS):
            raise _Decline("raw value or VR")
        pixels = value
    else:
        pixels, undefined = elem.value, elem.is_undefined_length
        writer = _WRITERS.get(vr)
        if writer is None:
            raise _Decline("VR")
        value = b"" if _is_empty(vr, pixels) else writer(elem, pixels, encodings, implicit)
        if value is None:
            raise _Decline("value")
    if undefined and tag == _PIXEL_DATA and not pixels[:4].startswith(_ITEM):
        raise _Decline("undefined-length pixel data that is not encapsulated")
    length = len(value)
    if implicit:
        parts.append(_IMPLICIT.pack(tag >> 16, tag & 0xFFFF, _UNDEFINED if undefined else length))
    else:
        if vr not in _LONG and not undefined and length > 0xFFFF:
            vr = "UN"  # as dcmwrite does (PS3.5 6.2.2)
        if vr in _LONG:
            length = _UNDEFINED if undefined else length
            parts.append(_LONG_HEADER.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0, length))
        elif undefined:
            raise _Decline("undefined length with a 2-byte length VR")
        else:
            parts.append(_SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), length))
    parts.append(value)
    if undefined:
        parts.append(_SEQUENCE_END)


def _is_empty(vr: str, value: Any) -> bool:
    """DataElement.is_empty (VM 0), for a value that is not a buffer."""
    if vr == "SQ":
        return not value
    if value is None:
        return True
    if isinstance(value, str | bytes | PersonName):
        return not value
    if hasattr(value, "read"):
        raise _Decline("buffered value")
    try:
        iter(value)
    except TypeError:
        return False
    return not len(value)


def _is_multi(value: Any) -> bool:
    return type(value) not in _SCALARS and isinstance(value, _MULTI)


def _is_uint32(value: Any) -> bool:
    return type(value) is int and 0 <= value <= 0xFFFFFFFF


# --- values, as pydicom.filewriter's writers encode them -------------------------------------


def _strings(pad: str, elem: DataElement, value: Any, *_: Any) -> bytes | None:
    if _is_multi(value):
        value = "\\".join(value)
    if not isinstance(value, str):
        return None  # dates as objects, bytes: left to dcmwrite
    if len(value) % 2:
        value += pad
    return value.encode(default_encoding)


def _number_strings(elem: DataElement, value: Any, *_: Any) -> bytes:
    if _is_multi(value):
        text = "\\".join(
            x.original_string if hasattr(x, "original_string") else str(x) for x in value
        )
    else:
        text = value.original_string if hasattr(value, "original_string") else str(value)
    if len(text) % 2:
        text += " "
    return bytes(text, default_encoding)


def _text(elem: DataElement, value: Any, encodings: list[str], *_: Any) -> bytes | None:
    if _is_multi(value):
        if isinstance(value[0], str):
            value = b"\\".join([encode_string(v, encodings) for v in value])
        else:
            value = b"\\".join(list(value))
    elif isinstance(value, str):
        value = encode_string(value, encodings)
    if not isinstance(value, bytes):
        return None
    return value + b" " if len(value) % 2 else value


def _person_names(elem: DataElement, value: Any, encodings: list[str], *_: Any) -> bytes:
    names = [value] if elem.VM == 1 else value
    encoded = b"\\".join([name.encode(encodings) for name in names])
    return encoded + b" " if len(encoded) % 2 else encoded


def _numbers(code: str, elem: DataElement, value: Any, *_: Any) -> bytes:
    if value is None or value == "":
        return b""
    if not hasattr(value, "append"):
        return pack(f"<{code}", value)
    if code == "h" and elem.tag in _LUT_DESCRIPTOR_TAGS and value:
        return pack("<H", value[0]) + pack(f"<{len(value) - 1}h", *value[1:])
    return pack(f"<{len(value)}{code}", *value)


def _bytes(pad: bool, elem: DataElement, value: Any, *_: Any) -> bytes | None:
    if not isinstance(value, bytes):
        return None
    return value + b"\x00" if pad and len(value) % 2 else value


def _tags(elem: DataElement, value: Any, *_: Any) -> bytes:
    try:
        iter(value)
    except TypeError:  # one tag
        tags = [Tag(value)]
    else:
        tags = [Tag(t) for t in value]
    return b"".join([_TAG.pack(t >> 16, t & 0xFFFF) for t in tags])


def _sequence(elem: DataElement, value: Any, encodings: list[str], implicit: bool) -> bytes:
    parts: list[bytes] = []
    for item in value:  # (not a Dataset: an AttributeError, declined)
        body: list[bytes] = []
        _dataset(item, implicit, encodings, body)
        if getattr(item, "is_undefined_length_sequence_item", False):
            parts += [_ITEM, b"\xff\xff\xff\xff", *body, _ITEM_END]
        else:
            parts += [_ITEM, pack("<L", sum(map(len, body))), *body]
    return b"".join(parts)


_NUMBERS = ("FD", "FL", "SL", "SS", "SV", "UL", "US", "UV")
_WRITERS: dict[str, Writer] = {
    **dict.fromkeys(("AE", "AS", "CS", "DA", "DT", "TM", "UR"), partial(_strings, " ")),
    "UI": partial(_strings, "\0"),
    **dict.fromkeys(("DS", "IS"), _number_strings),
    **dict.fromkeys(("LO", "LT", "SH", "ST", "UC", "UT"), _text),
    "PN": _person_names,
    **{vr: partial(_numbers, c) for vr, c in zip(_NUMBERS, "dflhqLHQ", strict=True)},
    **dict.fromkeys(("OB", "OD", "OF", "OL", "OV", "OW"), partial(_bytes, True)),
    "UN": partial(_bytes, False),  # unpadded
    "AT": _tags,
    "SQ": _sequence,
}
