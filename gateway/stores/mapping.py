"""The sealed pseudonym mapping (`storage_dir/mapping.db`): the gateway writes, cannot read.

Each original identifier is sealed to the re-identification public key (hybrid encryption:
an ephemeral X25519 key agreement, HKDF-SHA256, ChaCha20-Poly1305), so the gateway host —
its site secret, configuration and this database together — holds nothing that opens a
record; only `dicom-gateway reidentify` with the private key does. Pseudonyms are not
secret (they are in every forwarded instance), so they are stored in clear as the lookup
key, with the pseudonym of the parent record (instance -> series -> study -> patient) so
that one study or one patient can be found whole.

Several worker processes write at once: SQLite in WAL mode with a busy timeout, one short
IMMEDIATE transaction per instance, `INSERT OR IGNORE` (a pseudonym always stands for the
same original under one site secret, so the first record is as good as any). This module
is a store: it imports only leaves, the standard library and `cryptography`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.keys.reid_keys import public_key_fingerprint

__all__ = [
    "KINDS",
    "MAPPING_FILENAME",
    "PATIENT_FIELDS",
    "DamagedRecordError",
    "InstanceOriginals",
    "MappingEntry",
    "MappingError",
    "MappingReader",
    "MappingUnavailableError",
    "MappingWriter",
    "PseudonymNotFoundError",
    "WrongKeyError",
]

MAPPING_FILENAME = "mapping.db"

# What each kind maps (the pseudonym -> the sealed original):
#   patient     patient pseudonym          -> JSON of PATIENT_FIELDS
#   date_shift  patient pseudonym          -> days subtracted from the patient's dates
#   study       pseudonymous Study UID     -> original Study Instance UID    (parent: patient)
#   accession   pseudonymous Study UID     -> original Accession Number      (parent: patient)
#   series      pseudonymous Series UID    -> original Series Instance UID   (parent: study)
#   instance    pseudonymous SOP Inst. UID -> original SOP Instance UID      (parent: series)
KINDS = ("patient", "date_shift", "study", "accession", "series", "instance")
PATIENT_FIELDS = ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate")

_VERSION = b"dicom-gateway/mapping/v1"
_PAD_BLOCK = 32  # plaintexts are padded to a multiple of this: lengths say little
_BUSY_TIMEOUT_MS = 30_000
_REMEMBER = 100_000  # (kind, pseudonym) pairs a writer remembers as already recorded

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS mapping (
    kind      TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    parent    TEXT,           -- pseudonym of the parent record (not secret)
    key_id    TEXT NOT NULL,  -- fingerprint of the public key the record is sealed to
    ephemeral BLOB NOT NULL,  -- the sender's one-time X25519 public key (32 bytes)
    nonce     BLOB NOT NULL,
    sealed    BLOB NOT NULL,  -- ChaCha20-Poly1305 ciphertext and tag of the padded original
    created   TEXT NOT NULL,
    PRIMARY KEY (kind, pseudonym)
) WITHOUT ROWID
""",
    "CREATE INDEX IF NOT EXISTS mapping_by_parent ON mapping (parent, kind)",
)


class MappingError(Exception):
    """The mapping store cannot be used; messages name files and pseudonyms, never originals."""


class MappingUnavailableError(MappingError, OSError):
    """The store cannot be written now (locked too long, disk full, I/O error).

    An OSError too, so callers that keep an input and retry on environment trouble treat it
    the same way: an instance must not leave without its mapping record.
    """


class WrongKeyError(MappingError):
    """The private key is not the one the records were sealed to."""


class DamagedRecordError(MappingError):
    """The key is right but a record fails authentication: altered, moved or corrupted."""


class PseudonymNotFoundError(MappingError, LookupError):
    """No record for this pseudonym (as opposed to a record the key cannot open)."""


@dataclass(frozen=True)
class MappingEntry:
    """One record to seal: `original` is secret; `kind`, `pseudonym` and `parent` are not."""

    kind: str
    pseudonym: str
    original: str
    parent: str | None = None


class DeidIdentity(Protocol):
    """The pseudonyms the engine gave one instance (`gateway.deid.engine.DeidResult`)."""

    patient_pseudonym: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    date_shift_days: int | None


@dataclass(frozen=True)
class InstanceOriginals:
    """An instance's original identifiers, captured before the engine rewrites it in place."""

    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    accession_number: str

    @classmethod
    def from_dataset(cls, ds: Any) -> InstanceOriginals:
        """Read them from a pydicom Dataset (anything with `.get(keyword, default)`)."""

        def text(keyword: str) -> str:
            value = ds.get(keyword, "")
            return str(value).strip() if value is not None else ""

        return cls(
            patient_id=text("PatientID"),
            issuer_of_patient_id=text("IssuerOfPatientID"),
            patient_name=text("PatientName"),
            patient_birth_date=text("PatientBirthDate"),
            study_uid=text("StudyInstanceUID"),
            series_uid=text("SeriesInstanceUID"),
            sop_instance_uid=text("SOPInstanceUID"),
            accession_number=text("AccessionNumber"),
        )

    def patient_json(self) -> str:
        """The `patient` record's original: the fields that identify the patient."""
        values = (
            self.patient_id,
            self.issuer_of_patient_id,
            self.patient_name,
            self.patient_birth_date,
        )
        return json.dumps(dict(zip(PATIENT_FIELDS, values, strict=True)), ensure_ascii=False)

    def entries(self, identity: DeidIdentity) -> list[MappingEntry]:
        """The records for one de-identified instance, from the patient down."""
        patient = identity.patient_pseudonym
        study = identity.study_uid
        series = identity.series_uid
        found = [MappingEntry("patient", patient, self.patient_json())]
        if identity.date_shift_days is not None:
            found.append(MappingEntry("date_shift", patient, str(identity.date_shift_days)))
        if study:
            found.append(MappingEntry("study", study, self.study_uid, patient))
            if self.accession_number:
                found.append(MappingEntry("accession", study, self.accession_number, patient))
        if series:
            found.append(MappingEntry("series", series, self.series_uid, study or None))
        if identity.sop_instance_uid:
            found.append(
                MappingEntry(
                    "instance", identity.sop_instance_uid, self.sop_instance_uid, series or None
                )
            )
        return found


# -- sealing ------------------------------------------------------------------------------


def _framed(*parts: str | bytes | None) -> bytes:
    """Length-prefixed concatenation: ("ab", "c") and ("a", "bc") never frame alike."""
    out = bytearray(_VERSION)
    for part in parts:
        if part is None:
            out += b"\xff\xff\xff\xff"
            continue
        data = part.encode("utf-8") if isinstance(part, str) else part
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _record_key(
    shared: bytes, kind: str, pseudonym: str, ephemeral: bytes, recipient: bytes
) -> bytes:
    """HKDF-SHA256 of the X25519 shared secret, bound to the record and to both keys.

    Binding both public keys rules out a key-substitution mix-up; binding kind and
    pseudonym gives every record its own key even if an ephemeral key were ever reused.
    """
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + recipient,
        info=_framed("key", kind, pseudonym),
    ).derive(shared)


def _associated_data(kind: str, pseudonym: str, parent: str | None) -> bytes:
    """What a record is about: a sealed original moved to another row fails to open."""
    return _framed("record", kind, pseudonym, parent)


def _pad(data: bytes) -> bytes:
    """ISO/IEC 7816-4 padding (0x80 then zeros) to a multiple of _PAD_BLOCK."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % _PAD_BLOCK)


def _unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not stripped.endswith(b"\x80"):
        raise ValueError("bad padding")
    return stripped[:-1]


def _seal(
    recipient: X25519PublicKey, recipient_raw: bytes, entry: MappingEntry
) -> tuple[bytes, bytes, bytes]:
    """(ephemeral public key, nonce, ciphertext) of one original."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    shared = ephemeral.exchange(recipient)
    key = _record_key(shared, entry.kind, entry.pseudonym, ephemeral_raw, recipient_raw)
    nonce = secrets.token_bytes(12)
    sealed = ChaCha20Poly1305(key).encrypt(
        nonce,
        _pad(entry.original.encode("utf-8")),
        _associated_data(entry.kind, entry.pseudonym, entry.parent),
    )
    return ephemeral_raw, nonce, sealed


# -- the database ---------------------------------------------------------------------------


def _connect(db_path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with a busy timeout."""
    if read_only:
        if not db_path.is_file():
            raise MappingError(f"no mapping store at {db_path}")
        uri = f"{db_path.resolve().as_uri()}?mode=ro"
        connection = sqlite3.connect(
            uri, uri=True, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
    else:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Owner-only from the first byte; SQLite gives -wal and -shm the same mode.
            os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise MappingUnavailableError(
                f"cannot create mapping store {db_path}: {exc.strerror}"
            ) from None
        connection = sqlite3.connect(db_path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return connection


def _prepare_for_writing(connection: sqlite3.Connection) -> None:
    """WAL mode and the schema, safe to run from several processes starting at once."""
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError:
            # Changing the journal mode can report "locked" at once, whatever the timeout.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    # FULL: a committed record survives power loss, so no instance leaves without one.
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


class MappingWriter:
    """Seals originals to the re-identification public key; it cannot open what it wrote.

    One writer per process (the connection is opened lazily and reopened after a fork).
    Pairs already recorded by this writer are remembered, so the patient, study and series
    records a study repeats on every instance cost nothing after the first.
    """

    def __init__(self, db_path: Path, public_key: X25519PublicKey) -> None:
        if not isinstance(public_key, X25519PublicKey):
            raise TypeError("MappingWriter needs an X25519 public key")
        self.db_path = Path(db_path)
        self._recipient = public_key
        self._recipient_raw = _raw(public_key)
        self.key_id = public_key_fingerprint(public_key)
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._recorded: set[tuple[str, str]] = set()

    def _db(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():
            # A connection inherited through fork() must not be used (SQLite docs, "How To
            # Corrupt"): drop it without closing and open our own.
            self._connection = None
            try:
                connection = _connect(self.db_path, read_only=False)
                _prepare_for_writing(connection)
            except sqlite3.Error as exc:
                raise MappingUnavailableError(
                    f"cannot open mapping store {self.db_path}: {exc}"
                ) from None
            self._connection = connection
            self._pid = os.getpid()
            self._recorded.clear()
        return self._connection

    def record(
        self, kind: str, pseudonym: str, original: str, *, parent: str | None = None
    ) -> bool:
        """Seal one original under (kind, pseudonym); True if this call stored it."""
        return self.record_many([MappingEntry(kind, pseudonym, original, parent)]) == 1

    def record_instance(self, originals: InstanceOriginals, identity: DeidIdentity) -> int:
        """Seal every record of one de-identified instance in one transaction.

        Call it before the instance is written anywhere it could leave from; returns how
        many records were new to this writer.
        """
        return self.record_many(originals.entries(identity))

    def record_many(self, entries: Iterable[MappingEntry]) -> int:
        """Seal the entries this writer has not recorded yet, in one durable transaction."""
        fresh: dict[tuple[str, str], MappingEntry] = {}
        for entry in entries:
            if entry.kind not in KINDS:
                raise ValueError(f"unknown mapping kind {entry.kind!r}; expected one of {KINDS}")
            if not entry.pseudonym:
                raise ValueError(f"empty pseudonym for a {entry.kind} record")
            pair = (entry.kind, entry.pseudonym)
            if pair not in self._recorded:
                fresh.setdefault(pair, entry)
        if not fresh:
            return 0
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rows = []
        for entry in fresh.values():
            ephemeral, nonce, sealed = _seal(self._recipient, self._recipient_raw, entry)
            rows.append(
                (
                    entry.kind,
                    entry.pseudonym,
                    entry.parent,
                    self.key_id,
                    ephemeral,
                    nonce,
                    sealed,
                    created,
                )
            )
        connection = self._db()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    "INSERT OR IGNORE INTO mapping (kind, pseudonym, parent, key_id, ephemeral,"
                    " nonce, sealed, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise MappingUnavailableError(
                f"cannot write mapping store {self.db_path}: {exc}"
            ) from None
        if len(self._recorded) + len(fresh) > _REMEMBER:
            self._recorded.clear()  # only a cache: INSERT OR IGNORE keeps the store right
        self._recorded.update(fresh)
        return len(fresh)

    def close(self) -> None:
        """Close this process's connection (a later record opens a new one)."""
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    def __enter__(self) -> MappingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MappingReader:
    """Opens sealed records with the re-identification private key (off the gateway host).

    "No such pseudonym" (None, or PseudonymNotFoundError) is kept apart from "this key
    cannot open it" (WrongKeyError) and "the record was altered" (DamagedRecordError).
    """

    def __init__(self, db_path: Path, private_key: X25519PrivateKey) -> None:
        if not isinstance(private_key, X25519PrivateKey):
            raise TypeError("MappingReader needs an X25519 private key")
        self.db_path = Path(db_path)
        self._key = private_key
        self._recipient_raw = _raw(private_key.public_key())
        self.key_id = public_key_fingerprint(private_key.public_key())
        try:
            self._connection = _connect(self.db_path, read_only=True)
            self._connection.execute("SELECT 1 FROM mapping LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise MappingError(f"cannot read mapping store {self.db_path}: {exc}") from None

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> MappingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self, row: tuple[Any, ...]) -> str:
        kind, pseudonym, parent, key_id, ephemeral, nonce, sealed = row
        if key_id != self.key_id:
            raise WrongKeyError(
                f"the private key does not open this mapping: the {kind} record {pseudonym} "
                f"is sealed to the public key {key_id}, and this private key belongs to "
                f"{self.key_id}; use the private key made with that public key"
            )
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(bytes(ephemeral)))
            key = _record_key(shared, kind, pseudonym, bytes(ephemeral), self._recipient_raw)
            padded = ChaCha20Poly1305(key).decrypt(
                bytes(nonce), bytes(sealed), _associated_data(kind, pseudonym, parent)
            )
            return _unpad(padded).decode("utf-8")
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise DamagedRecordError(
                f"the {kind} record {pseudonym} in {self.db_path} fails authentication: it was "
                "altered, moved to another pseudonym or corrupted"
            ) from None

    def _rows(self, where: str, *params: str) -> list[tuple[Any, ...]]:
        try:
            return self._connection.execute(
                "SELECT kind, pseudonym, parent, key_id, ephemeral, nonce, sealed FROM mapping "
                f"WHERE {where} ORDER BY pseudonym",
                params,
            ).fetchall()
        except sqlite3.Error as exc:
            raise MappingError(f"cannot read mapping store {self.db_path}: {exc}") from None

    def lookup(self, kind: str, pseudonym: str) -> str | None:
        """The original behind one pseudonym, or None if the store has no such record."""
        if kind not in KINDS:
            raise ValueError(f"unknown mapping kind {kind!r}; expected one of {KINDS}")
        rows = self._rows("kind = ? AND pseudonym = ?", kind, pseudonym)
        return self._open(rows[0]) if rows else None

    def _children(self, kind: str, parent: str) -> list[tuple[str, str]]:
        """(pseudonym, original) of every `kind` record under `parent`."""
        return [
            (row[1], self._open(row)) for row in self._rows("parent = ? AND kind = ?", parent, kind)
        ]

    def _patient_only(self, pseudo_id: str) -> dict[str, Any]:
        raw = self.lookup("patient", pseudo_id)
        shift = self.lookup("date_shift", pseudo_id)
        fields: dict[str, str] | None = None
        if raw is not None:
            try:
                fields = json.loads(raw)
            except json.JSONDecodeError:
                raise DamagedRecordError(
                    f"the patient record {pseudo_id} does not hold patient fields"
                ) from None
        return {
            "pseudonym": pseudo_id,
            "original": fields,
            "date_shift_days": int(shift) if shift is not None else None,
        }

    def patient(self, pseudo_id: str) -> dict[str, Any]:
        """The patient's original fields, date shift, and studies (with their originals).

        `{"pseudonym", "original": {PatientID, IssuerOfPatientID, PatientName,
        PatientBirthDate} | None, "date_shift_days": int | None, "studies": [{"pseudonym",
        "StudyInstanceUID", "AccessionNumber"}]}`; PseudonymNotFoundError if nothing is known.
        """
        found = self._patient_only(pseudo_id)
        studies = [
            {
                "pseudonym": pseudo_uid,
                "StudyInstanceUID": original,
                "AccessionNumber": self.lookup("accession", pseudo_uid),
            }
            for pseudo_uid, original in self._children("study", pseudo_id)
        ]
        if found["original"] is None and found["date_shift_days"] is None and not studies:
            raise PseudonymNotFoundError(f"no patient with the pseudonym {pseudo_id}")
        found["studies"] = studies
        return found

    def study(self, pseudo_uid: str) -> dict[str, Any]:
        """The study's original UID and accession, its patient, and every series/instance.

        `{"pseudonym", "StudyInstanceUID", "AccessionNumber", "patient": {as patient(),
        without studies} | None, "series": [{"pseudonym", "SeriesInstanceUID", "instances":
        [{"pseudonym", "SOPInstanceUID"}]}]}`; PseudonymNotFoundError if nothing is known.
        """
        rows = self._rows("kind = 'study' AND pseudonym = ?", pseudo_uid)
        series = [
            {
                "pseudonym": pseudo_series,
                "SeriesInstanceUID": original,
                "instances": [
                    {"pseudonym": pseudo_sop, "SOPInstanceUID": sop}
                    for pseudo_sop, sop in self._children("instance", pseudo_series)
                ],
            }
            for pseudo_series, original in self._children("series", pseudo_uid)
        ]
        if not rows and not series:
            raise PseudonymNotFoundError(f"no study with the pseudonymous UID {pseudo_uid}")
        patient = None
        if rows:
            parent = rows[0][2]
            patient = self._patient_only(parent) if parent else None
        return {
            "pseudonym": pseudo_uid,
            "StudyInstanceUID": self._open(rows[0]) if rows else None,
            "AccessionNumber": self.lookup("accession", pseudo_uid),
            "patient": patient,
            "series": series,
        }
