"""Opens the sealed pseudonym mapping with the re-identification private key.

Used only by `dicom-gateway reidentify` (`gateway.reidentify`), off the gateway host; the
running service imports `mapping_writer` alone, so the code that opens a record is not even
loaded where pseudonyms are issued. Record types and the sealing format are in
`mapping_records`. The records are read from the SQLite file or, with `mapping.url`, from
the shared PostgreSQL (`mapping_postgres`, in a read-only session).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gateway.keys.reid_keys import public_key_fingerprint
from gateway.stores.mapping_postgres import PostgresMapping
from gateway.stores.mapping_records import (
    BUSY_TIMEOUT_MS,
    KINDS,
    DamagedRecordError,
    MappingError,
    PseudonymNotFoundError,
    WrongKeyError,
    associated_data,
    raw_public_key,
    record_key,
    unpad,
)

__all__ = ["MappingReader"]


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection with a busy timeout (the workers may be writing)."""
    if not db_path.is_file():
        raise MappingError(f"no mapping store at {db_path}")
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    connection = sqlite3.connect(
        uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
    )
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


class MappingReader:
    """Opens sealed records with the re-identification private key (off the gateway host).

    "No such pseudonym" (None, or PseudonymNotFoundError) is kept apart from "this key
    cannot open it" (WrongKeyError) and "the record was altered" (DamagedRecordError).
    """

    def __init__(self, store: Path | PostgresMapping, private_key: X25519PrivateKey) -> None:
        """`store`: the SQLite file, or the shared database (`mapping.url`)."""
        if not isinstance(private_key, X25519PrivateKey):
            raise TypeError("MappingReader needs an X25519 private key")
        self._key = private_key
        self._recipient_raw = raw_public_key(private_key.public_key())
        self.key_id = public_key_fingerprint(private_key.public_key())
        self._shared = store if isinstance(store, PostgresMapping) else None
        self.db_path: Path | str = Path(store) if self._shared is None else self._shared.shown
        if self._shared is not None:
            self._shared.select_records("kind = ? AND pseudonym = ?", ("", ""))  # reachable
            return
        try:
            self._connection = _connect_read_only(self.db_path)
            self._connection.execute("SELECT 1 FROM mapping LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise MappingError(f"cannot read mapping store {self.db_path}: {exc}") from None

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()
        else:
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
            key = record_key(shared, kind, pseudonym, bytes(ephemeral), self._recipient_raw)
            padded = ChaCha20Poly1305(key).decrypt(
                bytes(nonce), bytes(sealed), associated_data(kind, pseudonym, parent)
            )
            return unpad(padded).decode("utf-8")
        except (InvalidTag, ValueError, UnicodeDecodeError):
            raise DamagedRecordError(
                f"the {kind} record {pseudonym} in {self.db_path} fails authentication: it was "
                "altered, moved to another pseudonym or corrupted"
            ) from None

    def _rows(self, where: str, *params: str) -> list[tuple[Any, ...]]:
        if self._shared is not None:
            return self._shared.select_records(where, params)
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
