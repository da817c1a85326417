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

import codecs
import csv
import io
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

from gateway.deid.engine import PatientIdentity
from gateway.deid.profile import CsvRules
from gateway.durable import fsync_directory

__all__ = [
    "ClinicalEngine",
    "CsvError",
    "CsvPatient",
    "CsvReport",
    "pseudonymise_csv",
    "read_table",
]

DELIMITERS = ",;\t|"
_SNIFF_CHARS = 64 * 1024
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


class CsvError(Exception):
    """A file that cannot be pseudonymised: `FILE:LINE: column 'X': reason`, no cell values."""

    def __init__(
        self, source: Path, reason: str, line: int | None = None, column: str | None = None
    ) -> None:
        self.source, self.line, self.column, self.reason = Path(source), line, column, reason
        where = f"{source}:{line}" if line is not None else str(source)
        what = f" column '{column}':" if column is not None else ""
        super().__init__(f"{where}:{what} {reason}")


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


@dataclass(frozen=True)
class Table:
    """A decoded CSV: records with the physical line each starts on, blank lines left out."""

    encoding: str
    delimiter: str
    line_end: str
    records: list[tuple[int, list[str]]]


# -- reading --------------------------------------------------------------------------------


def _decode(source: Path, raw: bytes) -> tuple[str, str]:
    """The text and the encoding it was read with: a BOM decides, else UTF-8, else cp1252."""
    boms = (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    )
    for bom, encoding in boms:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise CsvError(source, f"not valid {encoding} text after its byte order mark "
                               f"(byte {exc.start})") from None
    if b"\x00" in raw:
        raise CsvError(source, "holds NUL bytes: not text (UTF-16 needs a byte order mark)")
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"


def _field_counts(sample: str, delimiter: str) -> list[int]:
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may end inside a record
    try:
        rows = csv.reader(io.StringIO("".join(lines[:200]), newline=""), delimiter=delimiter)
        return [len(row) for row in rows if row]
    except csv.Error:
        return []


def _sniff_delimiter(text: str) -> str:
    """csv.Sniffer's choice if every record then has the same field count, else the
    candidate that gives the header most fields with consistent counts (one column: ',')."""
    sample = text[:_SNIFF_CHARS]
    try:
        chosen = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
        counts = _field_counts(sample, chosen)
        if counts and counts[0] > 1 and len(set(counts)) == 1:
            return chosen
    except csv.Error:
        pass
    best, best_score = ",", (False, 1)
    for candidate in DELIMITERS:
        counts = _field_counts(sample, candidate)
        if not counts or counts[0] < 2:
            continue
        score = (len(set(counts)) == 1, counts[0])
        if score > best_score:
            best, best_score = candidate, score
    return best


def read_table(source: Path) -> Table:
    """Decode and parse a CSV file, sniffing its encoding and delimiter."""
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise CsvError(source, f"cannot read: {exc.strerror or type(exc).__name__}") from None
    text, encoding = _decode(source, raw)
    delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                records.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CsvError(source, f"not readable as CSV ({exc})", line=reader.line_num) from None
    line_end = "\r\n" if "\r\n" in text[:_SNIFF_CHARS] else "\n"
    return Table(encoding, delimiter, line_end, records)


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
    shifted = engine.clinical_date(identity, original.strftime("%Y%m%d"))
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
    for cell in header:
        text = cell.strip()
        if _match_date(text) is not None or _NUMBER.fullmatch(text):
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
    problem = _header_problem(header)
    if problem is not None:
        raise CsvError(source, problem, line=1)
    wanted = id_column or rules.id_column
    id_index = 0
    if wanted is not None:
        if _fold(wanted) not in folded:
            raise CsvError(source, "not in the header row (the first row must name the "
                           "columns)", line=1, column=wanted)
        id_index = folded.index(_fold(wanted))
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
        if key not in identities:
            identities[key] = engine.patient_identity(patient_id, row_issuer)
            by_id.setdefault(patient_id, identities[key].pseudonym)
        row_keys.append(key)

    kept = [i for i in range(len(header)) if i not in columns.dropped]
    for index in kept:
        if index != columns.id_index and index not in columns.dates:
            line = _bare_date_column(table.records[1:], index)
            if line is not None:
                raise CsvError(source, _UNLISTED_DATE, line=line, column=name_of(index))
    out_rows = [[header[i] for i in kept]]
    for (line, row), key in zip(table.records[1:], row_keys, strict=True):
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
    )
    return out_rows, report


# -- writing --------------------------------------------------------------------------------


def _write_atomically(target: Path, text: str, before_commit: Callable[[], None]) -> None:
    """Temporary file in the target's folder, fsync, `before_commit`, rename, folder fsync:
    on any failure the temporary file is removed and no output file appears."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.tmp-{secrets.token_hex(6)}"
    try:
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        before_commit()
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(target.parent)


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
    _write_atomically(
        target, buffer.getvalue(), lambda: before_commit(report) if before_commit else None
    )
    return report
