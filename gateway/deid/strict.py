"""Strict mode: an allow list instead of a deny list, for sites that want one.

Table E.1-1 lists what identifies; anything it does not name is kept. In strict mode
(`strict: true` in a profile) a public attribute that neither the table nor the profile's
overrides name is kept only when it is in `data/strict_keep.txt`: attributes known not to
identify anyone (image pixel and plane, acquisition parameters, LUTs, coded vocabulary,
functional groups, RT geometry, ...), chosen so that every shipped sample stays valid for
its IOD (dciodvfy). UI attributes are never removed: the engine remaps instance UIDs and
keeps class UIDs. Inside a sequence whose free text the profile replaces (D) or cleans (C)
the list does not apply, since every value there is already handled.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from pydicom.datadict import RepeatersDictionary, tag_for_keyword

STRICT_KEEP_FILE = "strict_keep.txt"


def _repeater_tag(keyword: str) -> int | None:
    """A repeating-group keyword (Overlay Rows, 60xx0010) as its first group's tag."""
    for mask, entry in RepeatersDictionary.items():
        if entry[4] == keyword:
            return int(mask.replace("x", "0"), 16)
    return None


@cache
def strict_list() -> dict[int, str]:
    """The shipped list as tag -> K (keep) or D (dummy); repeating groups as 5000/6000."""
    text = resources.files("gateway.deid").joinpath("data", STRICT_KEEP_FILE)
    found: dict[int, str] = {}
    for number, raw in enumerate(text.read_text(encoding="utf-8").splitlines(), start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1] != "D"):
            raise ValueError(f"{STRICT_KEEP_FILE}:{number}: a keyword, optionally then D")
        tag = tag_for_keyword(words[0])
        resolved = int(tag) if tag is not None else _repeater_tag(words[0])
        if resolved is None:
            raise ValueError(f"{STRICT_KEEP_FILE}:{number}: {words[0]!r} is not a keyword")
        found[resolved] = words[1] if len(words) == 2 else "K"
    return found


def strict_keep_tags() -> frozenset[int]:
    return frozenset(strict_list())


def strict_action(tag: int) -> str | None:
    """K or D for a listed public attribute the table and profile do not name; None: remove."""
    group = tag >> 16
    if 0x5000 <= group <= 0x501E or 0x6000 <= group <= 0x601E:
        tag &= 0xFF00FFFF
    return strict_list().get(tag)


def strict_keeps(tag: int) -> bool:
    return strict_action(tag) is not None
