"""Element names as CTP scripts write them: keywords, dcm4che names, hex tags, private blocks.

CTP resolves a name with dcm4che's dictionary (names such as `PatientName`, `InstitutionCodeSeq`,
`ReferringPhysicianPhoneNumbers`), then as hex (`00100010`, `0010,0010`, `(0010,0010)`,
`[0010,0010]`), then as a private element `gggg[creator]ee` whose block is found from the
dataset's Private Creator elements. dcm4che's dictionary is not shipped; its names derive
from the attribute names, so they are rebuilt from pydicom's dictionary the same way, with
today's keywords and the `Seq` short form accepted too.
"""

from __future__ import annotations

import re
from functools import cache

from pydicom.datadict import DicomDictionary, RepeatersDictionary
from pydicom.dataset import Dataset

_HEX = re.compile(r"[0-9a-fA-F]{1,8}")
_HEX_COMMA = re.compile(r"([0-9a-fA-F]{0,4}),([0-9a-fA-F]{1,4})")
_PRIVATE = re.compile(r"([0-9a-fA-F]{1,4}),?\[([^\]]*)\],?([0-9a-fA-F]{1,2})?")


@cache
def _name_index() -> dict[str, int]:
    index: dict[str, int] = {}
    for tag, (_vr, _vm, name, _retired, keyword) in DicomDictionary.items():
        derived = re.sub(r"[^a-zA-Z0-9]", "", re.sub(r"'s\s", "", name))
        for spelling in (derived, keyword):
            if spelling:
                index.setdefault(spelling, tag)
                if spelling.endswith("Sequence"):
                    index.setdefault(spelling[: -len("uence")], tag)
    for mask, (_vr, _vm, _name, _retired, keyword) in RepeatersDictionary.items():
        if keyword and mask.startswith("60xx"):
            index.setdefault(keyword, int("6000" + mask[4:], 16))
    return index


def _unwrap(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and (name[0], name[-1]) in (("{", "}"), ("[", "]"), ("(", ")")):
        name = name[1:-1].strip()
    return name


def public_tag(name: str) -> int:
    """The tag for a keyword, dcm4che name or hex spelling; 0 when it is none of those."""
    name = _unwrap(name)
    tag = _name_index().get(name)
    if tag is not None:
        return tag
    if _HEX.fullmatch(name):
        return int(name, 16)
    match = _HEX_COMMA.fullmatch(name)
    if match:
        group = int(match.group(1) or "0", 16)
        return (group << 16) | int(match.group(2), 16)
    return 0


def private_spec(name: str) -> tuple[int, str, int | None] | None:
    """(group, creator, element offset) for `gggg[creator]ee`; None when not that form."""
    name = _unwrap(name)
    match = _PRIVATE.fullmatch(name)
    if match is None:
        return None
    group = int(match.group(1), 16)
    if not group & 1:
        return None
    element = int(match.group(3), 16) if match.group(3) else None
    return group, match.group(2).strip(), element


def private_tag(ds: Dataset, spec: tuple[int, str, int | None]) -> int:
    """The tag a private spec has in `ds` (its creator's block); 0 when the block is absent."""
    group, creator, element = spec
    base = group << 16
    for block in range(1, 256):
        elem = ds.get(base | block)
        if elem is None:
            continue
        owner = elem.value
        if isinstance(owner, bytes):
            owner = owner.decode("latin-1")
        if owner is not None and str(owner).strip() == creator:
            return base | (block << 8) | (element or 0) if element is not None else base | block
    return 0


def is_resolvable(name: str, private_names: set[str] | frozenset[str]) -> bool:
    """True when a name in a script can mean an element (checked at load time)."""
    name = name.strip()
    if name == "this":
        return True
    if name.startswith("root:"):
        name = name[5:].strip()
    return all(
        public_tag(part) != 0 or part.strip() in private_names or private_spec(part) is not None
        for part in name.split("::")
    )
