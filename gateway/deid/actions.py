"""Values produced by the actions of PS3.15 E.1.1: dummies (D), date shifts and text cleaning (C).

Pure functions of a value; the walk that decides which one applies is in `engine.py`.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

# D: "replace with a non-zero length value that may be a dummy value and consistent with
# the VR" (PS3.15 E.1.1). Each value is valid for its VR and within its length limit.
DUMMY_TEXT = "DEIDENTIFIED"
_DUMMY_BY_VR: dict[str, object] = {
    "AE": "DEIDENTIFIED",
    "AS": "000Y",
    "CS": "DEIDENTIFIED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "PN": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "TM": "000000",
    "UC": DUMMY_TEXT,
    "UR": "urn:oid:2.25.0",
    "UT": DUMMY_TEXT,
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
    "AT": 0,
    "OB": b"\x00\x00",
    "OW": b"\x00\x00",
    "OF": b"\x00\x00\x00\x00",
    "OL": b"\x00\x00\x00\x00",
    "OD": b"\x00" * 8,
    "OV": b"\x00" * 8,
    "UN": b"\x00\x00",
}

TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT", "CS", "PN"})
# In a sequence replaced by dummies (D on an SQ), these carry free text or names.
FREE_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC", "AE", "UR"})


def dummy_value(vr: str) -> object:
    """A fixed non-empty value valid for `vr` (UI is remapped by the caller, SQ recursed)."""
    try:
        return _DUMMY_BY_VR[vr]
    except KeyError:
        raise ValueError(f"no dummy value for VR {vr}") from None


def _parse_da(text: str) -> date | None:
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def shift_da(value: str, days: int) -> str | None:
    """A DA value (or DA range `A-B`, PS3.4 C.2.2.2.5) moved `days` into the past.

    None when the value is not a date we can read: the caller empties it rather than keep
    a date it could not shift.
    """
    text = value.strip()
    if "-" in text:
        parts = text.split("-")
        if len(parts) != 2:
            return None
        shifted = [shift_da(p, days) if p else "" for p in parts]
        if any(s is None for s in shifted):
            return None
        return "-".join(s or "" for s in shifted)
    parsed = _parse_da(text)
    if parsed is None:
        return None
    try:
        return (parsed - timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return None


def shift_dt(value: str, days: int) -> str | None:
    """A DT value moved `days` into the past, keeping its precision, time and UTC offset.

    PS3.5 6.2: YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]. A year-only or year-month value moves by
    whole years or months (the nearest to `days`), since finer would invent precision.
    """
    text = value.strip()
    offset = ""
    match = re.search(r"[+-]\d{4}$", text)
    if match and len(text) > 5:
        text, offset = text[: match.start()], match.group()
    if not text[:4].isdigit():
        return None
    if len(text) >= 8:
        day = shift_da(text[:8], days)
        return None if day is None else day + text[8:] + offset
    if len(text) == 6 and text.isdigit():
        anchor = shift_da(text + "15", days)
        return None if anchor is None else anchor[:6] + offset
    if len(text) == 4:
        return f"{int(text) - round(days / 365.25):04d}" + offset
    return None


# Dates written in free text: 20200131, 2020-01-31, 31/01/2020, 31.01.2020.
_TEXT_DATE = re.compile(
    r"(?<!\d)(?:(?P<iso>(?:19|20)\d\d-?(?:0[1-9]|1[0-2])-?(?:0[1-9]|[12]\d|3[01]))"
    r"|(?P<eu>(?:0[1-9]|[12]\d|3[01])[./](?:0[1-9]|1[0-2])[./](?:19|20)\d\d))(?!\d)"
)


def clean_dates_in_text(text: str, days: int | None) -> str:
    """Dates inside free text shifted by `days`, or replaced by `*` when `days` is None."""

    def replace(match: re.Match[str]) -> str:
        if days is None:
            return "*"
        if match.group("iso"):
            raw = match.group("iso")
            compact = raw.replace("-", "")
            shifted = shift_da(compact, days)
            if shifted is None:
                return "*"
            if "-" in raw:
                return f"{shifted[:4]}-{shifted[4:6]}-{shifted[6:]}"
            return shifted
        raw = match.group("eu")
        sep = raw[2]
        d, m, y = raw.split(sep)
        shifted = shift_da(y + m + d, days)
        if shifted is None:
            return "*"
        return f"{shifted[6:]}{sep}{shifted[4:6]}{sep}{shifted[:4]}"

    return _TEXT_DATE.sub(replace, text)


STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR",
     "UT"}
)


def empty_value(vr: str) -> object:
    """Z: a zero-length value of the element's VR."""
    if vr == "SQ":
        return Sequence()
    return "" if vr in STRING_VRS else None


def as_list(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]


OLDEST_KEPT_AGE = "090Y"  # HIPAA Safe Harbor: every age over 89 is one group, "90 or older"


def capped_age(value: object) -> object:
    """A kept Age String (Retain Patient Characteristics) with an age over 89 years as
    "090Y": so few people reach such an age that it names them."""
    text = str(value or "").strip()
    if len(text) == 4 and text.endswith("Y") and text[:3].isdigit() and int(text[:3]) > 89:
        return OLDEST_KEPT_AGE
    return value
