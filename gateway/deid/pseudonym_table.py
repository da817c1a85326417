"""Pre-assigned pseudonyms (`deid.pseudonym_table`): a clinical trial's subject IDs.

A CSV file maps each original Patient ID (optionally qualified by its Issuer of Patient ID)
to the pseudonym the trial assigned. It is read once at start-up (`load_pseudonym_table`)
and every problem in it stops the start, one line each, `FILE:LINE: reason`, never quoting a
cell (the file holds patient IDs).

The file:
- a header row naming the columns, in any order, case, spacing or `_`: `patient_id` (or
  `PatientID`), `pseudonym`, and optionally `issuer` (or `IssuerOfPatientID`); no other
  column. Encoding (UTF-8 with or without BOM, ...) and delimiter are sniffed as for
  clinical CSV files (`csv_text.read_table`); cells are stripped of surrounding spaces;
- one row per patient. A row with an issuer matches that issuer only; a row without one
  (no issuer column, or an empty cell) matches the Patient ID under any issuer. A Patient
  ID may not be listed both with and without an issuer;
- a pseudonym is at most 64 characters of letters, digits, `.`, `_` and `-`, starting with
  a letter or digit: it becomes Patient ID (LO) and Patient's Name (PN) and names the
  patient's folder in the export. One patient has one pseudonym, one pseudonym one
  patient, and no pseudonym is an original Patient ID of the table.

Only Patient ID and Patient's Name (and the patient's clinical CSV rows and mapping
records) take the table's pseudonym: date shifts and UIDs stay keyed on the site secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.deid.csv_text import CsvError, read_table
from gateway.deid.deid_result import DeidError

__all__ = [
    "PseudonymTable",
    "PseudonymTableError",
    "UnlistedPatient",
    "load_pseudonym_table",
]

Unlisted = Literal["quarantine", "keyed"]

MAX_LENGTH = 64  # LO and PN (one component group)
_PSEUDONYM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Header names, folded (case, spaces, `_` and `-` ignored) -> the column they name.
_COLUMNS = {
    "patientid": "patient_id",
    "issuer": "issuer",
    "issuerofpatientid": "issuer",
    "pseudonym": "pseudonym",
}
_MAX_PROBLEMS = 20


class UnlistedPatient(DeidError):
    """A patient the table does not list, under `unlisted_patients: quarantine`."""

    reason = "unlisted-patient"


class PseudonymTableError(Exception):
    """A table that cannot be used: `.problems` holds `FILE:LINE: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class PseudonymTable:
    """The table as the engine uses it (frozen, picklable; its repr shows no entry)."""

    source: Path
    # (issuer, Patient ID) -> pseudonym; issuer "" matches any issuer.
    entries: Mapping[tuple[str, str], str] = field(repr=False)
    unlisted: Unlisted = "quarantine"

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, patient_id: str, issuer: str = "") -> str | None:
        """The pre-assigned pseudonym of a patient, or None when not listed."""
        pid = patient_id.strip()
        if not pid:
            return None
        found = self.entries.get((issuer.strip(), pid))
        return found if found is not None else self.entries.get(("", pid))

    def pseudonym_for(self, patient_id: str, issuer: str = "") -> str | None:
        """The listed pseudonym; None for an unlisted patient under `keyed` (the caller
        gives the keyed one). Raises UnlistedPatient under `quarantine`; an empty Patient
        ID is never listed."""
        found = self.lookup(patient_id, issuer)
        if found is None and self.unlisted == "quarantine":
            what = "has no Patient ID" if not patient_id.strip() else "is not listed"
            raise UnlistedPatient(
                f"the patient {what} in deid.pseudonym_table ({self.source.name}) and "
                "deid.unlisted_patients is quarantine"
            )
        return found


def pseudonym_problem(value: str) -> str | None:
    """Why `value` cannot be a pre-assigned pseudonym (None: it can)."""
    if not value:
        return "empty pseudonym"
    if len(value) > MAX_LENGTH:
        return f"pseudonym longer than {MAX_LENGTH} characters (Patient ID is LO, at most 64)"
    if "\\" in value:
        return "pseudonym holds a backslash (the DICOM value separator)"
    if _CONTROL.search(value):
        return "pseudonym holds a control character"
    if not _PSEUDONYM.fullmatch(value):
        return (
            "pseudonym holds characters other than letters, digits, '.', '_' and '-', or "
            "starts with '.', '_' or '-' (it names the patient's export folder)"
        )
    return None


def _fold(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).casefold()


def _header(source: Path, line: int, header: list[str]) -> dict[str, int]:
    """Column name -> index; every problem of the header row (never quoting a cell: a
    file without a header has a patient ID there)."""
    accepted = "patient_id, pseudonym and optionally issuer"
    found: dict[str, int] = {}
    for index, cell in enumerate(header):
        column = _COLUMNS.get(_fold(cell))
        if column is None:
            raise PseudonymTableError([
                f"{source}:{line}: column {index + 1} of the header row is not one of {accepted} "
                "(a header row naming the columns is required)"
            ])  # fmt: skip
        if column in found:
            raise PseudonymTableError(
                [f"{source}:{line}: columns {found[column] + 1} and {index + 1} both name {column}"]
            )
        found[column] = index
    missing = [name for name in ("patient_id", "pseudonym") if name not in found]
    if missing:
        raise PseudonymTableError([
            f"{source}:{line}: the header row names no {' and no '.join(missing)} column "
            f"(accepted: {accepted})"
        ])  # fmt: skip
    return found


def load_pseudonym_table(path: Path, unlisted: Unlisted = "quarantine") -> PseudonymTable:
    """Read and check the table; raises PseudonymTableError with every problem found."""
    source = Path(path)
    try:
        table = read_table(source)
    except CsvError as exc:
        where = f"{source}:{exc.line}" if exc.line is not None else str(source)
        raise PseudonymTableError([f"{where}: {exc.reason}"]) from None
    if not table.records:
        raise PseudonymTableError([f"{source}: empty file: a header row is required"])
    columns = _header(source, *table.records[0])
    id_at, pseudo_at, issuer_at = (
        columns["patient_id"], columns["pseudonym"], columns.get("issuer")
    )  # fmt: skip
    entries: dict[tuple[str, str], str] = {}
    first_line: dict[tuple[str, str], int] = {}
    owner: dict[str, tuple[tuple[str, str], int]] = {}  # pseudonym -> (patient, line)
    issuers: dict[str, set[str]] = {}  # Patient ID -> the issuers it is listed under
    problems: list[tuple[int, str]] = []
    for line, row in table.records[1:]:
        if len(row) != len(columns):
            problems.append((line, f"{len(row)} fields where the header has {len(columns)}"))
            continue
        patient_id = row[id_at].strip()
        issuer = row[issuer_at].strip() if issuer_at is not None else ""
        pseudonym = row[pseudo_at].strip()
        problem = "empty patient ID" if not patient_id else pseudonym_problem(pseudonym)
        key = (issuer, patient_id)
        if problem is None and key in entries and entries[key] != pseudonym:
            problem = (
                f"patient listed again with another pseudonym (first on line {first_line[key]})"
            )
        elif problem is None and pseudonym in owner and owner[pseudonym][0] != key:
            problem = f"pseudonym already given to another patient on line {owner[pseudonym][1]}"
        if problem is not None:
            problems.append((line, problem))
            continue
        entries[key] = pseudonym
        first_line.setdefault(key, line)
        owner.setdefault(pseudonym, (key, line))
        issuers.setdefault(patient_id, set()).add(issuer)
    for key, line in first_line.items():
        issuer, patient_id = key
        if not issuer and len(issuers[patient_id]) > 1:
            problems.append((line, "patient ID listed without an issuer here and with one "
                             "elsewhere (a row without issuer matches every issuer)"))  # fmt: skip
        if entries[key] in issuers:
            problems.append((line, "pseudonym is an original Patient ID of the table"))
    if problems:
        problems.sort()
        shown = [f"{source}:{line}: {reason}" for line, reason in problems[:_MAX_PROBLEMS]]
        more = len(problems) - _MAX_PROBLEMS
        raise PseudonymTableError(shown + ([f"{source}: (+{more} more)"] if more > 0 else []))
    return PseudonymTable(source, entries, unlisted)
