"""What an element holds, read without converting it where its raw form already says it.

Shared by the identifier collection (`identifiers`), the engine and the verify gate: they
walk every element of every instance, and pydicom converts a raw value on first access.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["cheap_vr", "string_values", "vr_of"]


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


def cheap_vr(ds: Dataset, tag: int) -> str:
    """The VR without converting the value where the file or the dictionary says it."""
    vr = ds.get_item(tag).VR
    if vr and vr != "UN":
        return str(vr)
    entry = DicomDictionary.get(tag) if vr is None else None
    return str(entry[0]) if entry else vr_of(ds, tag)


def vr_of(ds: Dataset, tag: int) -> str:
    """An element's VR without converting its value where the raw VR already says it.

    Only elements read with no VR (implicit VR files), or as UN, are converted to learn
    whether they hold a sequence; pixel data is never converted.
    """
    raw = ds.get_item(tag)
    vr = raw.VR
    if vr is None or vr == "UN":
        if tag >> 16 == 0x7FE0:
            return vr or "OB"
        return str(ds[tag].VR)
    return str(vr)
