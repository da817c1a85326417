"""What an element holds, read without converting it where its raw form already says it.

Shared by the identifier collection (`identifiers`), the engine and the verify gate: they
walk every element of every instance, and pydicom converts a raw value on first access.

`tag` may be a plain int or the dataset's own key (a `BaseTag` from `ds.keys()`); the key
is faster: pydicom's Tag objects compare in Python, and a dict lookup with the very key
object it holds compares nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["cheap_vr", "converted", "element", "string_values", "vr_and_element", "vr_of"]


def string_values(elem: DataElement) -> Iterator[str]:
    """The text values of an element, whatever its VM (PN values as their str form)."""
    value = elem.value
    if value is None or value == "":
        return
    values: Iterable[object] = value if isinstance(value, MultiValue | list | tuple) else [value]
    for item in values:
        if item is None:
            continue
        text = item.decode("latin-1") if isinstance(item, bytes) else str(item)
        if text:
            yield text


def element(ds: Dataset, tag: int) -> DataElement | RawDataElement | None:
    """`ds.get_item(tag)` for an int tag, without building a Tag: the element as it is held
    (raw until converted), None when absent; a deferred value is read and converted, as
    get_item does."""
    elem = ds._dict.get(tag)
    if isinstance(elem, RawDataElement) and elem.value is None:
        return ds[tag]
    return elem


def converted(ds: Dataset, tag: int, held: DataElement | RawDataElement) -> DataElement:
    """`ds[tag]`, where `held` is what `ds` holds at `tag`: that very element once converted
    (`ds[tag]` would look it up again), else converted by `ds[tag]`."""
    return held if isinstance(held, DataElement) else ds[tag]


def cheap_vr(ds: Dataset, tag: int) -> str:
    """The VR without converting the value where the file or the dictionary says it."""
    vr = element(ds, tag).VR  # type: ignore[union-attr]
    if vr and vr != "UN":
        return str(vr)
    entry = DicomDictionary.get(int(tag)) if vr is None else None
    return str(entry[0]) if entry else vr_of(ds, tag)


def vr_and_element(ds: Dataset, tag: int) -> tuple[str, DataElement | RawDataElement]:
    """`vr_of(ds, tag)`, and the element as `ds` then holds it (converted only where vr_of
    converts it): one lookup for a walk that needs both."""
    elem = element(ds, tag)
    vr = elem.VR  # type: ignore[union-attr]
    if vr is None or vr == "UN":
        return vr_of(ds, tag), element(ds, tag)  # type: ignore[return-value]
    return str(vr), elem  # type: ignore[return-value]


def vr_of(ds: Dataset, tag: int) -> str:
    """An element's VR without converting its value where the raw VR already says it.

    Only elements read with no VR (implicit VR files), or as UN, are converted to learn
    whether they hold a sequence; pixel data is never converted.
    """
    vr = element(ds, tag).VR  # type: ignore[union-attr]
    if vr is None or vr == "UN":
        if tag >> 16 == 0x7FE0:
            return vr or "OB"
        return str(ds[tag].VR)
    return str(vr)
