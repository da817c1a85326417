"""What to pull: one kind of key (study UID, accession number or patient ID) and its values,
from the command line or a CSV column, and the run id a request is known by."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from gateway.keys.keyed_hash import KeyedHash

__all__ = ["KEYS", "PullRequest", "RequestError", "csv_request", "run_id"]

# kind -> the Study Root STUDY-level attribute it matches
KEYS: dict[str, str] = {
    "study": "StudyInstanceUID",
    "accession": "AccessionNumber",
    "patient": "PatientID",
}
# CSV column names (case and punctuation ignored) that say which kind of key they hold
_COLUMN_KINDS: dict[str, str] = {
    "studyinstanceuid": "study",
    "studyuid": "study",
    "study": "study",
    "accessionnumber": "accession",
    "accession": "accession",
    "patientid": "patient",
    "patient": "patient",
    "mrn": "patient",
}


# C-FIND wildcards and the value separator: a key holding one matches more than it says.
_MATCHING = ("*", "?", "\\")


class RequestError(Exception):
    """A request that cannot be read (a usage error: exit 2)."""


@dataclass(frozen=True)
class PullRequest:
    """`values[i]` came from `where[i]` ("argument 2", "row 7"): what the report names
    for a key that was not found (a position, never the value)."""

    kind: str
    values: tuple[str, ...]
    where: tuple[str, ...]

    @property
    def attribute(self) -> str:
        return KEYS[self.kind]

    @staticmethod
    def from_arguments(kind: str, values: list[str]) -> PullRequest:
        return _deduplicated(kind, [(v, f"argument {i}") for i, v in enumerate(values, 1)])


def _normalised(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def csv_request(path: Path, column: str | None, kind: str | None) -> PullRequest:
    """The values of `column` (default: the first column whose name says its kind, else the
    first column); `kind` defaults to what the column's name says."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise RequestError(f"{path}: empty CSV file (a header row is needed)")
            rows = [(number, row) for number, row in enumerate(reader, 2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RequestError(f"{path}: cannot read the CSV file ({exc})") from None
    names = [name.strip() for name in header]
    if column is not None:
        if column not in names:
            raise RequestError(f"{path}: no column {column!r} (columns: {', '.join(names)})")
        index = names.index(column)
    else:
        known = [i for i, name in enumerate(names) if _normalised(name) in _COLUMN_KINDS]
        index = known[0] if known else 0
    kind = kind or _COLUMN_KINDS.get(_normalised(names[index]))
    if kind is None:
        raise RequestError(
            f"{path}: say which key column {names[index]!r} holds (--key study|accession|patient)"
        )
    found = [(row[index], f"row {n}") for n, row in rows if index < len(row)]
    return _deduplicated(kind, found)


def _deduplicated(kind: str, found: list[tuple[str, str]]) -> PullRequest:
    if kind not in KEYS:
        raise RequestError(f"unknown key {kind!r} (study, accession or patient)")
    values: dict[str, str] = {}
    for value, where in found:
        value = value.strip()
        if any(c in value for c in _MATCHING):
            raise RequestError(
                f"{where}: a key with * ? or \\ would match other studies (wildcard or list "
                "matching); give exact values"
            )
        if value and value not in values:
            values[value] = where
    if not values:
        raise RequestError("nothing to pull: the request holds no value")
    return PullRequest(kind, tuple(values), tuple(values.values()))


def run_id(request: PullRequest, keyed_hash: KeyedHash) -> str:
    """The same request (kind and set of values, in any order) is the same run: a keyed
    hash, so the id says nothing of the values to whoever lacks the site secret."""
    text = "\0".join(["pull-request/v1", request.kind, *sorted(request.values)])
    return keyed_hash(text, 16)
