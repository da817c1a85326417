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
from pathlib import Path

import yaml
from pydicom.datadict import tag_for_keyword

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

PROFILE_KEYS = ("description", "base", "options", "overrides", "acknowledge", "strict",
                "clinical_csv")
CSV_KEYS = ("id_column", "date_columns", "drop_columns")
# Pattern rows of Table E.1-1 by the names `acknowledge` uses for them.
PATTERN_NAMES = ("private", "curves", "overlays")
_TAG_TEXT = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")


def load_yaml_profile(path: Path) -> CompiledProfile:
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError([f"{where}: '(file)': cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ProfileError([f"{where}: '(file)': not UTF-8 text"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileError([f"{where}: '(yaml)': not valid YAML{line}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError([f"{where}: '(file)': a profile is a mapping of keys"])
    return compile_mapping(data, where, path.stem)


def compile_mapping(data: dict[str, object], where: str, name: str) -> CompiledProfile:
    """A profile from its parsed mapping; ProfileError lists every problem."""
    problems = [f"{where}: '{key}': unknown key" for key in data if key not in PROFILE_KEYS]
    if not isinstance(data.get("description", ""), str):
        problems.append(f"{where}: 'description': must be text")
    base = data.get("base", "basic")
    if base != "basic":
        problems.append(f"{where}: 'base': {base!r} is not a known base (basic)")
    chosen = _options(data.get("options", []), where, problems)
    overrides = compile_overrides(
        data.get("overrides"), where, frozenset({PATIENT_NAME, PATIENT_ID})
    )
    problems.extend(overrides.problems)
    acknowledged = _acknowledged(data.get("acknowledge", []), where, overrides, problems)
    strict = data.get("strict", False)
    if not isinstance(strict, bool):
        problems.append(f"{where}: 'strict': true or false")
        strict = False
    csv = _csv_rules(data.get("clinical_csv"), where, problems)
    profile = None
    try:
        profile = compile_profile(chosen, name=name)
    except ProfileError as exc:
        problems.extend(f"{where}: 'options': {p}" for p in exc.problems)
    if problems or profile is None:
        raise ProfileError(problems)
    compiled = apply_overrides(profile, overrides, acknowledged, csv, strict)
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


def _options(raw: object, where: str, problems: list[str]) -> list[Option]:
    if not isinstance(raw, list):
        problems.append(f"{where}: 'options': must be a list of option names")
        return []
    known = {opt.value: opt for opt in Option}
    chosen = []
    for index, value in enumerate(raw):
        if value in known:
            chosen.append(known[value])
        else:
            problems.append(
                f"{where}: 'options.{index}': {value!r} is not an option "
                f"(one of: {', '.join(known)})"
            )
    return chosen


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


def _csv_rules(raw: object, where: str, problems: list[str]) -> CsvRules:
    if raw is None:
        return CsvRules()
    if not isinstance(raw, dict):
        problems.append(f"{where}: 'clinical_csv': a mapping with {', '.join(CSV_KEYS)}")
        return CsvRules()
    problems.extend(f"{where}: 'clinical_csv.{k}': unknown key (one of {', '.join(CSV_KEYS)})"
                    for k in raw if k not in CSV_KEYS)
    id_column = raw.get("id_column")
    if id_column is not None and not (isinstance(id_column, str) and id_column.strip()):
        problems.append(f"{where}: 'clinical_csv.id_column': a column name")
        id_column = None
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("date_columns", "drop_columns"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{where}: 'clinical_csv.{key}': a list of column names")
            value = []
        lists[key] = tuple(value)
    both = set(lists["date_columns"]) & set(lists["drop_columns"])
    if both:
        problems.append(f"{where}: 'clinical_csv': {', '.join(sorted(both))} both shifted "
                        "and dropped")
    if id_column is not None and id_column in lists["drop_columns"]:
        problems.append(f"{where}: 'clinical_csv.id_column': the ID column cannot be dropped")
    return CsvRules(id_column, lists["date_columns"], lists["drop_columns"])
