"""A site's choice: clean a kept value the verify gate flags instead of quarantining.

Off by default (deid.free_text.clean_on_leak: fail closed). A profile or CTP script that
keeps, say, Series Description holds every instance whose description names the patient;
with the choice on, that value is cleaned (the instance's identifiers and the recognizer)
where the gate found it, and the gate runs again. Only text values are cleaned this way: an
original UID, a value in the file meta or in binary data still holds the instance.
"""

from __future__ import annotations

import re

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from gateway.base.element_values import string_values
from gateway.deid.free_text import TextCleaner
from gateway.verify.leaks import Leak

_STEP = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)(?:\[(\d+)\])?")
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UC", "UT", "PN"})


def _element_at(ds: Dataset, path: str) -> tuple[Dataset, int] | None:
    """The dataset holding the element a leak path names, and its tag."""
    if path.startswith("meta:"):
        return None
    steps = _STEP.findall(path)
    if not steps or "".join(
        f"({g},{e})" + (f"[{i}]" if i else "") for g, e, i in steps
    ) != path:
        return None
    current = ds
    for index, (group, element, item) in enumerate(steps):
        tag = int(group + element, 16)
        if tag not in current:
            return None
        if index == len(steps) - 1:
            return (current, tag) if not item else None
        if not item:
            return None
        items = current[tag].value
        position = int(item)
        if not isinstance(items, list | tuple) and not hasattr(items, "__getitem__"):
            return None
        try:
            current = items[position]
        except (IndexError, TypeError):
            return None
    return None


def clean_leaks(ds: Dataset, leaks: list[Leak], cleaner: TextCleaner) -> bool:
    """Clean each flagged text value in place; False when a leak is not a text value
    (the instance is then held as before)."""
    for leak in leaks:
        if leak.kind.startswith("original UID"):
            return False
        found = _element_at(ds, leak.path)
        if found is None:
            return False
        owner, tag = found
        element = owner[tag]
        if element.VR not in _TEXT_VRS:
            return False
        values = [cleaner.clean(value) for value in string_values(element)]
        owner[tag] = DataElement(tag, element.VR, values if len(values) != 1 else values[0])
    return True
