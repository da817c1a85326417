"""A CSV file as text: its encoding and delimiter sniffed, its records with line numbers.

Spreadsheets leave CSV files in whatever encoding and delimiter the workstation uses; the
clinical CSV path (`clinical_csv.py`) reads any of the common ones, reports problems by
physical line, and writes its output so that it appears whole or not at all.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.base.durable import fsync_directory

__all__ = ["DELIMITERS", "CsvError", "Table", "read_table", "write_atomically"]

DELIMITERS = ",;\t|"
_SNIFF_CHARS = 64 * 1024


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
class Table:
    """A decoded CSV: records with the physical line each starts on, blank lines left out."""

    encoding: str
    delimiter: str
    line_end: str
    records: list[tuple[int, list[str]]]





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


def write_atomically(target: Path, text: str, before_commit: Callable[[], None]) -> None:
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
