"""The site secret that keys every pseudonym HMAC.

Gateways holding the same secret produce the same pseudonyms without talking to each other,
and anyone holding it can test guesses of patient identifiers against pseudonyms; so it is
created once, never overwritten, kept owner-only, and its contents never appear in a
message. This module is a leaf: it imports nothing from the `gateway` package.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import string
import struct
from pathlib import Path

from gateway.base.durable import create_private_file, create_private_folder, fsync_directory

__all__ = [
    "SECRET_BYTES",
    "SECRET_FILENAME",
    "SiteSecretError",
    "create_site_secret",
    "read_site_secret",
]

SECRET_FILENAME = "site-secret.key"
SECRET_BYTES = 32  # 256-bit HMAC key (RFC 2104: at least the hash output length)
_HEX_DIGITS = frozenset(string.hexdigits.encode("ascii"))


class SiteSecretError(Exception):
    """The site secret cannot be created or used; the message names the file."""


def create_site_secret(directory: Path) -> Path:
    """Write a new random secret to `directory/site-secret.key` and return its path.

    Refuses to replace an existing secret: a new one would silently change every
    pseudonym the site has ever issued.
    """
    directory = Path(directory)
    try:
        create_private_folder(directory)
    except OSError as exc:
        raise SiteSecretError(f"cannot create folder {directory}: {exc.strerror}") from None
    path = directory / SECRET_FILENAME
    content = secrets.token_bytes(SECRET_BYTES).hex().encode("ascii") + b"\n"
    try:
        create_private_file(path, content)
    except FileExistsError:
        raise SiteSecretError(
            f"refusing to overwrite the existing site secret {path}: every pseudonym depends "
            "on it; move it away first if you really mean to replace it"
        ) from None
    except OSError as exc:
        raise SiteSecretError(f"cannot write site secret {path}: {exc.strerror}") from None
    with contextlib.suppress(OSError):  # where the platform allows it
        fsync_directory(directory)
    return path


# linux/posix_acl_xattr.h: a version word, then entries of (tag u16, perm u16, id u32), LE.
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 0x02, 0x04, 0x08, 0x10, 0x20


def _readable_by_others(path: Path, info: os.stat_result) -> bool:
    """Can anyone but this user read the file?

    With a POSIX ACL the group bits are the ACL mask: systemd 254+ hands a LoadCredential=
    file to the service as root-owned 0400 plus an ACL entry for the service user, which
    reads as 0440 although only that user can read it.
    """
    if not info.st_mode & 0o077:
        return False
    try:
        acl = os.getxattr(path, "system.posix_acl_access")
    except OSError:
        return True
    entries = [struct.unpack_from("<HHI", acl, off) for off in range(4, len(acl) - 7, 8)]
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 0o7)
    for tag, perm, ident in entries:
        if tag == _ACL_OTHER and perm:
            return True
        if tag in (_ACL_GROUP_OBJ, _ACL_GROUP) and perm & mask:
            return True
        if tag == _ACL_USER and perm & mask and ident != os.geteuid():
            return True
    return False


def read_site_secret(path: Path) -> bytes:
    """Return the secret's raw bytes (at least 32), checking it is private and well formed."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SiteSecretError(
            f"site secret not found: {path} (create one with `dicom-gateway keys init`)"
        ) from None
    except OSError as exc:
        raise SiteSecretError(f"cannot read site secret {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SiteSecretError(f"site secret {path} is not a regular file")
    if os.name == "posix" and _readable_by_others(path, info):
        raise SiteSecretError(
            f"site secret {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
        )
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise SiteSecretError(f"cannot read site secret {path}: {exc.strerror}") from None
    # The contents are secret: messages below describe them, never quote them.
    text = content.strip()
    if not text or any(byte not in _HEX_DIGITS for byte in text) or len(text) % 2:
        raise SiteSecretError(
            f"site secret {path} has the wrong format: expected hexadecimal digits only "
            f"({2 * SECRET_BYTES} or more, one line)"
        )
    key = bytes.fromhex(text.decode("ascii"))
    if len(key) < SECRET_BYTES:
        raise SiteSecretError(
            f"site secret {path} is too short: {len(key)} bytes, need at least {SECRET_BYTES}"
        )
    return key
