"""A de-identification profile: the Basic Profile, the chosen options, compiled once.

Compiling turns Table E.1-1 plus the options into a plain `tag -> action code` map, so that
the engine walks each dataset once and does one dict lookup per element.

Site overrides (see `overrides.py`) compile into the same map, plus group patterns consulted
only for tags outside it and a path table consulted only inside sequences. Profile files are
read by `profile_file.py`; RSNA CTP scripts by `ctp/profile.py`. Both give an object with the
`DeidProfile` interface below, which the engine, the verify gate and the reviewer use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydicom.datadict import tag_for_keyword

from gateway.base.identifiers import PATIENT_IDENTITY_KEYWORDS
from gateway.deid.engine import Engine
from gateway.deid.overrides import PSEUDONYM, Action, GroupRule, Rule, action_code, code_rank
from gateway.deid.standard import (
    CURVE_PATTERN,
    OVERLAY_COMMENTS_PATTERN,
    OVERLAY_DATA_PATTERN,
    PRIVATE_PATTERN,
    TABLE_E1_1_EDITION,
    Option,
    TableRow,
    safe_private_attributes,
    table_e1_1,
)

if TYPE_CHECKING:
    from gateway.deid.pseudonyms import Pseudonyms


PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020

# PS3.15 Basic Profile + Retain Longitudinal Temporal Information with Modified Dates + Retain
# Patient Characteristics + Clean Descriptors: what most research uses need (intervals, age,
# sex, size, descriptions with identifiers cut out), with nothing identifying kept verbatim.
DEFAULT_OPTIONS = (
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    Option.RETAIN_PATIENT_CHARACTERISTICS,
    Option.CLEAN_DESCRIPTORS,
)

_MUTUALLY_EXCLUSIVE = (
    Option.RETAIN_LONGITUDINAL_FULL_DATES,
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,
)


# The patient's own identity: no profile may declare these "kept" to the verify gate, so a
# profile (or CTP script) that lets one through sends the instance to quarantine.
PATIENT_IDENTITY_TAGS = frozenset(
    int(tag_for_keyword(k)) for k in PATIENT_IDENTITY_KEYWORDS  # type: ignore[arg-type]
)


@dataclass(frozen=True)
class CsvRules:
    """How `dicom-gateway csv` treats a clinical table (profile section `clinical_csv`).

    `id_column` None: the first column holds the patient ID. Columns named in `date_columns`
    move with the patient's date shift; those in `drop_columns` are removed.
    """

    id_column: str | None = None
    date_columns: tuple[str, ...] = ()
    drop_columns: tuple[str, ...] = ()


class ProfileError(Exception):
    """A profile that cannot be used; `.problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def resolve_action(row: TableRow, options: Iterable[Option]) -> str:
    """The action for a row under the given options.

    An option replaces the Basic Profile action where its column has a code. Where two chosen
    options both have a code for a row (e.g. Retain Device Identity K and Clean Descriptors C),
    the less retaining one wins: C (keep, cleaned) over K (keep as is).
    """
    codes = {row.options[opt] for opt in options if opt in row.options}
    if not codes:
        return row.basic
    return "C" if "C" in codes else "K"


class DeidProfile(Protocol):
    """What every profile kind offers (YAML: CompiledProfile; CTP scripts: ctp/profile.py)."""

    name: str
    acknowledged: frozenset[str]
    csv: CsvRules

    def keeps(self, tag: int) -> bool: ...

    def build_engine(self, pseudonyms: Pseudonyms, storage_dir: Path | None = None) -> Any: ...

    def effective_action(self, tag: int) -> str | None: ...

    def effective_pattern_action(self, pattern: str) -> str: ...

    def path_overrides(self) -> tuple[tuple[str, str], ...]: ...


_MISSING = object()
_RESOLVED_LIMIT = 65536


@dataclass(frozen=True)
class CompiledProfile:
    """Everything the engine needs to decide an element's fate in one lookup."""

    name: str
    options: frozenset[Option]
    actions: dict[int, Action]
    curve_action: str
    overlay_data_action: str
    overlay_comments_action: str
    private_action: str
    safe_private: frozenset[tuple[str, int, int]] = field(repr=False)
    edition: str = TABLE_E1_1_EDITION
    acknowledged: frozenset[str] = frozenset()
    csv: CsvRules = field(default_factory=CsvRules)
    # Overrides beyond the tag map (see overrides.py).
    group_rules: tuple[GroupRule, ...] = ()
    private_group_rules: tuple[GroupRule, ...] = ()
    private_rules: Mapping[tuple[str, int, int], Action] = field(default_factory=dict)
    paths: Mapping[tuple[int, ...], Mapping[int, Action]] = field(default_factory=dict)
    path_texts: tuple[tuple[str, Action], ...] = ()
    # Strict mode: public attributes neither named nor in strict.py's list are removed.
    strict: bool = False
    # `actions` plus the pattern result of every other tag seen; fresh in every copy.
    _resolved: dict[int, Action | None] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        # Seeded with the map, so every tag seen once costs one dict lookup afterwards.
        self._resolved.update(self.actions)

    def has(self, option: Option) -> bool:
        return option in self.options

    def action_for(self, tag: int) -> Action | None:
        """The action for a public tag (None: not in Table E.1-1 nor overridden: retained)."""
        found = self._resolved.get(tag, _MISSING)
        if found is _MISSING:
            found = self._pattern_action(tag)
            if len(self._resolved) < _RESOLVED_LIMIT + len(self.actions):
                self._resolved[tag] = found
        return found  # type: ignore[return-value]

    def _pattern_action(self, tag: int) -> Action | None:
        for rule in self.group_rules:
            if rule.matches(tag):
                return rule.action
        group, element = tag >> 16, tag & 0xFFFF
        if 0x5000 <= group <= 0x501E and not group & 1:
            return self.curve_action
        if 0x6000 <= group <= 0x601E and not group & 1:
            if element == 0x3000:
                return self.overlay_data_action
            if element == 0x4000:
                return self.overlay_comments_action
        return None

    def private_action_for(self, creator: str | None, tag: int) -> Action | None:
        """An override for a private data element (None: the private row decides)."""
        if creator is not None and self.private_rules:
            action = self.private_rules.get((creator, tag >> 16, tag & 0xFF))
            if action is not None:
                return action
        for rule in self.private_group_rules:
            if rule.matches(tag):
                return rule.action
        return None

    def keeps(self, tag: int) -> bool:
        """True when the profile may keep this attribute's value as it is (K, or an allow
        list whose allowed values pass unchanged)."""
        if tag in PATIENT_IDENTITY_TAGS:
            return False
        action = self.action_for(tag)
        return action == "K" or (isinstance(action, Rule) and action.kind == "allow")

    def effective_action(self, tag: int) -> str | None:
        """Reviewer code of what the profile does to a public attribute at top level."""
        action = self.action_for(tag)
        if action is None:
            return None
        code = action_code(action)
        return "D" if code == PSEUDONYM else code

    def effective_pattern_action(self, pattern: str) -> str:
        """Reviewer code for a pattern row of Table E.1-1 (curves, overlays, private)."""
        if pattern == CURVE_PATTERN:
            return action_code(self.action_for(0x50003000) or "K")
        if pattern == OVERLAY_DATA_PATTERN:
            return action_code(self.action_for(0x60003000) or "K")
        if pattern == OVERLAY_COMMENTS_PATTERN:
            return action_code(self.action_for(0x60004000) or "K")
        if pattern == PRIVATE_PATTERN:
            codes = [self.private_action]
            codes += [action_code(a) for a in self.private_rules.values()]
            codes += [action_code(r.action) for r in self.private_group_rules]
            return max(codes, key=code_rank)
        raise KeyError(pattern)

    def path_overrides(self) -> tuple[tuple[str, str], ...]:
        return tuple((text, action_code(action)) for text, action in self.path_texts)

    def build_engine(self, pseudonyms: Pseudonyms, storage_dir: Path | None = None) -> Engine:
        """The engine that applies this profile (every profile kind has one; `storage_dir`
        is where an engine may keep state, which this one needs none of)."""

        return Engine(self, pseudonyms)


def compile_profile(options: Iterable[Option] = DEFAULT_OPTIONS, name: str = "") -> CompiledProfile:
    chosen = frozenset(options)
    if all(opt in chosen for opt in _MUTUALLY_EXCLUSIVE):
        raise ProfileError(
            [
                f"options {_MUTUALLY_EXCLUSIVE[0].value} and {_MUTUALLY_EXCLUSIVE[1].value} "
                "exclude each other (PS3.15 E.3.6)"
            ]
        )
    actions: dict[int, str] = {}
    patterns: dict[str, str] = {}
    for row in table_e1_1():
        action = resolve_action(row, chosen)
        if row.tag is None:
            assert row.pattern is not None
            patterns[row.pattern] = action
        else:
            actions[row.tag] = action
    actions[PATIENT_NAME] = PSEUDONYM
    actions[PATIENT_ID] = PSEUDONYM
    return CompiledProfile(
        name=name or "basic+" + ",".join(sorted(o.value for o in chosen)),
        options=chosen,
        actions=actions,
        curve_action=patterns[CURVE_PATTERN],
        overlay_data_action=patterns[OVERLAY_DATA_PATTERN],
        overlay_comments_action=patterns[OVERLAY_COMMENTS_PATTERN],
        private_action=patterns[PRIVATE_PATTERN],
        safe_private=safe_private_attributes(),
    )


def default_profile() -> CompiledProfile:
    """Basic Profile + Modified Dates + Patient Characteristics + Clean Descriptors."""
    return compile_profile(DEFAULT_OPTIONS, name="default")


def tag_of(keyword: str) -> int:
    """Tag for a DICOM keyword, for readable code in the engine."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag
