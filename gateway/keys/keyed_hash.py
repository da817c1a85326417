"""The one hash of an original value (a UID, an input's path) that the gateway writes down.

Logs, the audit trail and file names name originals by a hash, never in clear. An unkeyed
hash is no pseudonym: whoever holds the audit trail and the PACS hashes every UID there and
matches. So every such hash is an HMAC under a key derived from the site secret: stable for
the site (restarts, several gateways with one secret) and useless without the secret. The
key is derived, not the secret itself, so these hashes are never the pseudonyms' HMACs
(gateway.deid.pseudonyms) of the same value. This module is a leaf.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["KeyedHash"]

_PURPOSE = b"dicom-gateway/keyed-hash/v1"  # a new version means new hashes everywhere


class KeyedHash:
    """`keyed_hash(value, length=16)`: the value's hex stand-in (picklable: workers get one).
    The keyed state is made once and copied per value, and the last values' hashes are kept
    (a study's instances share their Study UID: the receive path hashes it for each)."""

    _REMEMBERED = 4096

    def __init__(self, site_secret: bytes) -> None:
        if not site_secret:
            raise ValueError("a keyed hash needs the site secret")
        self._key = hmac.new(site_secret, _PURPOSE, hashlib.sha256).digest()
        self._keyed: hmac.HMAC | None = None
        self._known: dict[str | bytes, str] = {}

    def __getstate__(self) -> dict[str, object]:
        return {"_key": self._key}  # HMAC objects do not pickle; remade on first use

    def __setstate__(self, state: dict[str, object]) -> None:
        self._key = state["_key"]  # type: ignore[assignment]
        self._keyed, self._known = None, {}

    def __call__(self, value: str | bytes, length: int = 16) -> str:
        """`length` hex digits (8 to 64) of HMAC-SHA-256(value); a str is UTF-8, and a
        path's undecodable bytes (surrogateescape) are kept as they were."""
        if not 8 <= length <= 64:
            raise ValueError(f"length must be 8 to 64 hex digits, not {length}")
        digest = self._known.get(value)
        if digest is None:
            data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
            if self._keyed is None:
                self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)
            keyed = self._keyed.copy()
            keyed.update(data)
            digest = keyed.hexdigest()
            if len(self._known) >= self._REMEMBERED:
                self._known.clear()
            self._known[value] = digest
        return digest[:length]

    def __repr__(self) -> str:
        return "KeyedHash(<derived from the site secret>)"
