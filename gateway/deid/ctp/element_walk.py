"""The engine of a CTP script profile: CTP's processing order over a pydicom dataset.

1. Elements the script names with `@always()` that the dataset lacks are created.
2. The dataset is walked once, top level only (a sequence's items are walked only where its
   script says `@process()`), and each element is removed by a global rule, left alone, or
   set to what its script evaluates to. Values are always read from the unchanged input.
3. The global rules (`<r>` privategroups, unspecifiedelements, overlays, curves) never touch
   SOP Class UID, SOP Instance UID, Study Instance UID, groups 0002, 0028 and 7FE0, kept
   groups (`<k>`), nor, with `safeprivateelements`, the safe private attributes.

Two places where CTP keeps what the script says to drop are made strict here, because
compatibility never overrides safety: `remove.curves` removes curves also when
`unspecifiedelements` is off (CTP then keeps them), and `@empty()` on a sequence empties
it (CTP leaves the items). A value CTP cannot write (text into a binary or numeric element)
makes CTP keep the original element and carry on; here it is a DeidError (quarantine).
"""

from __future__ import annotations

import copy

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gateway.base.element_values import vr_of
from gateway.deid.ctp.element_names import private_tag
from gateway.deid.ctp.evaluate import KEEP, REMOVE, Context, java_trim, make_replacement
from gateway.deid.standard import safe_private_attributes

PROTECTED_TAGS = frozenset({0x00080016, 0x00080018, 0x0020000D})
PROTECTED_GROUPS = frozenset({0x0002, 0x0028, 0x7FE0})
DEID_METHOD_CODE_SEQ = 0x00120064
_BLANKS = 55  # CTP's longest @blank(n)
_INT_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "AT"})
_FLOAT_VRS = frozenset({"FL", "FD"})
_BYTES_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
     "UR", "UT"}
)  # fmt: skip
_CODE_MEANINGS = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113102": "Clean Recognizable Visual Features Option",
    "113103": "Clean Graphics Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs",
    "113111": "Retain Safe Private Option",
    "113112": "Retain Institution Identity Option",
}


class WriteError(Exception):
    """A script value that does not fit the element (the message names only the tag)."""


def tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def build_tables(ctx: Context) -> None:
    """The tag of every scripted element in this dataset (private blocks found in it)."""
    root = ctx.in_ds
    for rule in ctx.script.rules:
        tag = rule.tag if rule.tag is not None else private_tag(root, rule.private)  # type: ignore[arg-type]
        if not tag:
            continue
        ctx.scripts[tag] = rule.script
        if ctx.script.computes(rule):
            ctx.computed.add(tag)
        if tag >> 16 & 1 and rule.name:
            ctx.private_names[rule.name] = tag


def run_script(ctx: Context) -> None:
    """CTP's two steps: insert the @always() elements, then walk the dataset."""
    insert_elements(ctx)
    process_elements(ctx)


def _dictionary_vr(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "SH"
    return vr.split(" or ")[0] if vr else "SH"


def insert_elements(ctx: Context) -> None:
    out = ctx.out_ds
    for tag, raw_script in list(ctx.scripts.items()):
        if tag in out:
            continue
        script = raw_script.strip()
        vr = _dictionary_vr(tag)
        if script.startswith("@always()") and vr != "SQ":
            value = make_replacement(script, ctx, tag)
            if value in (KEEP, REMOVE):
                continue
            put(ctx, tag, vr, "" if value.startswith("@blank(") or value == "@empty()" else value)
        elif script.startswith("@always()@require()") and vr == "SQ":
            put(ctx, tag, vr, "")
        elif tag == DEID_METHOD_CODE_SEQ:
            _update_method_codes(script, ctx)


def _is_safe_private(ds: Dataset, tag: int) -> bool:
    group = tag >> 16
    creator = ds.get(group << 16 | (tag >> 8 & 0xFF))
    if creator is None:
        return False
    owner = creator.value.decode("latin-1") if isinstance(creator.value, bytes) else creator.value
    key = (str(owner or "").strip(), group, tag & 0xFF)
    return key in safe_private_attributes()


def process_elements(ctx: Context) -> None:
    """One level of the walk (CTP processElements); @process() recurses into items."""
    script_of = ctx.scripts
    s = ctx.script
    for key in list(ctx.in_ds.keys()):
        tag = int(key)
        group = tag >> 16
        overlay = group & 0xFF00 == 0x6000
        curve = group & 0xFF00 == 0x5000
        private = bool(group & 1)
        creator_block = private and tag & 0xFF00 == 0
        safe = private and not creator_block and _is_safe_private(ctx.in_ds, tag)
        script = script_of.get(tag)
        keep = (
            group in s.keep_groups
            or (creator_block and s.keep_safe_private)
            or (safe and s.keep_safe_private)
            or tag in PROTECTED_TAGS
            or group in PROTECTED_GROUPS
            or (overlay and not s.remove_overlays and not (private and s.remove_private))
            or (curve and not s.remove_curves and not (private and s.remove_private))
        )
        unscripted = script is None and not keep
        removed = (
            (s.remove_private and private and unscripted)
            or (s.remove_unspecified and unscripted)
            or (s.remove_overlays and overlay)
        )
        if removed:
            _remove(ctx.out_ds, tag)
        elif s.remove_curves and curve and script is None and group not in s.keep_groups:
            _remove(ctx.out_ds, tag)  # stricter than CTP, see the module text
        elif script is not None:
            if tag == DEID_METHOD_CODE_SEQ:
                _update_method_codes(script, ctx)
            else:
                apply_value(ctx, tag, make_replacement(script, ctx, tag))


def apply_value(ctx: Context, tag: int, raw: str) -> None:
    """Act on what a script evaluated to: remove, keep, blank, empty, or set."""
    value = java_trim(raw)
    if REMOVE in value:
        _remove(ctx.out_ds, tag)
        return
    if value == KEEP:
        return
    vr = vr_of(ctx.in_ds, tag) if tag in ctx.in_ds else _dictionary_vr(tag)
    if value.startswith("@blank("):
        rest = value[len("@blank(") :]
        n = 0
        if ")" in rest:
            digits = "".join(c for c in rest[: rest.index(")")] if c.isdigit())
            n = int("0" + digits)
        put(ctx, tag, vr, " " * min(n, _BLANKS))
        return
    put(ctx, tag, vr, "" if value == "@empty()" else value)


def _remove(ds: Dataset, tag: int) -> None:
    if tag in ds:
        del ds[tag]


def put(ctx: Context, tag: int, vr: str, value: str) -> None:
    """CTP putXX: private data as LO (LT when long), empty values, multi-values split on `\\`."""
    _put(ctx, tag, vr, value)
    if tag in ctx.computed and tag in ctx.out_ds:
        ctx.produced.append(ctx.out_ds.get_item(tag))


def _put(ctx: Context, tag: int, vr: str, value: str) -> None:
    out = ctx.out_ds
    if tag >> 16 & 1:
        if tag & 0xFFFF < 0x100:
            out[tag] = DataElement(tag, "LO", value)
            return
        # CTP writes a private element with its dictionary VR when the value fits, else as
        # LO (LT when long); the VR the element already has stands in for the dictionary.
        fallback = "LO" if len(value) <= 64 else "LT"
        old = out.get(tag)
        old_vr = vr_of(out, tag) if old is not None else ""
        if old_vr and old_vr not in _BYTES_VRS and old_vr != "SQ":
            try:
                _put_public(out, tag, old_vr, value)
                return
            except WriteError:
                pass
        out[tag] = DataElement(tag, fallback, value)
        return
    _put_public(out, tag, vr, value)


def _put_public(out: Dataset, tag: int, vr: str, value: str) -> None:
    if value == "":
        if vr == "SQ":
            out[tag] = DataElement(tag, "SQ", Sequence())
        else:
            empty = None if vr in _BYTES_VRS | _INT_VRS | _FLOAT_VRS else ""
            out[tag] = DataElement(tag, vr, empty)
        return
    parts = value.split("\\")
    if vr in _INT_VRS | _FLOAT_VRS:
        try:
            numbers = [int(p) if vr in _INT_VRS else float(p) for p in parts]
        except ValueError:
            raise WriteError(f"the script's value for {tag_text(tag)} is not a number") from None
        out[tag] = DataElement(tag, vr, numbers if len(numbers) > 1 else numbers[0])
        return
    if vr in _BYTES_VRS or vr == "SQ":
        raise WriteError(f"the script's value for {tag_text(tag)} is text, the element is {vr}")
    try:
        out[tag] = DataElement(tag, vr, parts if len(parts) > 1 else parts[0])
    except (ValueError, OverflowError):  # DS/IS text that is no number
        raise WriteError(f"the script's value for {tag_text(tag)} does not fit {vr}") from None


def _update_method_codes(script: str, ctx: Context) -> None:
    """CTP's special case for De-identification Method Code Sequence: `113100/113101/...`."""
    out = ctx.out_ds
    tag = DEID_METHOD_CODE_SEQ
    if not script.strip() or script == KEEP:
        return
    if script == REMOVE:
        _remove(out, tag)
        return
    value = java_trim(make_replacement(script, ctx, tag))
    if tag not in out:
        out[tag] = DataElement(tag, "SQ", Sequence())
    for code in value.split("/"):
        code = code.strip()
        if code.lower() == "reset":
            out[tag] = DataElement(tag, "SQ", Sequence())
            continue
        meaning = _CODE_MEANINGS.get(code)
        item = Dataset()
        item.CodingSchemeDesignator = "DCM" if meaning else "UNKNOWN"
        item.CodeValue = code
        item.CodeMeaning = meaning or "UNKNOWN"
        out[tag].value.append(item)


def snapshot(ds: Dataset) -> Dataset:
    """The unchanged input the script reads; pixel data is shared, never copied."""
    pixels = {int(t): ds.get_item(t) for t in list(ds.keys()) if int(t) >> 16 == 0x7FE0}
    for t in pixels:
        del ds[t]
    try:
        copied = copy.deepcopy(ds)
    finally:
        for t, elem in pixels.items():
            ds[t] = elem
    for t, elem in pixels.items():
        copied[t] = elem
    return copied
