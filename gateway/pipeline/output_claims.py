"""Which input holds each output SOP Instance UID of one run: two inputs never share one.

Two inputs with the same SOP Instance UID (a file exported twice, one instance in two
transfer syntaxes, a script that gives several instances one UID) de-identify to the same
output UID, and usually the same output path. The first to claim the UID writes it; a
later, different input is held in the quarantine as a `duplicate`, so the output keeps one
file per UID (what any destination can hold) and the summary counts what is on disk.

A claim is a symbolic link named by a hash of the output UID whose target is a hash of the
input's path (never a name or UID in clear; both keyed, gateway.keys.keyed_hash), never
followed, only read. Making one is one atomic call that fails if the name exists, so a
half-made claim is never seen; it used to be a file written aside and hard-linked into
place, four calls and a new file's inode per instance (the storage folder is a local
file system, as SQLite needs). The same input claiming again is its own earlier attempt (a
round processed again after a crash or a worker's death, whose output may still be in the
outbox): it is allowed to write again, and is not a duplicate. Claims need no fsync: after
a crash the service clears an interrupted round's outbox together with its claims, and an
offline run that dies is started again with a new claims folder.

The service keeps a round's claims in its outbox (`.claims/`, gone with it); `anonymize`
keeps a run's under the storage folder (never in the output, which holds only instances).
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.keys.keyed_hash import KeyedHash

__all__ = ["CLAIMS_DIR", "claim_output", "release_output"]

CLAIMS_DIR = ".claims"


# Under 60 bytes: ext4 keeps such a link's target in its inode, no data block.
_OWNER_LENGTH = 48


def _owner(source: Path, keyed_hash: KeyedHash) -> str:
    return keyed_hash(str(source.resolve()), _OWNER_LENGTH)


def _holder(claim: Path) -> str | None:
    """Whose `claim` is: the owner hash it holds (None: not a claim of this kind)."""
    try:
        return os.readlink(claim)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        return None  # not a link (a claim of an older version): nobody's


def _claim_path(claims: Path, uid: str, keyed_hash: KeyedHash) -> Path:
    return claims / keyed_hash(uid, 40)


def claim_output(claims: Path, uid: str, source: Path, keyed_hash: KeyedHash) -> bool:
    """Claim the output SOP Instance UID `uid` for `source` in this run: True if it is
    `source`'s to write (new, or claimed by `source` before), False if another input holds
    it. Raises OSError."""
    owner = _owner(source, keyed_hash)
    claim = _claim_path(claims, uid, keyed_hash)
    try:
        try:
            os.symlink(owner, claim)
        except FileNotFoundError:
            claims.mkdir(parents=True, exist_ok=True)  # the run's first claim
            os.symlink(owner, claim)
        return True
    except FileExistsError:
        return _holder(claim) == owner


def release_output(claims: Path, uid: str, source: Path, keyed_hash: KeyedHash) -> None:
    """Give `uid` up again (`source` could not write it after all: the instance was
    quarantined); another input's claim is left alone."""
    claim = _claim_path(claims, uid, keyed_hash)
    try:
        if _holder(claim) == _owner(source, keyed_hash):
            claim.unlink()
    except FileNotFoundError:
        pass
