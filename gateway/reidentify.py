"""`dicom-gateway reidentify`: open the sealed mapping with the private key, and say who did.

Re-identification is the one deliberate exception to "no patient data leaves": it is done
by a person holding the private key, for pseudonyms they name, and every attempt is audited
(who, when, which pseudonyms, the outcome) before any answer is shown — never the answer
itself. If the audit record cannot be written, nothing is shown.

CSV convention: the header names the pseudonym columns. A column named `PatientID` (or the
name given as `id_column`, as in `dicom-gateway csv --id-column`) holds patient pseudonyms;
`StudyInstanceUID`, `SeriesInstanceUID` and `SOPInstanceUID` hold pseudonymous UIDs. Every
row is kept as it is, with columns appended for each one found:
`original_PatientID`, `original_IssuerOfPatientID`, `original_PatientName`,
`original_PatientBirthDate`, `date_shift_days`; `original_StudyInstanceUID`,
`original_AccessionNumber`; `original_SeriesInstanceUID`; `original_SOPInstanceUID`.
A pseudonym the store does not know leaves its cells empty.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway.keys.reid_keys import PassphraseRequiredError, load_private_key
from gateway.stores.audit import AuditLog
from gateway.stores.mapping_postgres import PostgresMapping
from gateway.stores.mapping_reader import MappingReader
from gateway.stores.mapping_records import (
    PATIENT_FIELDS,
    DamagedRecordError,
    PseudonymNotFoundError,
    WrongKeyError,
)

__all__ = ["CSV_UID_COLUMNS", "ReidentifyError", "reidentify"]

AUDIT_EVENT = "reidentify"

# Pseudonymous UID columns a CSV may have, and the mapping kind behind each.
CSV_UID_COLUMNS = {
    "StudyInstanceUID": "study",
    "SeriesInstanceUID": "series",
    "SOPInstanceUID": "instance",
}


class ReidentifyError(Exception):
    """A re-identification request that cannot be answered (bad CSV, bad arguments)."""


def reidentify(
    mapping_db: Path | PostgresMapping,
    private_key_path: Path,
    *,
    patient: str | None = None,
    study: str | None = None,
    csv_path: Path | None = None,
    id_column: str = "PatientID",
    csv_output: Path | None = None,
    audit: AuditLog,
    who: str | None = None,
    ask_passphrase: Callable[[], str] | None = None,
) -> str:
    """Answer one request (exactly one of `patient`, `study`, `csv_path`) as text to print.

    For a CSV the text is the CSV with original columns added, or, with `csv_output`, a
    one-line summary after writing that file (0600, never overwriting). `ask_passphrase` is
    called only if the private key is encrypted. Raises ReidKeyError (key file),
    MappingError (WrongKeyError, DamagedRecordError, PseudonymNotFoundError) or
    ReidentifyError; each attempt, failed or not, is audited first, with the operating
    system's account of this process (`who` defaults to its name; `uid` is always recorded)
    and, once answered, how many sealed records were disclosed.
    """
    chosen = [
        name
        for name, value in (("patient", patient), ("study", study), ("csv", csv_path))
        if value is not None
    ]
    if len(chosen) != 1:
        raise ReidentifyError("give exactly one of --patient, --study or --csv")
    mode = chosen[0]
    if csv_output is not None:
        if csv_path is None:
            raise ReidentifyError("an output file is only for --csv")
        if Path(csv_output).exists():
            raise ReidentifyError(f"refusing to overwrite {csv_output}")
    uid = os.getuid()
    fields: dict[str, Any] = {
        "who": who if who is not None else os_account(uid),
        "uid": uid,
        "mode": mode,
        "mapping": mapping_db.shown if isinstance(mapping_db, PostgresMapping) else str(mapping_db),
    }
    try:
        key = _load_key(private_key_path, ask_passphrase)
        store = mapping_db if isinstance(mapping_db, PostgresMapping) else Path(mapping_db)
        with MappingReader(store, key) as reader:
            fields["key_id"] = reader.key_id
            if patient is not None:
                fields["pseudonyms"] = {"patient": [patient]}
                found = reader.patient(patient)
                text, fields["disclosed"] = _format_patient(found), _patient_records(found)
            elif study is not None:
                fields["pseudonyms"] = {"study": [study]}
                found = reader.study(study)
                text, fields["disclosed"] = _format_study(found), _study_records(found)
            else:
                assert csv_path is not None
                looked_up: dict[str, list[str]] = {}  # filled as it goes: audited on failure
                fields["pseudonyms"] = looked_up
                text, counts = _reidentify_csv(reader, Path(csv_path), id_column, looked_up)
                fields.update(counts)
    except PseudonymNotFoundError:
        audit.record(AUDIT_EVENT, **fields, outcome="not-found")
        raise
    except WrongKeyError:
        audit.record(AUDIT_EVENT, **fields, outcome="wrong-key")
        raise
    except DamagedRecordError:
        audit.record(AUDIT_EVENT, **fields, outcome="damaged-record")
        raise
    except Exception as exc:
        audit.record(AUDIT_EVENT, **fields, outcome="failed", error=type(exc).__name__)
        raise
    audit.record(AUDIT_EVENT, **fields, outcome="answered")  # before the answer is shown
    if csv_output is not None and csv_path is not None:
        _write_new(Path(csv_output), text)
        return (
            f"wrote {csv_output}: {fields['rows']} rows, "
            f"{fields['not_found']} pseudonyms not found\n"
        )
    return text


def os_account(uid: int) -> str:
    """The account name the system holds for `uid`; LOGNAME and USER are not asked, since
    whoever runs the command can set them to anything."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _patient_records(found: dict[str, Any]) -> int:
    """Sealed records whose originals an answer about a patient shows."""
    own = bool(found.get("original")) + (found.get("date_shift_days") is not None)
    return own + len(found.get("studies", []))


def _study_records(found: dict[str, Any]) -> int:
    """Sealed records whose originals an answer about a study shows."""
    count = bool(found["StudyInstanceUID"]) + bool(found["AccessionNumber"])
    if found["patient"] is not None:
        count += bool(found["patient"].get("original"))
        count += found["patient"].get("date_shift_days") is not None
    for series in found["series"]:
        count += 1 + len(series["instances"])
    return count


def _load_key(path: Path, ask_passphrase: Callable[[], str] | None) -> X25519PrivateKey:
    try:
        return load_private_key(Path(path))
    except PassphraseRequiredError:
        if ask_passphrase is None:
            raise
        return load_private_key(Path(path), ask_passphrase())


# -- text -----------------------------------------------------------------------------------


def _patient_lines(found: dict[str, Any]) -> list[str]:
    lines = [f"patient {found['pseudonym']}"]
    original = found.get("original")
    if original:
        labels = ("Patient ID", "Issuer of Patient ID", "Patient's Name", "Birth Date")
        lines += [
            f"  {label + ':':<22}{original.get(name, '')}"
            for label, name in zip(labels, PATIENT_FIELDS, strict=True)
        ]
    else:
        lines.append("  (no patient record)")
    shift = found.get("date_shift_days")
    if shift is not None:
        lines.append(
            f"  {'date shift:':<22}{shift} days (pseudonymised dates are this much earlier)"
        )
    return lines


def _format_patient(found: dict[str, Any]) -> str:
    lines = _patient_lines(found)
    studies = found.get("studies", [])
    lines.append(f"  studies ({len(studies)}):")
    for entry in studies:
        accession = entry["AccessionNumber"]
        lines.append(f"    {entry['pseudonym']} -> {entry['StudyInstanceUID']}")
        if accession:
            lines.append(f"      accession number: {accession}")
    return "\n".join(lines) + "\n"


def _format_study(found: dict[str, Any]) -> str:
    lines = [f"study {found['pseudonym']} -> {found['StudyInstanceUID'] or '(no study record)'}"]
    if found["AccessionNumber"]:
        lines.append(f"  accession number: {found['AccessionNumber']}")
    if found["patient"] is not None:
        lines += ["  " + line for line in _patient_lines(found["patient"])]
    lines.append(f"  series ({len(found['series'])}):")
    for series in found["series"]:
        lines.append(f"    {series['pseudonym']} -> {series['SeriesInstanceUID']}")
        lines.append(f"      instances ({len(series['instances'])}):")
        lines += [
            f"        {instance['pseudonym']} -> {instance['SOPInstanceUID']}"
            for instance in series["instances"]
        ]
    return "\n".join(lines) + "\n"


# -- CSV --------------------------------------------------------------------------------


def _reidentify_csv(
    reader: MappingReader, path: Path, id_column: str, looked_up: dict[str, list[str]]
) -> tuple[str, dict[str, Any]]:
    """The CSV text with original columns, and counts; `looked_up` gets the pseudonyms by kind."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReidentifyError(f"cannot read {path}: {exc.strerror}") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReidentifyError(f"{path} is not UTF-8 text") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            content[:8192], delimiters=",;\t|"
        )
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(content, newline=""), dialect))
    if not rows:
        raise ReidentifyError(f"{path} is empty: expected a header row")
    header = [name.strip() for name in rows[0]]
    columns: list[tuple[int, str]] = []  # (index, kind)
    for index, name in enumerate(header):
        if name == id_column:
            columns.append((index, "patient"))
        elif name in CSV_UID_COLUMNS:
            columns.append((index, CSV_UID_COLUMNS[name]))
    if not columns:
        expected = ", ".join([id_column, *CSV_UID_COLUMNS])
        raise ReidentifyError(
            f"{path} has no pseudonym column: the header must name one of {expected} "
            "(or give the patient column's name as the ID column)"
        )
    added: list[str] = []
    for _, kind in columns:
        added += _added_columns(kind)
    out = io.StringIO()
    writer = csv.writer(out, dialect, lineterminator="\n")
    writer.writerow([*rows[0], *added])
    cache: dict[tuple[str, str], list[str]] = {}
    not_found = 0
    for row in rows[1:]:
        extra: list[str] = []
        for index, kind in columns:
            pseudonym = row[index].strip() if index < len(row) else ""
            if not pseudonym:
                extra += [""] * len(_added_columns(kind))
                continue
            if (kind, pseudonym) not in cache:
                looked_up.setdefault(kind, []).append(pseudonym)
                cache[(kind, pseudonym)] = _originals(reader, kind, pseudonym)
                if not any(cache[(kind, pseudonym)]):
                    not_found += 1
            extra += cache[(kind, pseudonym)]
        writer.writerow([*row, *extra])
    counts = {
        "rows": len(rows) - 1,
        "not_found": not_found,
        "disclosed": sum(1 for originals in cache.values() if any(originals)),
        "csv_sha256": hashlib.sha256(raw).hexdigest(),  # which file, without its name
    }
    return out.getvalue(), counts


def _added_columns(kind: str) -> list[str]:
    if kind == "patient":
        return [f"original_{name}" for name in PATIENT_FIELDS] + ["date_shift_days"]
    if kind == "study":
        return ["original_StudyInstanceUID", "original_AccessionNumber"]
    if kind == "series":
        return ["original_SeriesInstanceUID"]
    return ["original_SOPInstanceUID"]


def _originals(reader: MappingReader, kind: str, pseudonym: str) -> list[str]:
    """The values of `_added_columns(kind)` for one pseudonym (empty strings if unknown)."""
    if kind == "patient":
        try:
            found = reader.patient(pseudonym)
        except PseudonymNotFoundError:
            return [""] * (len(PATIENT_FIELDS) + 1)
        original = found["original"] or {}
        shift = found["date_shift_days"]
        return [original.get(name, "") for name in PATIENT_FIELDS] + [
            "" if shift is None else str(shift)
        ]
    if kind == "study":
        return [
            reader.lookup("study", pseudonym) or "",
            reader.lookup("accession", pseudonym) or "",
        ]
    return [reader.lookup(kind, pseudonym) or ""]


def _write_new(path: Path, text: str) -> None:
    """Write identified data owner-only, and never over an existing file."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise ReidentifyError(f"refusing to overwrite {path}") from None
    except OSError as exc:
        raise ReidentifyError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
