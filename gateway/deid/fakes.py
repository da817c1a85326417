"""Realistic fake values for a profile's `{replace: CLASS}` overrides.

A fake keeps downstream software happy where an empty or "DEIDENTIFIED" value would not (a
viewer that sorts by name, a PACS that rejects an empty Type 1 ID), while carrying nothing of
the original: each fake is picked from word lists shipped with the package (data/words/*.txt,
common names and invented-style place names) by a keyed HMAC of (site secret, class, original
value), so the same original gives the same fake on every run and gateway of the site, and
nobody without the secret can tell which original a fake stands for.

Every fake is valid for the element's VR and within its length limit (PS3.5 6.2), and never
equals the original value.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from functools import cache
from importlib import resources

# (class, value, attempt) -> 32 keyed bytes; see pseudonyms.Pseudonyms.fake_digest.
Digest = Callable[[str, str], bytes]

GIVEN_NAME = "GIVEN_NAME"
SURNAME = "SURNAME"
FULL_NAME = "FULL_NAME"
DATE = "DATE"
TIME = "TIME"
DATETIME = "DATETIME"
ID_NUMERICAL = "ID_NUMERICAL"
ID_ALPHANUMERICAL = "ID_ALPHANUMERICAL"
UID = "UID"
INSTITUTION = "INSTITUTION"
LOCATION = "LOCATION"

FAKE_CLASSES = (
    GIVEN_NAME,
    SURNAME,
    FULL_NAME,
    DATE,
    TIME,
    DATETIME,
    ID_NUMERICAL,
    ID_ALPHANUMERICAL,
    UID,
    INSTITUTION,
    LOCATION,
)

# PS3.5 Table 6.2-1: maximum length of one value (PN: per component group).
MAX_LENGTH = {
    "AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240, "UC": 1024,
    "UT": 10240, "DA": 8, "TM": 16, "DT": 26, "UI": 64, "IS": 12,
}
_TEXT_VRS = frozenset({"AE", "CS", "SH", "LO", "PN", "ST", "LT", "UC", "UT"})
_WORDY_TEXT = _TEXT_VRS - {"PN"}

# Which VRs a class can fill with a valid value.
COMPATIBLE_VRS: dict[str, frozenset[str]] = {
    GIVEN_NAME: _TEXT_VRS,
    SURNAME: _TEXT_VRS,
    FULL_NAME: _TEXT_VRS,
    INSTITUTION: _TEXT_VRS,
    LOCATION: _TEXT_VRS,
    ID_ALPHANUMERICAL: _TEXT_VRS,
    ID_NUMERICAL: _TEXT_VRS | {"IS"},
    DATE: _WORDY_TEXT | {"DA", "DT"},
    TIME: _WORDY_TEXT | {"TM"},
    DATETIME: _WORDY_TEXT | {"DT"},
    UID: frozenset({"UI", "LO", "ST", "LT", "UC", "UT"}),  # 2.25 UIDs are up to 44 long
}

_INSTITUTION_KINDS = (
    "General Hospital",
    "University Hospital",
    "Medical Centre",
    "Community Hospital",
    "Infirmary",
    "Imaging Centre",
    "Clinic",
    "Radiology Institute",
    "Health Centre",
    "Cancer Centre",
)
_STREET_KINDS = ("Street", "Road", "Lane", "Avenue", "Close", "Way", "Drive", "Gardens", "Place")
_ALPHANUMERIC = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no I, O, 0, 1: read aloud without doubt
_FIRST_DAY = date(1930, 1, 1)
_DAY_SPAN = 90 * 365
_MAX_ATTEMPTS = 16


class FakeError(ValueError):
    """A class that cannot fill a VR (a configuration error, found when compiling)."""


@cache
def words(name: str) -> tuple[str, ...]:
    """A shipped word list (data/words/NAME.txt), without comments and blank lines."""
    text = resources.files("gateway.deid").joinpath("data", "words", f"{name}.txt")
    lines = text.read_text(encoding="utf-8").splitlines()
    return tuple(w.strip() for w in lines if w.strip() and not w.startswith("#"))


def compatible(fake_class: str, vr: str) -> bool:
    return vr in COMPATIBLE_VRS.get(fake_class, frozenset())


def fake_value(fake_class: str, original: str, vr: str, digest: Digest) -> str:
    """The fake of `original` for an element of `vr`; raises FakeError for a VR it cannot fill.

    Deterministic per (secret, class, original); a fake that happens to equal the original
    (the same name in both) is drawn again with the next attempt number.
    """
    if not compatible(fake_class, vr):
        raise FakeError(f"{fake_class} cannot fill a {vr} value")
    wanted = _normal(original)
    for attempt in range(_MAX_ATTEMPTS):
        key = original if attempt == 0 else f"{original}\x00{attempt}"
        value = _fit(_draw(fake_class, vr, digest(fake_class, key)), vr)
        if _normal(value) != wanted:
            return value
    raise FakeError(f"no {fake_class} differs from the original")  # pragma: no cover


def _normal(text: str) -> str:
    return " ".join(text.replace("^", " ").split()).upper()


def _number(digest: bytes, part: int) -> int:
    """The part-th 4-byte number of the digest (parts 0-7)."""
    return int.from_bytes(digest[4 * part : 4 * part + 4], "big")


def _pick(name: str, digest: bytes, part: int) -> str:
    options = words(name)
    return options[_number(digest, part) % len(options)]


def _draw(fake_class: str, vr: str, d: bytes) -> str:
    if fake_class == GIVEN_NAME:
        given = _pick("given_names", d, 0)
        return f"^{given}" if vr == "PN" else given
    if fake_class == SURNAME:
        return _pick("surnames", d, 0)
    if fake_class == FULL_NAME:
        surname, given = _pick("surnames", d, 0), _pick("given_names", d, 1)
        return f"{surname}^{given}" if vr == "PN" else f"{given} {surname}"
    if fake_class == INSTITUTION:
        kind = _INSTITUTION_KINDS[_number(d, 1) % len(_INSTITUTION_KINDS)]
        return f"{_pick('towns', d, 0)} {kind}"
    if fake_class == LOCATION:
        street = f"{_pick('streets', d, 0)} {_STREET_KINDS[_number(d, 1) % len(_STREET_KINDS)]}"
        return f"{1 + _number(d, 2) % 199} {street}, {_pick('towns', d, 3)}"
    if fake_class == ID_NUMERICAL:
        digits = 9 if vr == "IS" else 10  # IS: a signed 32-bit integer
        low = 10 ** (digits - 1)
        return str(low + int.from_bytes(d[:8], "big") % (9 * low))
    if fake_class == ID_ALPHANUMERICAL:
        chars = [_ALPHANUMERIC[b % len(_ALPHANUMERIC)] for b in d[:10]]
        chars[0] = _ALPHANUMERIC[d[10] % 24]  # a letter first: never read as a number
        return "".join(chars)
    if fake_class == DATE:
        return _date(d)
    if fake_class == TIME:
        return _time(d)
    if fake_class == DATETIME:
        return _date(d) + _time(d)
    if fake_class == UID:
        # PS3.5 B.2: 2.25 and the decimal form of a 128-bit UUID (version 8, RFC 9562).
        value = int.from_bytes(d[:16], "big") & ~(0xF << 76) | (8 << 76)
        value = value & ~(0x3 << 62) | (0x2 << 62)
        return f"2.25.{value}"
    raise FakeError(f"unknown fake-value class {fake_class}")


def _date(d: bytes) -> str:
    return (_FIRST_DAY + timedelta(days=_number(d, 4) % _DAY_SPAN)).strftime("%Y%m%d")


def _time(d: bytes) -> str:
    seconds = _number(d, 5) % 86400
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


def _fit(value: str, vr: str) -> str:
    """The value cut to its VR's length limit, in its VR's character set."""
    if vr == "CS":
        value = "".join(c if c.isalnum() or c == " " else "_" for c in value.upper())
    limit = MAX_LENGTH.get(vr)
    if limit is None or len(value) <= limit:
        return value
    if vr == "PN":
        parts = [part[:limit] for part in value.split("^")]
        while len("^".join(parts)) > limit:
            parts[0] = parts[0][:-1]
        return "^".join(parts)
    return value[:limit].rstrip(" ,_")
