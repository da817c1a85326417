"""Clinical CSV files pseudonymised like the images: same patient, same pseudonym, same shift.

A research data manager's table (one row per visit, lab value, outcome, ...) names the
patient by the hospital's ID. `pseudonymise_csv` replaces that ID with exactly the value the
DICOM path writes into Patient ID, by asking the engine (`patient_identity`, the one function
behind every pseudonym), moves the profile's date columns by the same per-patient offset
(`clinical_date`), and drops the columns the profile marks as identifying. Only those two
engine methods are used, so any profile kind (YAML or CTP script) works.

Fail closed: a row that cannot be made safe (wrong field count, a date that cannot be read,
an empty ID, a date in a column the profile says nothing about) stops the file with its line
and column, and nothing is written. Messages never hold cell values.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

from gateway.deid.csv_text import CsvError, Table, read_table, write_atomically
from gateway.deid.engine import PatientIdentity
from gateway.deid.profile import CsvRules
from gateway.deid.pseudonym_table import UnlistedPatient

__all__ = [
    "ClinicalEngine",
    "CsvError",
    "CsvPatient",
    "CsvReport",
    "pseudonymise_csv",
    "read_table",
]

# Recognised by name: the issuer that qualifies the ID, as DICOM's Issuer of Patient ID does
# (the DICOM path keys a patient on both, so the CSV must too). Removed from the output.
_ISSUER_NAMES = frozenset({"issuerofpatientid"})

# A time after the date is kept as it is: the shift is a whole number of days (as in DICOM).
_TIME = r"(?P<time>[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?"
# (name, pattern, order of the captured parts: y m d); each cell keeps its own format.
_DATE_FORMATS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("YYYYMMDD", re.compile(r"(\d{4})(\d{2})(\d{2})" + _TIME), "ymd"),
    ("YYYY-MM-DD", re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})" + _TIME), "ymd"),
    ("DD/MM/YYYY", re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})" + _TIME), "dmy"),
    ("DD.MM.YYYY", re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})" + _TIME), "dmy"),
)
_SEPARATORS = {"YYYY-MM-DD": "-", "DD/MM/YYYY": "/", "DD.MM.YYYY": "."}
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
_UNLISTED_DATE = (
    "holds dates, but the profile's clinical_csv names this column in neither "
    "date_columns nor drop_columns"
)


class ClinicalEngine(Protocol):
    """What this module needs of an engine (`gateway.deid.engine.Engine` and CTP's)."""

    def patient_identity(self, patient_id: str, issuer: str = "") -> PatientIdentity: ...

    def clinical_date(self, identity: PatientIdentity, value: str) -> str | None: ...


@dataclass(frozen=True)
class CsvPatient:
    """One patient of the file: the original ID (and issuer) and what the engine gave it."""

    patient_id: str = field(repr=False)
    issuer: str = field(repr=False)
    identity: PatientIdentity


@dataclass(frozen=True)
class CsvReport:
    """What was done to one file (no patient data except in `patients`, for the mapping)."""

    rows: int
    encoding: str
    delimiter: str
    shifted: tuple[str, ...]
    dropped: tuple[str, ...]
    patients: tuple[CsvPatient, ...] = field(repr=False)
    # Rows left out, and their patients: not in deid.pseudonym_table, which says quarantine.
    left_out: int = 0
    unlisted: int = 0


# -- dates ----------------------------------------------------------------------------------


def _match_date(cell: str) -> tuple[str, re.Match[str]] | None:
    for name, pattern, _ in _DATE_FORMATS:
        found = pattern.fullmatch(cell)
        if found:
            return name, found
    return None


def _looks_like_date(cell: str) -> bool:
    """A separated date (YYYY-MM-DD, DD/MM/YYYY, DD.MM.YYYY): bare YYYYMMDD is too often
    just a number to be taken for a date in a column the profile does not name."""
    if not cell[:1].isdigit() or not any(sep in cell for sep in "-/."):
        return False  # most cells: no regex at all
    found = _match_date(cell)
    return found is not None and found[0] != "YYYYMMDD"


def _bare_date_column(records: Sequence[tuple[int, list[str]]], index: int) -> int | None:
    """The first line of a column whose every non-empty cell is a YYYYMMDD date of 1900 to
    2099 (a date column by its content), else None."""
    first = None
    for line, row in records:
        cell = row[index].strip()
        if not cell:
            continue
        if not (len(cell) == 8 and cell.isdigit() and cell[:2] in ("19", "20")):
            return None
        try:
            date(int(cell[:4]), int(cell[4:6]), int(cell[6:]))
        except ValueError:
            return None
        first = line if first is None else first
    return first


def _shift_cell(
    cell: str, engine: ClinicalEngine, identity: PatientIdentity
) -> str | None:
    """The cell's date moved as the profile moves this patient's dates, in the cell's own
    format; "" when the profile keeps no dates; None when the cell is not a readable date."""
    found = _match_date(cell)
    if found is None:
        return None
    name, match = found
    order = next(o for n, _, o in _DATE_FORMATS if n == name)
    parts = dict(zip(order, match.groups()[:3], strict=True))
    try:
        original = date(int(parts["y"]), int(parts["m"]), int(parts["d"]))
    except ValueError:
        return None
    ymd = f"{original.year:04d}{original.month:02d}{original.day:02d}"
    shifted = engine.clinical_date(identity, ymd)
    if shifted is None:
        return ""
    if len(shifted) != 8 or not shifted.isdigit():
        return None  # the profile's date function gave no date: never pass the original
    year, month, day = shifted[:4], shifted[4:6], shifted[6:]
    time = match.group("time") or ""
    if name == "YYYYMMDD":
        return year + month + day + time
    # Day and month keep the original's zero padding (7.1.2024 stays unpadded).
    month = month if len(parts["m"]) == 2 else str(int(month))
    day = day if len(parts["d"]) == 2 else str(int(day))
    separator = _SEPARATORS[name]
    ordered = (year, month, day) if order == "ymd" else (day, month, year)
    return separator.join(ordered) + time


# -- the table ------------------------------------------------------------------------------


def _fold(name: str) -> str:
    return name.strip().casefold()


def _header_problem(header: Sequence[str]) -> str | None:
    """Why the first row is data rather than column names: a date anywhere, or a number
    where the patient ID's name should be (a year as a column name is fine)."""
    dated = any(_match_date(cell.strip()) is not None for cell in header)
    if dated or (header and _NUMBER.fullmatch(header[0].strip())):
        return ("no header row: the first row holds data (a date or a number); "
                "the first row must name the columns")
    return None


@dataclass(frozen=True)
class _Columns:
    id_index: int
    issuer_index: int | None
    dates: frozenset[int]
    dropped: frozenset[int]


def _columns(
    source: Path, header: list[str], rules: CsvRules, id_column: str | None
) -> _Columns:
    folded = [_fold(name) for name in header]
    wanted = id_column or rules.id_column
    id_index = 0
    if wanted is not None and _fold(wanted) in folded:
        id_index = folded.index(_fold(wanted))  # the row names the ID column: a header
    else:
        problem = _header_problem(header)
        if problem is not None:
            raise CsvError(source, problem, line=1)
        if wanted is not None:
            raise CsvError(source, "not in the header row (the first row must name the "
                           "columns)", line=1, column=wanted)
    issuer = [i for i, name in enumerate(folded) if name.replace(" ", "") in _ISSUER_NAMES]
    date_names = {_fold(name) for name in rules.date_columns}
    drop_names = {_fold(name) for name in rules.drop_columns}
    dropped = frozenset(
        i for i, name in enumerate(folded) if i != id_index and (name in drop_names
                                                                   or i in issuer)
    )
    dates = frozenset(
        i for i, name in enumerate(folded) if name in date_names and i not in dropped
    )
    return _Columns(id_index, issuer[0] if issuer else None, dates, dropped)


def _pseudonymise_rows(
    source: Path,
    table: Table,
    engine: ClinicalEngine,
    rules: CsvRules,
    id_column: str | None,
    issuer: str,
) -> tuple[list[list[str]], CsvReport]:
    if not table.records:
        raise CsvError(source, "empty file: a header row naming the columns is required")
    _, header = table.records[0]
    columns = _columns(source, header, rules, id_column)
    id_name = header[columns.id_index].strip() or f"#{columns.id_index + 1}"

    def name_of(index: int) -> str:
        return header[index].strip() or f"#{index + 1}"

    # First pass: every row's patient, so an ID repeated in another column of any row is
    # known before the first row is written.
    identities: dict[tuple[str, str], PatientIdentity] = {}
    by_id: dict[str, str] = {}
    unlisted: set[tuple[str, str]] = set()  # not in the pseudonym table: rows left out
    row_keys: list[tuple[str, str]] = []
    for line, row in table.records[1:]:
        if len(row) != len(header):
            raise CsvError(source, f"{len(row)} fields where the header has {len(header)}",
                           line=line)
        patient_id = row[columns.id_index].strip()
        if not patient_id:
            raise CsvError(source, "empty patient ID", line=line, column=id_name)
        row_issuer = issuer
        if columns.issuer_index is not None:
            row_issuer = row[columns.issuer_index].strip() or issuer
        key = (patient_id, row_issuer)
        if key not in identities and key not in unlisted:
            try:
                identities[key] = engine.patient_identity(patient_id, row_issuer)
            except UnlistedPatient:
                unlisted.add(key)
            else:
                by_id.setdefault(patient_id, identities[key].pseudonym)
        row_keys.append(key)
    unlisted_ids = {patient_id for patient_id, _ in unlisted} - set(by_id)

    kept = [i for i in range(len(header)) if i not in columns.dropped]
    for index in kept:
        if index != columns.id_index and index not in columns.dates:
            line = _bare_date_column(table.records[1:], index)
            if line is not None:
                raise CsvError(source, _UNLISTED_DATE, line=line, column=name_of(index))
    out_rows = [[header[i] for i in kept]]
    for (line, row), key in zip(table.records[1:], row_keys, strict=True):
        if key in unlisted:
            continue  # the images of this patient are quarantined: the rows stay out too
        identity = identities[key]
        out: list[str] = []
        for index in kept:
            cell = row[index].strip()
            if index == columns.id_index:
                out.append(identity.pseudonym)
            elif index in columns.dates:
                if not cell:
                    out.append("")
                    continue
                shifted = _shift_cell(cell, engine, identity)
                if shifted is None:
                    raise CsvError(source, "not a date this tool reads (YYYYMMDD, YYYY-MM-DD, "
                                   "DD/MM/YYYY, DD.MM.YYYY)", line=line, column=name_of(index))
                out.append(shifted)
            elif cell in by_id:
                # The same patient's (or another patient's) ID repeated in another column.
                out.append(identity.pseudonym if cell == key[0] else by_id[cell])
            elif cell in unlisted_ids:
                raise CsvError(source, "holds the ID of a patient the pseudonym table does "
                               "not list (whose rows are left out)", line=line,
                               column=name_of(index))  # fmt: skip
            elif _looks_like_date(cell):
                raise CsvError(source, _UNLISTED_DATE, line=line, column=name_of(index))
            else:
                out.append(row[index])
        out_rows.append(out)
    report = CsvReport(
        rows=len(out_rows) - 1,
        encoding=table.encoding,
        delimiter=table.delimiter,
        shifted=tuple(name_of(i) for i in sorted(columns.dates)),
        dropped=tuple(name_of(i) for i in sorted(columns.dropped)),
        patients=tuple(CsvPatient(pid, iss, ident) for (pid, iss), ident in identities.items()),
        left_out=sum(key in unlisted for key in row_keys),
        unlisted=len(unlisted),
    )
    return out_rows, report


def pseudonymise_csv(
    source: Path,
    target: Path,
    engine: ClinicalEngine,
    rules: CsvRules,
    *,
    id_column: str | None = None,
    issuer: str = "",
    before_commit: Callable[[CsvReport], None] | None = None,
) -> CsvReport:
    """Write the pseudonymised `source` to `target` (UTF-8, the input's delimiter).

    `id_column` overrides `rules.id_column` (default: the first column). `issuer` qualifies
    every ID when the file has no IssuerOfPatientID column; it must be what the images
    carry in Issuer of Patient ID, or the pseudonyms differ. `before_commit` runs after the
    data is on disk and before the output appears (the caller seals the mapping there).
    Raises CsvError (the file) or OSError (the environment); either way no output is left.
    """
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise ValueError("the output file must not be the input file")
    table = read_table(source)
    rows, report = _pseudonymise_rows(source, table, engine, rules, id_column, issuer)
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=table.delimiter, lineterminator=table.line_end)
    writer.writerows(rows)
    write_atomically(
        target, buffer.getvalue(), lambda: before_commit(report) if before_commit else None
    )
    return report
