"""What the sealed pseudonym mapping (`storage_dir/mapping.db`) holds, and how it is sealed.

Each original identifier is sealed to the re-identification public key (hybrid encryption:
an ephemeral X25519 key agreement, HKDF-SHA256, ChaCha20-Poly1305), so the gateway host —
its site secret, configuration and this database together — holds nothing that opens a
record; only `dicom-gateway reidentify` with the private key does. Pseudonyms are not
secret (they are in every forwarded instance), so they are stored in clear as the lookup
key, with the pseudonym of the parent record (instance -> series -> study -> patient) so
that one study or one patient can be found whole.

This module is what the writer (`mapping_writer`, in the service's workers) and the reader
(`mapping_reader`, in `reidentify` only) share: the schema, the record types, the errors and
the framing both sides of the cipher must agree on. It imports only leaves, the standard
library and `cryptography`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "BUSY_TIMEOUT_MS",
    "KINDS",
    "MAPPING_FILENAME",
    "PATIENT_FIELDS",
    "SCHEMA",
    "DamagedRecordError",
    "DeidIdentity",
    "InstanceOriginals",
    "MappingEntry",
    "MappingError",
    "MappingUnavailableError",
    "PseudonymNotFoundError",
    "WrongKeyError",
    "associated_data",
    "pad",
    "raw_public_key",
    "record_key",
    "unpad",
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

BUSY_TIMEOUT_MS = 30_000
_VERSION = b"dicom-gateway/mapping/v1"
_PAD_BLOCK = 32  # plaintexts are padded to a multiple of this: lengths say little

SCHEMA = (
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
        """The records for one de-identified instance, from the patient down.

        An instance the profile left without a Patient ID (none in the input, or a CTP
        script's `@remove()`) has no patient pseudonym to file a record under: its patient
        and date-shift records are left out, and its study record has no parent.
        """
        patient = identity.patient_pseudonym
        study = identity.study_uid
        series = identity.series_uid
        found = []
        if patient:
            found.append(MappingEntry("patient", patient, self.patient_json()))
            if identity.date_shift_days is not None:
                found.append(MappingEntry("date_shift", patient, str(identity.date_shift_days)))
        if study:
            found.append(MappingEntry("study", study, self.study_uid, patient or None))
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


# -- the sealing format both sides agree on ---------------------------------------------------


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


def raw_public_key(key: X25519PublicKey) -> bytes:
    """The 32 raw bytes of an X25519 public key, as bound into every record key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def record_key(
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


def associated_data(kind: str, pseudonym: str, parent: str | None) -> bytes:
    """What a record is about: a sealed original moved to another row fails to open."""
    return _framed("record", kind, pseudonym, parent)


def pad(data: bytes) -> bytes:
    """ISO/IEC 7816-4 padding (0x80 then zeros) to a multiple of _PAD_BLOCK."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % _PAD_BLOCK)


def unpad(data: bytes) -> bytes:
    """The inverse of `pad`; ValueError when the padding is not there."""
    stripped = data.rstrip(b"\x00")
    if not stripped.endswith(b"\x80"):
        raise ValueError("bad padding")
    return stripped[:-1]
