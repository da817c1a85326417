"""Running a CTP element script: the text it evaluates to, as CTP computes it.

`make_replacement(script, ctx, tag)` walks the script like CTP's DICOMAnonymizer: text is
copied, `\\` escapes, each `@function(...)` is replaced by its result. The outcomes
`@keep() @remove() @empty() @blank(n)` stay in the text; the engine acts on them. Values are
read from the input (the dataset before any change), as in CTP, so a script sees the
original of every element whatever order the elements are processed in.

Where CTP's function fails it often returns its own argument list as the value (e.g.
"(this,@MISSING)"), empties a date, or quarantines; each function below keeps CTP's choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gateway.deid.ctp.element_names import private_spec, private_tag, public_tag
from gateway.deid.ctp.lookup_table import IntegerTable
from gateway.deid.ctp.script_file import CtpScript
from gateway.deid.ctp.syntax import ESCAPE, FUNCTION, FnCall, parse_call

REMOVE, KEEP, EMPTY = "@remove()", "@keep()", "@empty()"
_TEXT_VRS = frozenset({"LT", "ST", "UT"})
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"})


class CtpQuarantine(Exception):
    """The script asked for quarantine, or a function failed the way CTP quarantines."""


class CtpSkip(Exception):
    """The script called @skip(): CTP would drop the object unsent."""


@dataclass
class Context:
    """The datasets a script reads (input) and writes (output), with the script's tables."""

    script: CtpScript
    lookup_table: dict[str, str] | None
    integers: IntegerTable
    in_ds: Dataset
    out_ds: Dataset
    in_meta: Dataset | None
    # name -> handler of every script function (script_functions.FUNCTIONS): passed in by the
    # caller, so that this evaluator stays below the functions that call back into it.
    functions: Mapping[str, Callable[[FnCall, Context, int], str | None]]
    scripts: dict[int, str] = field(default_factory=dict)
    private_names: dict[str, int] = field(default_factory=dict)
    stack: list[tuple[Dataset, Dataset]] = field(default_factory=list)
    # Tags whose script computes its value (CtpScript.computes), and the elements those
    # scripts wrote: the verify gate takes an original there for the script's own value.
    computed: set[int] = field(default_factory=set)
    produced: list[object] = field(default_factory=list)

    def push(self, in_ds: Dataset, out_ds: Dataset) -> None:
        self.stack.append((self.in_ds, self.out_ds))
        self.in_ds, self.out_ds = in_ds, out_ds

    def pop(self) -> None:
        if self.stack:
            self.in_ds, self.out_ds = self.stack.pop()

    def is_root(self) -> bool:
        return not self.stack

    def root(self) -> Dataset:
        return self.stack[0][0] if self.stack else self.in_ds

    def param(self, name: str | None) -> str | None:
        return self.script.param(name)

    def element_tag(self, name: str | None, ds: Dataset | None = None) -> int:
        """getElementTag: public name or hex, then a script-named private, then gggg[x]ee."""
        if name is None:
            return 0
        tag = public_tag(name)
        if tag:
            return tag
        tag = self.private_names.get(name.strip(), 0)
        if tag:
            return tag
        spec = private_spec(name)
        return private_tag(self.in_ds if ds is None else ds, spec) if spec else 0

    def contents_tag(self, tag: int) -> str | None:
        """The value of an element of the current input (None: absent)."""
        source = self.in_meta if (tag & 0x7FFFFFFF) < 0x80000 else self.in_ds
        if source is None or tag not in source:
            return None
        return element_text(source, tag)

    def contents_null(self, name: str, this_tag: int, ds: Dataset | None = None) -> str | None:
        """A named element's value (`this`, `root:`, `A::B` paths); None when absent."""
        if name == "this":
            return self.contents_tag(this_tag)
        ds = self.in_ds if ds is None else ds
        spec = name.strip()
        if not spec:
            return None
        if spec.startswith("root:"):
            spec = spec[5:].strip()
            ds = self.root()
        parts = spec.split("::")
        tag = 0
        for index, part in enumerate(parts):
            tag = self.element_tag(part, ds)
            if tag == 0:
                return None
            meta = (tag & 0x7FFFFFFF) < 0x80000 and self.in_meta is not None
            source = self.in_meta if meta else ds
            if source is None or tag not in source:
                return None
            if index < len(parts) - 1:
                if vr_at(source, tag) != "SQ" or not source[tag].value:
                    return None
                ds = source[tag].value[0]
            else:
                return element_text(source, tag)
        return None

    def contents(self, name: str, this_tag: int, ds: Dataset | None = None) -> str:
        value = self.contents_null(name, this_tag, ds)
        return "" if value is None else value


def vr_at(ds: Dataset, tag: int) -> str:
    from gateway.base.element_values import vr_of

    return vr_of(ds, tag)


def element_text(ds: Dataset, tag: int) -> str | None:
    """An element's value as dcm4che gives it: values joined by `\\`, padding trimmed."""
    vr = vr_at(ds, tag)
    value = ds[tag].value
    if vr in _BINARY_VRS:
        if vr == "UN" and isinstance(value, bytes) and tag >> 16 & 1:
            return value.decode("latin-1").rstrip("\x00 ")
        return None
    if value is None or value == "":
        return ""
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    texts = [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in values]
    if vr in _TEXT_VRS:
        trim = _rstrip_padding  # dcm4che keeps leading spaces of texts
    elif vr == "PN":
        trim = _rstrip_name  # and of names, whose empty trailing components it drops
    else:
        trim = java_trim
    return "\\".join(trim(t) for t in texts)


def _rstrip_padding(text: str) -> str:
    return text.rstrip(" \x00")


def _rstrip_name(text: str) -> str:
    return text.rstrip(" \x00^=")


_JAVA_SPACE = "".join(chr(i) for i in range(33))


def java_trim(text: str) -> str:
    """String.trim: every character up to U+0020 off both ends."""
    return text.strip(_JAVA_SPACE)


def java_null(value: str | None) -> str:
    """Java's `out += value`: a null becomes the text "null"."""
    return "null" if value is None else value


def make_replacement(cmd: str | None, ctx: Context, this_tag: int) -> str:
    """The text a script evaluates to for the element `this_tag`."""
    if cmd is None:
        return ""
    out: list[str] = []
    i = 0
    escape = False
    while i < len(cmd):
        c = cmd[i]
        i += 1
        if escape:
            out.append(c)
            escape = False
        elif c == ESCAPE:
            escape = True
        elif c == FUNCTION:
            call = parse_call(cmd[i:])
            if call.length == -1:
                break
            i += call.length
            handler = ctx.functions.get(call.name)
            if handler is None:
                out.append(FUNCTION + call.call_text())  # outcomes pass through as text
            else:
                out.append(java_null(handler(call, ctx, this_tag)))
        else:
            out.append(c)
    return "".join(out)
