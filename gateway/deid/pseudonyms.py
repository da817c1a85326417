"""Deterministic pseudonyms from a keyed HMAC of the site secret.

Every pseudonym is HMAC-SHA256(site secret, domain label || value): the same input gives the
same output on every run, process and machine that holds the secret, with no shared state,
and nobody without the secret can recompute or invert it. Domain labels keep the uses apart
(a UID and a patient ID with the same text never give related outputs).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

# PS3.5 B.2: a UID under 2.25 is the decimal form of a 128-bit UUID. We mark it as an
# RFC 9562 version 8 ("custom") UUID so it never collides with a random (v4) one.
_UUID_VERSION = 8

# Date shifts (Retain Longitudinal Temporal Information with Modified Dates, PS3.15 E.3.6):
# whole days, always into the past, between one and ten years; never within YEAR_MARGIN days
# of a whole number of years, which would keep each date's day and month ("28 May 2009" as
# "28 May 2000": a birthday told).
MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3652
YEAR_MARGIN = 15
_YEAR = 365.2425


class Pseudonyms:
    """All pseudonyms of one site: UIDs, patient identity, date shift, short tokens."""

    def __init__(self, secret: bytes, site_id: str) -> None:
        if len(secret) < 16:
            raise ValueError("site secret is shorter than 16 bytes")
        self._secret = secret
        self._site_id = site_id
        self.site_tag = self._base32(self._digest(b"site", site_id))[:6]
        # Bound caches per instance: UIDs repeat across a study (study, series, frame of ref).
        self.uid = lru_cache(maxsize=65536)(self._uid)  # type: ignore[method-assign]

    def _digest(self, domain: bytes, value: str) -> bytes:
        message = domain + b"\x00" + self._site_id.encode() + b"\x00" + value.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    @staticmethod
    def _base32(digest: bytes) -> str:
        return base64.b32encode(digest).decode("ascii").rstrip("=")

    def _uid(self, uid: str) -> str:
        """`2.25.<decimal>` for an original UID (at most 44 characters, PS3.5 9.1)."""
        value = int.from_bytes(self._digest(b"uid", uid.strip())[:16], "big")
        value &= ~(0xF << 76)
        value |= _UUID_VERSION << 76  # version nibble
        value &= ~(0x3 << 62)
        value |= 0x2 << 62  # RFC 4122/9562 variant
        return f"2.25.{value}"

    def patient_id(self, patient_key: str) -> str:
        """Site-scoped patient pseudonym, valid as LO (Patient ID) and as PN (Patient's Name)."""
        return f"{self.site_tag}-{self._base32(self._digest(b'patient', patient_key))[:16]}"

    def date_shift_days(self, patient_key: str) -> int:
        """Days to subtract from every date of this patient (same for all their studies)."""
        span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
        number = int.from_bytes(self._digest(b"date-shift", patient_key)[:8], "big")
        days = MIN_SHIFT_DAYS + number % span
        off = days % _YEAR
        if min(off, _YEAR - off) < YEAR_MARGIN:  # move 3 margins away, inside the range
            step = 3 * YEAR_MARGIN
            days += step if days + step <= MAX_SHIFT_DAYS else -step
        return days

    def fake_digest(self, fake_class: str, value: str) -> bytes:
        """Keyed bytes that pick a fake value of `fake_class` for `value` (see fakes.py)."""
        return self._digest(b"fake:" + fake_class.encode(), value)

    def token(self, kind: str, value: str, length: int) -> str:
        """A short upper-case token (A-Z, 2-7) standing for `value`, e.g. a cleaned AE title."""
        return self._base32(self._digest(b"token:" + kind.encode(), value))[:length]


def patient_key(patient_id: str, issuer: str, name: str, birth_date: str, study_uid: str) -> str:
    """What identifies a patient for pseudonyms and date shifts.

    Patient ID qualified by its issuer when there is one; a file without a Patient ID falls
    back to name and birth date, and a file with none of them to its study, so that at least
    one study stays consistent.
    """
    if patient_id.strip():
        return f"id\x00{issuer.strip()}\x00{patient_id.strip()}"
    if name.strip() or birth_date.strip():
        return f"name\x00{name.strip().upper()}\x00{birth_date.strip()}"
    return f"study\x00{study_uid.strip()}"
