"""A profile's per-attribute overrides: what each selector means and how it compiles.

An override names attributes one of five ways, and gives them an action::

    StudyDescription                      keyword (wherever it occurs, as Table E.1-1 does)
    (0008,1030) or 00081030               tag
    (0018,xxxx), (50xx,xxxx)              group pattern (x: any hex digit); a pattern whose
                                          group ends in x matches public (even) groups only,
                                          one with an odd last digit matches private groups
    (0029,"SIEMENS CSA HEADER",10)        private attribute: group, private creator, element
                                          byte (PS3.5 7.8.1: the block is found at run time)
    ReferencedStudySequence/*/ReferencedSOPInstanceUID
                                          a path inside sequences; `*` is any item

Actions: X Z D K C U (PS3.15 E.1.1), `{replace: CLASS}` (a fake value, see fakes.py),
`{replace: "fixed text"}`, `{clean: {allow: [...], fallback: remove|empty|"TEXT"}}`,
`{clean: {recognizer: true|false}}` (C with or without the free-text recognizer, whatever
the site's default), `{clean: {allow: [...], recognizer: true}}` (allowed values kept as
they are, any other cleaned by the recognizer instead of the fallback).

Everything compiles into the engine's tag -> action map (exact tags, and the table tags a
group pattern covers), a list of group patterns consulted only for tags outside the map, a
private-creator map, and a path table consulted only inside sequences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from gateway.deid import fakes

# Our own action code: replace with the keyed pseudonym (see pseudonyms.Pseudonyms.patient_id).
# The standard says Z for Patient's Name and Z/D for Patient ID; a research archive needs a
# stable, non-empty subject identifier, so both get the same site-scoped pseudonym: a D whose
# dummy value is deterministic and carries nothing of the original.
PSEUDONYM = "P"

PLAIN_ACTIONS = ("X", "Z", "D", "K", "C", "U")

# The reviewer's "retains more" order (X < Z < D = U < C < K); P, the patient pseudonym, is a D.
RETAIN_RANK = {"X": 0, "Z": 1, "D": 2, "U": 2, "P": 2, "C": 3, "K": 4}


def code_rank(code: str) -> int:
    """How much a code retains; a combined code (X/Z/D) retains at most its last choice."""
    return max(RETAIN_RANK[c.rstrip("*")] for c in code.split("/"))
FALLBACKS = ("remove", "empty")

_TAG = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$|^([0-9A-Fa-f]{8})$")
_GROUP_PATTERN = re.compile(r"^\(([0-9A-Fa-fxX]{4}),([0-9A-Fa-fxX]{4})\)$")
_PRIVATE = re.compile(r'^\(([0-9A-Fa-f]{4}),\s*"([^"]+)"\s*,\s*([0-9A-Fa-f]{2})\)$')
_KEYWORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")

# Fixed-text checks per VR (PS3.5 6.2): length, and the character set where it is narrow.
_FORMAT = {
    "DA": re.compile(r"^\d{8}$"),
    "TM": re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$"),
    "DT": re.compile(r"^\d{4}(\d{2}){0,5}(\.\d{1,6})?([+-]\d{4})?$"),
    "UI": re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$"),
    "CS": re.compile(r"^[A-Z0-9 _]*$"),
    "IS": re.compile(r"^[+-]?\d{1,11}$"),
    "DS": re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"),
    "AS": re.compile(r"^\d{3}[DWMY]$"),
}
_TEXT_VRS = frozenset({"AE", "CS", "SH", "LO", "PN", "ST", "LT", "UC", "UT"})


@dataclass(frozen=True)
class Rule:
    """An override action with a parameter; `code` is its reviewer code (D or C)."""

    code: str
    kind: str  # "fake", "text" or "allow"
    fake_class: str = ""
    text: str = ""
    allow_exact: frozenset[str] = frozenset()
    allow_patterns: tuple[re.Pattern[str], ...] = ()
    fallback: str = "remove"  # "remove", "empty", or "text" (then `text` is the fallback)
    describe: str = ""
    # Clean rules: None (not said: the allow list and its fallback), True (values the allow
    # list does not name are cleaned with the recognizer), False (cleaned without it).
    recognizer: bool | None = None

    def allows(self, value: str) -> bool:
        value = value.strip()
        return value in self.allow_exact or any(p.fullmatch(value) for p in self.allow_patterns)


Action = str | Rule


@dataclass(frozen=True)
class GroupRule:
    """A group pattern: a tag matches when `tag & mask == value`."""

    text: str
    mask: int
    value: int
    action: Action
    private: bool

    def matches(self, tag: int) -> bool:
        return tag & self.mask == self.value


@dataclass
class Overrides:
    """A profile's overrides, compiled; `problems` lists what could not be compiled."""

    tags: dict[int, Action] = field(default_factory=dict)
    groups: list[GroupRule] = field(default_factory=list)
    private: dict[tuple[str, int, int], Action] = field(default_factory=dict)
    paths: dict[tuple[int, ...], dict[int, Action]] = field(default_factory=dict)
    path_texts: list[tuple[str, Action]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def action_code(action: Action) -> str:
    """The reviewer's code for an action (a Rule: D for replace, C for an allow list)."""
    return action if isinstance(action, str) else action.code


def compile_overrides(raw: object, where: str, protected: frozenset[int]) -> Overrides:
    """Compile the `overrides` mapping; `protected` tags may not be overridden at all."""
    out = Overrides()
    if raw is None:
        return out
    if not isinstance(raw, dict):
        out.problems.append(f"{where}: 'overrides': must be a mapping of attribute: action")
        return out
    for selector, raw_action in raw.items():
        key = f"{where}: 'overrides.{selector}"  # closed by each message: key + "': ..."
        text = str(selector).strip()
        if "/" in text:
            _add_path(out, text, raw_action, key, protected)
            continue
        private = _PRIVATE.match(text)
        if private:
            group, creator, element = private.groups()
            if not int(group, 16) & 1:
                out.problems.append(f"{key}': group {group} is not a private (odd) group")
                continue
            action = parse_action(raw_action, None, key, out.problems)
            if action is not None:
                out.private[(creator.strip(), int(group, 16), int(element, 16))] = action
            continue
        pattern = _GROUP_PATTERN.match(text)
        if pattern and "x" in text.lower():
            _add_group(out, pattern.group(1), pattern.group(2), raw_action, key)
            continue
        tag = parse_tag(text, key, out.problems)
        if tag is None:
            continue
        if tag in protected:
            out.problems.append(
                f"{key}': Patient's Name and Patient ID always get the site pseudonym"
            )
            continue
        if tag >> 16 in (0x0000, 0x0002) or tag & 0xFFFF == 0:
            out.problems.append(f"{key}': file meta, command and group length elements are "
                                "rebuilt by the gateway and cannot be overridden")
            continue
        if tag >> 16 & 1:
            out.problems.append(f"{key}': a private attribute is named by its creator, e.g. "
                                '(0029,"SIEMENS CSA HEADER",10)')
            continue
        action = parse_action(raw_action, _vr(tag), key, out.problems)
        if action is not None:
            out.tags[tag] = action
    return out


def parse_tag(text: str, key: str, problems: list[str]) -> int | None:
    """A keyword or a tag text as an int; a problem line when it is neither."""
    match = _TAG.match(text)
    if match:
        return int("".join(g for g in match.groups() if g), 16)
    if _KEYWORD.match(text):
        tag = tag_for_keyword(text)
        if tag is not None:
            return int(tag)
        problems.append(f"{key}': {text!r} is not a DICOM keyword")
        return None
    problems.append(
        f"{key}': not an attribute (a keyword, (gggg,eeee), a group pattern such as "
        '(0019,xxxx), (gggg,"CREATOR",ee), or a path A/*/B)'
    )
    return None


def _vr(tag: int) -> str | None:
    """The dictionary VR, or None when unknown or ambiguous (`US or SS`)."""
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return None if " " in vr else vr


def _add_group(out: Overrides, group: str, element: str, raw_action: object, key: str) -> None:
    digits = (group + element).upper()
    mask = int("".join("0" if c == "X" else "F" for c in digits), 16)
    value = int("".join("0" if c == "X" else c for c in digits), 16)
    last = group[-1].upper()
    private = last != "X" and int(last, 16) & 1 == 1
    if any(g & mask >> 16 == value >> 16 for g in (0x0000, 0x0002)):
        out.problems.append(f"{key}': groups 0000-0002 are rebuilt by the gateway")
        return
    action = parse_action(raw_action, None, key, out.problems)
    if action is not None:
        out.groups.append(GroupRule(f"({group},{element})", mask, value, action, private))


def _add_path(
    out: Overrides, text: str, raw_action: object, key: str, protected: frozenset[int]
) -> None:
    parts = [p.strip() for p in text.split("/")]
    if len(parts) < 3 or len(parts) % 2 == 0 or any(p != "*" for p in parts[1::2]):
        out.problems.append(f"{key}': a path is Sequence/*/Attribute (any depth); `*` is any "
                            "item")
        return
    tags = [parse_tag(p, key, out.problems) for p in parts[0::2]]
    if any(t is None for t in tags):
        return
    ints = [int(t) for t in tags if t is not None]
    for name, tag in zip(parts[0::2][:-1], ints[:-1], strict=True):
        if _vr(tag) != "SQ":
            out.problems.append(f"{key}': {name} is not a sequence")
            return
    leaf = ints[-1]
    if leaf in protected or leaf >> 16 & 1:
        out.problems.append(f"{key}': the pseudonym attributes and private attributes cannot "
                            "be overridden by path")
        return
    action = parse_action(raw_action, _vr(leaf), key, out.problems)
    if action is not None:
        out.paths.setdefault(tuple(ints[:-1]), {})[leaf] = action
        out.path_texts.append((text, action))


def parse_action(raw: object, vr: str | None, key: str, problems: list[str]) -> Action | None:
    """One override action, checked against the attribute's VR where it is known."""
    if isinstance(raw, str):
        code = raw.strip().upper()
        if code not in PLAIN_ACTIONS:
            problems.append(f"{key}': {raw!r} is not an action (one of {' '.join(PLAIN_ACTIONS)},"
                            " {replace: ...}, {clean: {allow: [...]}})")
            return None
        if code == "U" and vr is not None and vr not in ("UI", "SQ"):
            problems.append(f"{key}': U (remap UIDs) applies to UI attributes, not {vr}")
            return None
        return code
    if not isinstance(raw, dict) or len(raw) != 1:
        problems.append(f"{key}': an action is a code or one of {{replace: ...}}, {{clean: ...}}")
        return None
    (verb, arg), = raw.items()
    if verb == "replace":
        return _replace(arg, vr, key, problems)
    if verb == "clean":
        return _clean(arg, vr, key, problems)
    problems.append(f"{key}': {verb!r} is not an action (replace or clean)")
    return None


def _replace(arg: object, vr: str | None, key: str, problems: list[str]) -> Rule | None:
    if not isinstance(arg, str | int | float) or isinstance(arg, bool):
        problems.append(f"{key}.replace': a fake-value class ({', '.join(fakes.FAKE_CLASSES)}) "
                        "or a fixed text")
        return None
    text = str(arg)
    if text in fakes.FAKE_CLASSES:
        if vr is not None and not fakes.compatible(text, vr):
            fits = sorted(fakes.COMPATIBLE_VRS[text])
            problems.append(f"{key}.replace': {text} cannot fill a {vr} value (fits "
                            f"{', '.join(fits)})")
            return None
        return Rule("D", "fake", fake_class=text, describe=f"replace: {text}")
    problem = check_text(text, vr)
    if problem:
        problems.append(f"{key}.replace': {problem}")
        return None
    return Rule("D", "text", text=text, describe=f"replace: {text!r}")


def check_text(text: str, vr: str | None) -> str:
    """Why a fixed text is not a valid value of `vr` ('' when it is)."""
    if vr == "SQ":
        return "a sequence cannot take a text value"
    if vr is None:
        return "" if len(text) <= 64 and "\\" not in text else "at most 64 characters, no '\\'"
    limit = fakes.MAX_LENGTH.get(vr, 64 if vr in _TEXT_VRS else None)
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "US", "SS", "UL", "SL", "FL", "FD",
              "AT", "UV", "SV"):
        return f"a {vr} value cannot be text"
    if limit is not None and len(text) > limit:
        return f"{len(text)} characters, {vr} allows {limit}"
    pattern = _FORMAT.get(vr)
    if pattern is not None and not pattern.match(text):
        return f"{text!r} is not a valid {vr} value"
    return ""


def _clean(arg: object, vr: str | None, key: str, problems: list[str]) -> Rule | None:
    at = f"{key}.clean"
    if not isinstance(arg, dict) or ("allow" not in arg and "recognizer" not in arg):
        problems.append(f"{at}': needs allow: [exact values or {{regex: ...}}] or "
                        "recognizer: true|false")
        return None
    unknown = [k for k in arg if k not in ("allow", "fallback", "recognizer")]
    for name in unknown:
        problems.append(f"{at}.{name}': unknown key (allow, fallback, recognizer)")
    if vr is not None and vr not in _TEXT_VRS:
        problems.append(f"{at}': an allow list applies to text attributes, not {vr}")
        return None
    recognizer = arg.get("recognizer")
    if recognizer is not None and not isinstance(recognizer, bool):
        problems.append(f"{at}.recognizer': true or false")
        return None
    if "allow" not in arg:
        if unknown:
            return None
        if "fallback" in arg:
            problems.append(f"{at}.fallback': a fallback needs an allow list")
            return None
        shown = "with" if recognizer else "without"
        return Rule("C", "allow", recognizer=recognizer,
                    describe=f"clean {shown} the recognizer")
    allow = arg["allow"]
    if not isinstance(allow, list) or not allow:
        problems.append(f"{at}.allow': a non-empty list")
        return None
    exact: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for index, entry in enumerate(allow):
        if isinstance(entry, dict) and set(entry) == {"regex"}:
            try:
                patterns.append(re.compile(str(entry["regex"])))
            except re.error as exc:
                problems.append(f"{at}.allow.{index}': not a regular expression: {exc}")
        elif isinstance(entry, str | int) and not isinstance(entry, bool):
            exact.add(str(entry).strip())
        else:
            problems.append(f"{at}.allow.{index}': an exact value or {{regex: ...}}")
    fallback = arg.get("fallback", "remove")
    text = ""
    if not isinstance(fallback, str):
        problems.append(f"{at}.fallback': remove, empty, or a text")
        return None
    if fallback not in FALLBACKS:
        problem = check_text(fallback, vr)
        if problem:
            problems.append(f"{at}.fallback': {problem}")
            return None
        text, fallback = fallback, "text"
    if unknown or len(exact) + len(patterns) < len(allow):
        return None
    shown = "remove" if fallback == "remove" else "empty" if fallback == "empty" else repr(text)
    if recognizer is not None:
        shown = "cleaned with the recognizer" if recognizer else "cleaned"
    return Rule("C", "allow", text=text, allow_exact=frozenset(exact),
                allow_patterns=tuple(patterns), fallback=fallback,
                describe=f"clean: {len(allow)} allowed, else {shown}", recognizer=recognizer)


def describe(action: Action) -> str:
    return action if isinstance(action, str) else action.describe


def tag_text(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    return keyword or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
