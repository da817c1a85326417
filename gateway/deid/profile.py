"""A de-identification profile: the Basic Profile, the chosen options, compiled once.

Compiling turns Table E.1-1 plus the options into a plain `tag -> action code` map, so that
the engine walks each dataset once and does one dict lookup per element.

Profile file (YAML)::

    base: basic                      # the Basic Application Confidentiality Profile
    options:                         # any of the ten Table E.1-1 options, by name
      - retain_longitudinal_modified_dates

An unknown key, base or option is an error that names the file, the key and the reason;
nothing is skipped with a warning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydicom.datadict import tag_for_keyword

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
    from gateway.deid.engine import Engine
    from gateway.deid.pseudonyms import Pseudonyms

# Our own action code: replace with the keyed pseudonym (see pseudonyms.Pseudonyms.patient_id).
# The standard says Z for Patient's Name and Z/D for Patient ID; a research archive needs a
# stable, non-empty subject identifier, so both get the same site-scoped pseudonym: a D whose
# dummy value is deterministic and carries nothing of the original.
PSEUDONYM = "P"

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020

DEFAULT_OPTIONS = (Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,)

_MUTUALLY_EXCLUSIVE = (
    Option.RETAIN_LONGITUDINAL_FULL_DATES,
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,
)


# The patient's own identity: no profile may declare these "kept" to the verify gate, so a
# profile (or CTP script) that lets one through sends the instance to quarantine.
PATIENT_IDENTITY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
)
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


@dataclass(frozen=True)
class CompiledProfile:
    """Everything the engine needs to decide an element's fate in one lookup."""

    name: str
    options: frozenset[Option]
    actions: dict[int, str]
    curve_action: str
    overlay_data_action: str
    overlay_comments_action: str
    private_action: str
    safe_private: frozenset[tuple[str, int, int]] = field(repr=False)
    edition: str = TABLE_E1_1_EDITION
    acknowledged: frozenset[str] = frozenset()
    csv: CsvRules = field(default_factory=CsvRules)

    def has(self, option: Option) -> bool:
        return option in self.options

    def action_for(self, tag: int) -> str | None:
        """The action for a public tag (None: not in Table E.1-1, so retained)."""
        action = self.actions.get(tag)
        if action is not None:
            return action
        group, element = tag >> 16, tag & 0xFFFF
        if 0x5000 <= group <= 0x501E and not group & 1:
            return self.curve_action
        if 0x6000 <= group <= 0x601E and not group & 1:
            if element == 0x3000:
                return self.overlay_data_action
            if element == 0x4000:
                return self.overlay_comments_action
        return None

    def keeps(self, tag: int) -> bool:
        """True when the profile keeps this attribute's value as it is (action K)."""
        return self.action_for(tag) == "K"

    def build_engine(self, pseudonyms: Pseudonyms) -> Engine:
        """The engine that applies this profile (every profile kind has one)."""
        from gateway.deid.engine import Engine

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
    """Basic Profile with Retain Longitudinal Temporal Information with Modified Dates."""
    return compile_profile(DEFAULT_OPTIONS, name="default")


_PROFILE_KEYS = {"base", "options"}


def load_profile(path: Path | None, lookup_table: Path | None = None) -> CompiledProfile:
    """Read and compile a profile file; None gives the built-in default.

    A `*.script` file is an RSNA CTP DicomAnonymizer script (see `ctp.py`); `lookup_table`
    is the CTP properties file its @lookup and 3-argument @incrementdate read.
    """
    if path is None:
        return default_profile()
    if Path(path).suffix.lower() == ".script":
        from gateway.deid.ctp import load_script

        return load_script(Path(path), lookup_table)  # type: ignore[return-value]
    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError([f"{where}: '(file)': cannot read: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileError([f"{where}: '(yaml)': not valid YAML{line}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProfileError([f"{where}: '(file)': a profile is a mapping of keys"])
    problems = [f"{where}: '{key}': unknown key" for key in data if key not in _PROFILE_KEYS]
    base = data.get("base", "basic")
    if base != "basic":
        problems.append(f"{where}: 'base': {base!r} is not a known base (basic)")
    raw_options = data.get("options", [])
    chosen: list[Option] = []
    if not isinstance(raw_options, list):
        problems.append(f"{where}: 'options': must be a list of option names")
        raw_options = []
    known = {opt.value: opt for opt in Option}
    for index, raw in enumerate(raw_options):
        if raw not in known:
            problems.append(
                f"{where}: 'options.{index}': {raw!r} is not an option "
                f"(one of: {', '.join(known)})"
            )
        else:
            chosen.append(known[raw])
    if not problems:
        try:
            return compile_profile(chosen, name=Path(path).stem)
        except ProfileError as exc:
            problems.extend(f"{where}: 'options': {p}" for p in exc.problems)
    raise ProfileError(problems)


def tag_of(keyword: str) -> int:
    """Tag for a DICOM keyword, for readable code in the engine."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag
