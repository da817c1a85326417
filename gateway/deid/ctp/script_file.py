"""Reading a CTP DicomAnonymizer script file (XML) into checked rules.

    <script>
      <p t="SITEID">1234</p>                                   parameter @SITEID
      <e en="T" t="00100020" n="PatientID">@hashptid(@SITEID,PatientID)</e>
      <e en="T" t="0009[GEMS_IDEN_01]04" n="GEIden">@remove()</e>   private, by creator
      <k en="T" t="0018" n="Acquisition group"/>               keep group 0018
      <k en="T" t="safeprivateelements"/>                      keep safe private elements
      <r en="T" t="privategroups"/>                            also unspecifiedelements,
    </script>                                                  overlays, curves

`en="F"` disables an entry, as in CTP. Where CTP silently ignores what it cannot read (an
unknown function written into the element as text, a `t` it cannot parse, a name that is
no element), the reader refuses the file with the line: a script that does not do what its
author believes must not run on patient data. Read leniently (`deid.ctp_lenient`), an
element whose script CTP would write as text is removed instead, with a warning.
"""

from __future__ import annotations

import logging
import re
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path

from gateway.deid.ctp.element_names import is_resolvable, private_spec, public_tag
from gateway.deid.ctp.syntax import FnCall, LenientSyntaxError, ScriptSyntaxError, check_script

log = logging.getLogger(__name__)

REMOVALS = ("privategroups", "unspecifiedelements", "overlays", "curves")

# The arguments of each function that name an element (index, or "all" after the first).
_ELEMENT_ARGS: dict[str, tuple[int, ...]] = {
    "contents": (0,), "value": (0,), "truncate": (0,), "hash": (0,), "hashname": (0,),
    "hashptid": (1,), "hashuid": (1, 2), "hashdate": (0, 1), "modifydate": (0,),
    "dateinterval": (0, 2), "round": (0,), "initials": (0,), "lowercase": (0,),
    "uppercase": (0,), "pathelement": (0,), "integer": (0,), "if": (0,), "encrypt": (0,),
    "decrypt": (0,), "require": (0,),
}  # fmt: skip


# Functions whose value is computed rather than copied from the input (with the outcomes
# that remove or empty, and @if/@select/@always, which only choose or create).
_COMPUTING = frozenset({
    "hash", "hashname", "hashptid", "hashuid", "hashdate", "dateinterval", "integer",
    "encrypt", "date", "time", "param", "if", "select", "always", "remove", "empty", "blank",
})  # fmt: skip


@dataclass(frozen=True)
class ElementRule:
    """One enabled `<e>`: a public tag, or a private (group, creator, offset) spec."""

    tag: int | None
    private: tuple[int, str, int] | None
    name: str
    script: str
    line: int
    calls: tuple[FnCall, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class CtpScript:
    path: Path
    params: dict[str, str]
    rules: tuple[ElementRule, ...]
    keep_groups: frozenset[int]
    keep_safe_private: bool
    removals: frozenset[str]

    @property
    def remove_private(self) -> bool:
        return "privategroups" in self.removals

    @property
    def remove_unspecified(self) -> bool:
        return "unspecifiedelements" in self.removals

    @property
    def remove_overlays(self) -> bool:
        return "overlays" in self.removals

    @property
    def remove_curves(self) -> bool:
        return "curves" in self.removals

    def computes(self, rule: ElementRule) -> bool:
        """True when what the rule writes is computed (hashed, moved, fixed text), never a
        copy of the input: a value it writes that equals an original is then the rule's own
        (a birth date on 1 January under `@modifydate(this,*,1,1)`), not the input's."""
        for call in rule.calls:
            name = call.name
            if name == "modifydate":  # y, m, d: a number sets that part, anything else keeps it
                if not any(re.fullmatch(r"\+?\d+", (self.param(a) or "").strip())
                           for a in call.args[1:4]):  # fmt: skip
                    return False
            elif name == "incrementdate":  # by a fixed number of days, not a lookup
                days = (self.param(call.args[1]) or "").strip() if len(call.args) == 2 else ""
                if not re.fullmatch(r"[+-]?\d+", days) or int(days) == 0:
                    return False
            elif name not in _COMPUTING:
                return False
        return True

    def param(self, name: str | None) -> str | None:
        """CTP getParam: `@NAME` or `$NAME` is the parameter (None if undefined); else itself."""
        if name is None:
            return None
        name = name.strip()
        if name[:1] in ("@", "$"):
            return self.params.get(name[1:])
        return name


class ScriptError(ValueError):
    """A script that cannot be used; `.problems` holds 'file:line: message' lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class _Raw:
    tag: str
    attrs: dict[str, str]
    line: int
    text: list[str] = field(default_factory=list)


def _parse_xml(path: Path, data: bytes) -> tuple[str, list[_Raw]]:
    """The root element's name and its children, each with the line it starts on."""
    parser = xml.parsers.expat.ParserCreate()
    depth = 0
    root = ""
    children: list[_Raw] = []
    current: list[_Raw | None] = [None]

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth, root
        depth += 1
        if depth == 1:
            root = name
        elif depth == 2:
            current[0] = _Raw(name, dict(attrs), parser.CurrentLineNumber)
            children.append(current[0])

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1
        if depth == 1:
            current[0] = None

    def chars(text: str) -> None:
        if current[0] is not None:
            current[0].text.append(text)

    def no_entities(*_args: object) -> None:
        raise ValueError("entity declarations are not allowed in a script")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.EntityDeclHandler = no_entities
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise ScriptError([f"{path}:{exc.lineno}: not well-formed XML ({exc})"]) from exc
    except ValueError as exc:
        raise ScriptError([f"{path}:{parser.CurrentLineNumber}: {exc}"]) from exc
    return root, children


def read_script(path: Path, lenient: bool = False) -> CtpScript:
    """Read and check a script file; raise ScriptError naming every bad line.

    `lenient` reads a script written for CTP's lenient parser: an element whose script CTP
    would write as text (LenientSyntaxError) is removed instead, with a warning naming the
    file, line and element; never written as that text, never kept.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ScriptError([f"{path}: cannot read: {exc.strerror}"]) from exc
    if not data.lstrip().startswith(b"<"):
        raise ScriptError([
            f"{path}:1: not an XML script (CTP's older properties format is not read here; "
            "CTP's script editor saves a script as XML)"
        ])
    root, children = _parse_xml(path, data)
    problems: list[str] = []
    if root != "script":
        problems.append(f"{path}:1: the root element is <{root}>, not <script>")
    params: dict[str, str] = {}
    rules: list[ElementRule] = []
    keep_groups: set[int] = set()
    keep_safe = False
    removals: set[str] = set()
    for raw in children:
        where = f"{path}:{raw.line}"
        # CTP (DAScript) enables an entry only when en is exactly "T"; no en means disabled.
        enabled = raw.attrs.get("en", "") == "T"
        t = raw.attrs.get("t", "").strip()
        if raw.tag == "p":
            params[t] = "".join(raw.text)  # CTP keeps a parameter's text untrimmed
        elif raw.tag == "e":
            rule = _element_rule(raw, t, where, problems, lenient) if enabled else None
            if rule is not None:
                rules.append(rule)
        elif raw.tag == "k":
            if t.startswith("safe"):
                keep_safe = keep_safe or enabled
            else:
                try:
                    group = int(t, 16)
                except ValueError:
                    problems.append(f"{where}: <k t={t!r}>: not a group number (hex) or "
                                    "'safeprivateelements'")  # fmt: skip
                    continue
                if enabled:
                    keep_groups.add(group)
        elif raw.tag == "r":
            if t not in REMOVALS:
                problems.append(f"{where}: <r t={t!r}>: unknown removal "
                                f"(one of: {', '.join(REMOVALS)})")  # fmt: skip
            elif enabled:
                removals.add(t)
        else:
            problems.append(f"{where}: <{raw.tag}>: unknown entry (p, e, k or r)")
    private_names = {r.name for r in rules if r.private is not None and r.name}
    private_names |= {r.name for r in rules if r.tag is not None and r.tag >> 16 & 1 and r.name}
    # CTP keys an element script on its tag and name: a later entry with both the same
    # replaces the earlier one (as there); the same tag under another name would run in an
    # order CTP leaves to a hash table, so it is refused.
    last: dict[tuple[object, str], ElementRule] = {}
    for rule in rules:
        last[(rule.tag if rule.tag is not None else rule.private, rule.name)] = rule
    rules = [rule for rule in rules if last[(rule.tag if rule.tag is not None else rule.private,
                                             rule.name)] is rule]  # fmt: skip
    seen: dict[object, int] = {}
    for rule in rules:
        key = rule.tag if rule.tag is not None else rule.private
        if key in seen:
            problems.append(
                f"{path}:{rule.line}: element {rule.name or key} is also scripted on line "
                f"{seen[key]} under another name; CTP would use either one"
            )
        seen[key] = rule.line
        for call in rule.calls:
            for index in _element_args(call):
                if index < len(call.args):
                    for name in call.args[index].split("|") if call.name == "lookup" else [
                        call.args[index]
                    ]:
                        if not is_resolvable(name, private_names):
                            problems.append(
                                f"{path}:{rule.line}: @{call.name}(): {name.strip()!r} "
                                "is not an element name"
                            )
    problems += _appended_script_cycles(path, rules)
    if problems:
        raise ScriptError(problems)
    return CtpScript(
        path=path,
        params=params,
        rules=tuple(rules),
        keep_groups=frozenset(keep_groups),
        keep_safe_private=keep_safe,
        removals=frozenset(removals),
    )


def _appended_script_cycles(path: Path, rules: list[ElementRule]) -> list[str]:
    """@hashuid(root,uid,OTHER) runs OTHER's script; a loop of those never ends in CTP."""
    by_tag = {r.tag: r for r in rules if r.tag is not None}
    edges = {
        tag: {public_tag(c.args[2]) for c in r.calls if c.name == "hashuid" and len(c.args) > 2}
        for tag, r in by_tag.items()
    }
    problems = []
    for start, rule in by_tag.items():
        stack, seen = list(edges[start]), set()
        while stack:
            tag = stack.pop()
            if tag == start:
                problems.append(f"{path}:{rule.line}: @hashuid() appends a script that "
                                "leads back to this element")  # fmt: skip
                break
            if tag in seen or tag not in edges:
                continue
            seen.add(tag)
            stack.extend(edges[tag])
    return problems


def _element_args(call: FnCall) -> tuple[int, ...]:
    if call.name == "lookup":
        return (0,)
    if call.name == "incrementdate":
        return (0, 1) if len(call.args) == 3 else (0,)
    if call.name == "if" and len(call.args) > 0 and call.args[0].strip() == "":
        return ()
    return _ELEMENT_ARGS.get(call.name, ())


def _element_rule(
    raw: _Raw, t: str, where: str, problems: list[str], lenient: bool
) -> ElementRule | None:
    script = "".join(raw.text).strip()
    name = raw.attrs.get("n", "").strip()
    tag: int | None = None
    private: tuple[int, str, int] | None = None
    if len(t) == 8 and all(c in "0123456789abcdefABCDEF" for c in t):
        tag = int(t, 16)
    else:
        spec = private_spec(t)
        if spec is None or spec[2] is None:
            known = public_tag(t)
            hint = f"; write t=\"{known:08x}\" (CTP ignores t={t!r})" if known else ""
            problems.append(
                f"{where}: <e t={t!r}>: not a tag (8 hex digits) or a private element "
                f"(gggg[creator]ee){hint}"
            )
            return None
        private = (spec[0], spec[1], spec[2])
    try:
        calls = tuple(check_script(script))
    except LenientSyntaxError as exc:
        if not lenient:
            problems.append(f"{where}: {name or t}: {exc}")
            return None
        log.warning("%s: %s: %s; read leniently, the element is removed", where, name or t, exc)
        script = "@remove()"
        calls = tuple(check_script(script))
    except ScriptSyntaxError as exc:
        problems.append(f"{where}: {name or t}: {exc}")
        return None
    return ElementRule(tag, private, name, script, raw.line, calls)
