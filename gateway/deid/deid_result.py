"""What the engine answers for one instance, and the error it raises when it cannot."""

from __future__ import annotations

from dataclasses import dataclass, field


class DeidError(Exception):
    """An instance the engine cannot make safe; the message carries no patient data."""

    reason = "deid-failed"  # the quarantine's reason code (a subclass may name its own)


@dataclass
class DeidResult:
    """What the engine did to one instance: its new identity, and what it replaced."""

    patient_pseudonym: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    date_shift_days: int | None
    remapped_uids: set[str] = field(default_factory=set)
    # UIDs the profile left as they are somewhere in the output (K, Retain UIDs): public by
    # the profile's choice even where the same value was remapped elsewhere.
    kept_uids: set[str] = field(default_factory=set)
    # Values a rule of the profile computed (a fake, a fixed text, a CTP date or hash), by
    # tag path as the verify gate names it: an equal original there is the rule's doing.
    produced: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The Encapsulated Document the engine replaced by a placeholder, for the document
    # stage to clean (pipeline/instance.py); the pipeline drops it before the result leaves.
    document: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PatientIdentity:
    """A patient's pseudonym, and the days their dates move back (None: dates removed)."""

    pseudonym: str
    shift_days: int | None
