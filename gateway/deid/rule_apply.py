"""Applying a site override with a parameter (fake value, fixed text, allow list) to one
element; see overrides.py for the syntax and the engine for when it applies."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from gateway.base.element_values import element, string_values, vr_of
from gateway.deid.actions import as_list
from gateway.deid.fakes import Digest, FakeError, fake_value
from gateway.deid.overrides import Rule, check_text

_NOT_VETTED = ("DA", "TM", "DT", "UI", "IS", "DS", "AS")


def apply_rule(ds: Dataset, t: int, rule: Rule, vr: str, digest: Digest) -> set[str]:
    """Apply `rule` to element `t` of `ds` in place; returns the UIDs a fake replaced.

    A value the element's VR cannot take (a private element read as UN, a number) removes
    the element: nothing is kept that the rule did not vet.
    """
    values = [str(v) for v in as_list(ds[t].value)]
    if rule.kind == "fake":
        try:
            new = [fake_value(rule.fake_class, v, vr, digest) for v in values or [""]]
        except FakeError:
            del ds[t]
            return set()
        _set(ds, t, vr, new)
        return {v.strip() for v in values if v.strip()} if vr == "UI" else set()
    if rule.kind == "text":
        if check_text(rule.text, vr):
            del ds[t]
        else:
            _set(ds, t, vr, [rule.text])
        return set()
    if check_text("", vr) or vr in _NOT_VETTED:
        del ds[t]  # an allow list is for text; anything else cannot be vetted
        return set()
    kept = [v for v in values if rule.allows(v)]
    if len(kept) == len(values):
        return set()
    if rule.fallback == "text":
        if check_text(rule.text, vr):
            del ds[t]
            return set()
        kept = [v if rule.allows(v) else rule.text for v in values]
    if kept:
        _set(ds, t, vr, kept)
    elif rule.fallback == "empty":
        ds[t] = DataElement(t, vr, "")
    else:
        del ds[t]
    return set()


def _set(ds: Dataset, t: int, vr: str, values: list[str]) -> None:
    ds[t] = DataElement(t, vr, values if len(values) > 1 else values[0])


def produced_values(ds: Dataset, elements: Iterable[object]) -> dict[str, tuple[str, ...]]:
    """Where each element a rule wrote sits in `ds` (a tag path as the verify gate writes it,
    `(0040,A730)[0](0040,A160)`) and its values there.

    Found by identity after the walk, so that an element a later step replaced or removed
    is no longer the rule's and is checked as any other.
    """
    wanted = {id(elem) for elem in elements}
    found: dict[str, tuple[str, ...]] = {}
    if wanted:
        _find(ds, wanted, "", found, 0)
    return found


def _find(ds: Dataset, wanted: set[int], path: str, found: dict[str, tuple[str, ...]],
          depth: int) -> None:  # fmt: skip
    if depth > 64:
        return
    for key in list(ds.keys()):
        t = int(key)
        if t >> 16 == 0x7FE0:
            continue
        where = f"{path}({t >> 16:04X},{t & 0xFFFF:04X})"
        held = element(ds, key)  # `key` (the dataset's own) for ds: see element_values
        if id(held) in wanted and isinstance(held, DataElement):
            found[where] = tuple(string_values(held))
        elif vr_of(ds, key) == "SQ":
            for index, item in enumerate(ds[key].value or ()):
                _find(item, wanted, f"{where}[{index}]", found, depth + 1)
