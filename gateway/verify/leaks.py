"""The last gate: search a de-identified instance for the input's identifying values.

The engine follows the table; this gate does not trust it. It searches every element at
every depth, private ones and the file meta included, for the identifiers collected from
the input and for every original UID that was remapped. It folds text as the cleaner does
(`base/identifiers.py`, `base/text_folding.py`: case, accents, width, kana, separators),
so a spelling the cleaner missed is caught here; bytes that another character set of the
input's values would read differently (UTF-8 in a file that declares none) are read again.
A hit means the instance must not be written; the leak report names where (the tag path)
and what kind of value, never the value itself.

One exception, by path: a whole value that a rule of the profile itself computed at that very
element (the engine's `DeidResult.produced`), e.g. a date rule that gives a birth date on 1
January back unchanged. The same value anywhere else is still a leak.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gateway.base.element_values import converted, string_values, vr_and_element
from gateway.base.identifiers import Identifiers, normalise

# Bulk data that is not text: searching it costs time and finds noise, never a name.
_BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010, 0x00420011})
_BULK_GROUPS = frozenset({0x7FE0})
_BINARY_VRS = frozenset({"OB", "OW", "UN", "OF", "OD", "OL", "OV"})
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_MAX_BINARY_SCAN = 1 << 20
# Vocabularies, not prose: coded entries (Code Value, Coding Scheme Designator and Version,
# Code Meaning), CS defined terms, and the equipment's maker and model. A name part that is
# also an ordinary word or a vendor name ("HEAD", "PERFUSION", "TOSHIBA") is no leak there;
# a whole identifying value still is.
_VOCABULARY_TAGS = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080104})
_EQUIPMENT_TAGS = frozenset({0x00080070, 0x00081090})
# Standard UIDs (SOP classes, transfer syntaxes, coding schemes) identify nobody, even when
# a malformed input used one where an instance UID belongs.
_DICOM_ROOT = "1.2.840.10008."
# Placeholders such as "0" or "1.2" in a malformed input are not anybody's UID.
_MIN_UID_LENGTH = 8


@dataclass(frozen=True)
class Leak:
    """Where an identifier was found; `path` is a tag path like `(0040,A730)[0](0040,A160)`."""

    path: str
    kind: str

    def __str__(self) -> str:
        return f"{self.kind} found at {self.path}"


def _is_overlay_or_curve_data(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    return (0x6000 <= group <= 0x601E and element == 0x3000) or (
        0x5000 <= group <= 0x501E and element == 0x3000
    )


# Character sets whose bytes read as Latin-1 give the text itself: raw values in them are
# searched without pydicom converting (and later re-encoding) every element.
_LATIN1_CHARSETS = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO 2022 IR 6", "ISO 2022 IR 100"})


def _latin1(ds: Dataset, inherited: bool) -> bool:
    if 0x00080005 not in ds:
        return inherited
    charset = ds[0x00080005].value or ""
    names = [charset] if isinstance(charset, str) else list(charset)
    return all(str(name).strip() in _LATIN1_CHARSETS for name in names)


Readings = Callable[[str, bool], list[str]]


def _texts(
    ds: Dataset,
    path: str,
    out: list[tuple[str, str, str, int]],
    depth: int,
    latin1: bool,
    readings: Readings,
) -> None:
    """(path, VR, normalised text, tag) for every searchable value of `ds`, at every depth."""
    if depth > 64:
        raise ValueError("sequence nesting deeper than 64 levels")
    latin1 = _latin1(ds, latin1)
    for key in list(ds.keys()):  # `key` (the dataset's own) for ds, the int for our tables
        t = int(key)
        if t in _BULK_TAGS or t >> 16 in _BULK_GROUPS:
            continue
        if t & 0xFFFF == 0x3000 and _is_overlay_or_curve_data(t):
            continue
        vr, raw = vr_and_element(ds, key)
        if vr == "SQ":
            where = _where(path, t)
            for index, item in enumerate(converted(ds, key, raw).value or ()):
                _texts(item, f"{where}[{index}]", out, depth + 1, latin1, readings)
        elif vr in _TEXT_VRS:
            where = _where(path, t)
            if latin1 and isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
                for part in raw.value.decode("latin-1").split("\\"):
                    text = part.strip(" \x00")
                    if text:
                        out.append((where, vr, normalise(text), t))
                        for reading in readings(text, False):
                            out.append((where, vr, normalise(reading), t))
            else:
                for text in string_values(converted(ds, key, raw)):
                    out.append((where, vr, normalise(text), t))
        elif vr in _BINARY_VRS:
            value = converted(ds, key, raw).value
            if isinstance(value, bytes) and 0 < len(value) <= _MAX_BINARY_SCAN:
                where = _where(path, t)
                text = value.decode("latin-1")
                out.append((where, vr, normalise(text), t))
                for reading in readings(text, True):
                    out.append((where, vr, normalise(reading), t))
        else:
            text = _number_text(ds, key, vr, raw)
            if text:
                out.append((_where(path, t), _NUMBER_VR, normalise(text), t))


def _where(path: str, tag: int) -> str:
    """The tag path of an element of the dataset at `path`: `(0040,A730)[0](0040,A160)`."""
    return f"{path}({tag >> 16:04X},{tag & 0xFFFF:04X})"


# Numbers (DS, IS, US, FL, ...) identify nobody, but a malformed length upstream can make
# one swallow its neighbours, a name included: their bytes are searched too, unless they
# read as the numbers they claim to be.
_NUMBER_VR = "number"
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_NUMBER_FORMATS |= {"SV": "q", "UV": "Q", "AT": "I", "US or SS": "H", "US or OW": "H"}
_NUMBER_FORMATS |= {"US or SS or OW": "H"}
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number_text(ds: Dataset, tag: int, vr: str, raw: DataElement | RawDataElement) -> str:
    """The value of a number element as text when it may hide one (see above), else "";
    `raw`: the element as `ds` holds it."""
    value = raw.value  # raw bytes, or the converted element's value
    if vr in ("DS", "IS"):
        if isinstance(value, bytes):
            text = value[:_MAX_BINARY_SCAN].decode("latin-1")
        else:
            text = "\\".join(string_values(converted(ds, tag, raw)))
        parts = (p.strip(" \x00") for p in text.split("\\"))
        return "" if all(not p or _DECIMAL.fullmatch(p) for p in parts) else text
    if isinstance(value, bytes):
        return value[:_MAX_BINARY_SCAN].decode("latin-1")
    code = _NUMBER_FORMATS.get(vr)
    numbers = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    if code is None or not numbers or len(numbers) > _MAX_BINARY_SCAN // 8:
        return ""
    try:
        packed = [struct.pack(f"{order}{len(numbers)}{code}", *numbers) for order in "<>"]
    except (struct.error, TypeError):
        return ""
    return "\x00".join(p.decode("latin-1") for p in packed)


def find_leaks(
    ds: Dataset, identifiers: Identifiers, produced: Mapping[str, Iterable[str]] | None = None
) -> list[Leak]:
    """Every place in `ds` (and its file meta) where an identifier of the input survives;
    `produced` (tag path -> values a profile rule wrote there) spares those whole values."""
    spared = {path: {normalise(v) for v in found} for path, found in (produced or {}).items()}
    values: list[tuple[str, str, str, int]] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _texts(meta, "meta:", values, 0, True, identifiers.readings)
    _texts(ds, "", values, 0, True, identifiers.readings)
    leaks: list[Leak] = []
    pattern = identifiers.pattern()
    value_pattern = identifiers.value_pattern()
    # Bytes read as text spell one or two letters by chance: longer parts only there.
    bytes_pattern = identifiers.bytes_pattern()
    uids = {
        u for u in identifiers.uids if len(u) >= _MIN_UID_LENGTH and not u.startswith(_DICOM_ROOT)
    }
    long_uids = [u for u in uids if len(u) >= 10]
    for path, vr, text, tag in values:
        if path in spared and text in spared[path]:
            continue  # the rule's own value where it wrote it (see the module text)
        if vr == "UI":
            # A UID is a whole value: compared exactly, never searched for names or IDs (a
            # 2.25 decimal UID holds every short number somewhere).
            if text in uids:
                leaks.append(Leak(path, "original UID"))
        elif vr == _NUMBER_VR:
            # Never compared whole: a short ID such as "12" is also an Instance Number.
            if bytes_pattern is not None and bytes_pattern.search(text):
                leaks.append(Leak(path, "identifying value in a number"))
        elif text in identifiers.exact:
            leaks.append(Leak(path, "identifying value"))
        elif tag in _EQUIPMENT_TAGS:
            continue
        elif vr == "CS" or tag in _VOCABULARY_TAGS:
            if (value_pattern is not None and value_pattern.search(text)) or (
                vr == "CS" and identifiers.names_code(text)
            ):
                leaks.append(Leak(path, "identifying value"))
        else:
            search = bytes_pattern if vr in _BINARY_VRS else pattern
            if search is not None and search.search(text):
                leaks.append(Leak(path, "identifying value"))
            elif long_uids and any(u in text for u in long_uids):
                leaks.append(Leak(path, "original UID in text"))
    return leaks
