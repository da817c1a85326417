"""Reading a YAML profile file into a CompiledProfile.

    description: free text for people             # optional
    base: basic                                    # the Basic Application Confidentiality Profile
    options: [retain_longitudinal_modified_dates]  # Table E.1-1 options, by name
    overrides:                                     # per attribute; see overrides.py
      StudyDescription: {clean: {allow: ["CT CHEST W/CONTRAST"], fallback: remove}}
      InstitutionName: {replace: INSTITUTION}
    acknowledge: [PatientAge]                      # weakenings the site accepts (review.py)
    strict: true                                   # remove what no list names (strict.py)
    clinical_csv: {id_column: MRN, date_columns: [visit_date], drop_columns: [name]}

Every problem is reported as `FILE: 'key.path': reason`, all of them at once; nothing is
skipped with a warning.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydicom.datadict import tag_for_keyword

from gateway.base.yaml_files import YamlFileError, read_mapping, validate_partly, value_error
from gateway.deid.overrides import Overrides, compile_overrides, parse_tag
from gateway.deid.profile import (
    PATIENT_ID,
    PATIENT_NAME,
    CompiledProfile,
    CsvRules,
    ProfileError,
    compile_profile,
)
from gateway.deid.standard import Option

CSV_KEYS = ("id_column", "date_columns", "drop_columns")
# Pattern rows of Table E.1-1 by the names `acknowledge` uses for them.
PATTERN_NAMES = ("private", "curves", "overlays")
_TAG_TEXT = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")
_OPTIONS = {opt.value: opt for opt in Option}


# --- the file's schema: its keys and their shapes; what they mean is compiled below ------


def _shape(test: Callable[[object], bool], reason: str) -> BeforeValidator:
    """Refuse a value that fails `test`, with `reason` as the whole message."""

    def check(value: object) -> object:
        if not test(value):
            raise value_error("profile_shape", reason)
        return value

    return BeforeValidator(check)


def _base(value: object) -> object:
    if value != "basic":
        raise value_error("profile_base", f"{value!r} is not a known base (basic)")
    return value


def _option(value: object) -> Option:
    if not isinstance(value, str) or value not in _OPTIONS:
        reason = f"{value!r} is not an option (one of: {', '.join(_OPTIONS)})"
        raise value_error("profile_option", reason)
    return _OPTIONS[value]


def _text(value: object) -> bool:
    return isinstance(value, str)


def _list(value: object) -> bool:
    return isinstance(value, list)


def _boolean(value: object) -> bool:
    return isinstance(value, bool)


def _column(value: object) -> bool:
    return value is None or (isinstance(value, str) and bool(value.strip()))


def _columns(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _mapping(value: object) -> bool:
    return value is None or isinstance(value, dict)


_Columns = Annotated[tuple[str, ...], _shape(_columns, "a list of column names")]


class _CsvFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id_column: Annotated[str | None, _shape(_column, "a column name")] = None
    date_columns: _Columns = ()
    drop_columns: _Columns = ()


class _ProfileFile(BaseModel):
    """The top-level keys of a profile file; an unknown key is an error, never ignored."""

    model_config = ConfigDict(extra="forbid")

    description: Annotated[str, _shape(_text, "must be text")] = ""
    base: Annotated[str, BeforeValidator(_base)] = "basic"
    options: Annotated[
        list[Annotated[Option, BeforeValidator(_option)]],
        _shape(_list, "must be a list of option names"),
    ] = Field(default_factory=list)
    overrides: Any = None  # compiled, and checked, by overrides.py
    acknowledge: Annotated[list[Any], _shape(_list, "must be a list of attributes")] = Field(
        default_factory=list
    )
    strict: Annotated[bool, _shape(_boolean, "true or false")] = False
    clinical_csv: Annotated[
        _CsvFile | None, _shape(_mapping, f"a mapping with {', '.join(CSV_KEYS)}")
    ] = None


# --- reading and compiling -------------------------------------------------------------


def load_yaml_profile(path: Path) -> CompiledProfile:
    where = str(path)
    try:
        data = read_mapping(path, where, empty_ok=True)
    except YamlFileError as exc:
        raise ProfileError(exc.problems) from None
    return compile_mapping(data, where, path.stem)


def compile_mapping(data: dict[str, object], where: str, name: str) -> CompiledProfile:
    """A profile from its parsed mapping; ProfileError lists every problem."""
    parsed, problems = validate_partly(
        _ProfileFile, data, where, unknown_first=True
    )
    if parsed is None:
        raise ProfileError(problems)
    overrides = compile_overrides(
        parsed.overrides, where, frozenset({PATIENT_NAME, PATIENT_ID})
    )
    problems.extend(overrides.problems)
    acknowledged = _acknowledged(parsed.acknowledge, where, overrides, problems)
    csv = _csv_rules(parsed.clinical_csv, where, problems)
    profile = None
    try:
        profile = compile_profile(parsed.options, name=name)
    except ProfileError as exc:
        problems.extend(f"{where}: 'options': {p}" for p in exc.problems)
    if problems or profile is None:
        raise ProfileError(problems)
    compiled = apply_overrides(profile, overrides, acknowledged, csv, parsed.strict)
    problems.extend(_unreachable_paths(compiled, where))
    if problems:
        raise ProfileError(problems)
    return compiled


def _unreachable_paths(profile: CompiledProfile, where: str) -> list[str]:
    """Path overrides under a sequence the profile removes or empties would never apply."""
    found = []
    for text, _ in profile.path_texts:
        first = text.split("/", 1)[0].strip()
        tag = parse_tag(first, "", [])
        action = profile.action_for(tag) if tag is not None else None
        if action in ("X", "Z"):
            done = "removed" if action == "X" else "emptied"
            found.append(f"{where}: 'overrides.{text}': {first} is {done} ({action}) by this "
                         "profile, so the override never applies")
    return found


def apply_overrides(
    profile: CompiledProfile,
    overrides: Overrides,
    acknowledged: frozenset[str] = frozenset(),
    csv: CsvRules | None = None,
    strict: bool = False,
) -> CompiledProfile:
    """The profile with its overrides compiled in: exact tags over group patterns over the
    table, so the engine still decides a listed tag with one dict lookup."""
    actions = dict(profile.actions)
    public = tuple(r for r in overrides.groups if not r.private)
    if public:
        for tag in actions:
            if tag in (PATIENT_NAME, PATIENT_ID):
                continue
            rule = next((r for r in public if r.matches(tag)), None)
            if rule is not None:
                actions[tag] = rule.action
    actions.update(overrides.tags)
    return dataclasses.replace(
        profile,
        actions=actions,
        acknowledged=acknowledged,
        csv=csv or CsvRules(),
        group_rules=public,
        private_group_rules=tuple(r for r in overrides.groups if r.private),
        private_rules=dict(overrides.private),
        paths={k: dict(v) for k, v in overrides.paths.items()},
        path_texts=tuple(overrides.path_texts),
        strict=strict,
    )


def _acknowledged(
    raw: object, where: str, overrides: Overrides, problems: list[str]
) -> frozenset[str]:
    """Keywords, "(gggg,eeee)" texts, pattern names or override paths, as the reviewer names
    weakenings."""
    if not isinstance(raw, list):
        problems.append(f"{where}: 'acknowledge': must be a list of attributes")
        return frozenset()
    paths = {text for text, _ in overrides.path_texts}
    names: set[str] = set()
    for index, value in enumerate(raw):
        text = str(value).strip()
        tag_text = _TAG_TEXT.match(text)
        if tag_text:
            names.add(f"({tag_text.group(1).upper()},{tag_text.group(2).upper()})")
        elif text in PATTERN_NAMES or text in paths or tag_for_keyword(text) is not None:
            names.add(text)
        else:
            problems.append(
                f"{where}: 'acknowledge.{index}': {text!r} is not a keyword, (gggg,eeee), "
                f"one of {', '.join(PATTERN_NAMES)}, or an override path"
            )
    return frozenset(names)


def _csv_rules(parsed: _CsvFile | None, where: str, problems: list[str]) -> CsvRules:
    """The clinical CSV rules; the columns' shapes are checked by `_CsvFile`."""
    if parsed is None:
        return CsvRules()
    both = set(parsed.date_columns) & set(parsed.drop_columns)
    if both:
        problems.append(f"{where}: 'clinical_csv': {', '.join(sorted(both))} both shifted "
                        "and dropped")
    if parsed.id_column is not None and parsed.id_column in parsed.drop_columns:
        problems.append(f"{where}: 'clinical_csv.id_column': the ID column cannot be dropped")
    return CsvRules(parsed.id_column, parsed.date_columns, parsed.drop_columns)
