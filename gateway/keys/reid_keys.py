"""The re-identification key pair: the gateway seals with the public half only.

The public key (`reid-public.pem`) goes on the gateway host; every original identifier in
the mapping store is sealed to it. The private key (`reid-private.pem`) opens the store and
belongs with whoever is allowed to re-identify, never on the gateway host: a gateway that
held it could undo its own pseudonyms. X25519 (RFC 7748) keeps both keys small and the
sealing cheap enough to do per record. This module is a leaf: it imports nothing from the
`gateway` package.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from gateway.base.durable import create_private_file, create_private_folder, fsync_directory

__all__ = [
    "PRIVATE_KEY_FILENAME",
    "PUBLIC_KEY_FILENAME",
    "PassphraseRequiredError",
    "ReidKeyError",
    "create_reid_keypair",
    "load_private_key",
    "load_public_key",
    "public_key_fingerprint",
]

PUBLIC_KEY_FILENAME = "reid-public.pem"
PRIVATE_KEY_FILENAME = "reid-private.pem"

_PRIVATE_MARKERS = (b"PRIVATE KEY-----",)
_PUBLIC_MARKER = b"-----BEGIN PUBLIC KEY-----"


class ReidKeyError(Exception):
    """A re-identification key cannot be created or used; the message names the file."""


class PassphraseRequiredError(ReidKeyError):
    """The private key is encrypted and no passphrase was given: ask for one and retry."""


def public_key_fingerprint(key: X25519PublicKey) -> str:
    """`sha256:<32 hex digits>` of the raw public key: names a key pair without revealing it.

    The mapping store keeps it beside each sealed record, so a wrong private key is told
    apart from a damaged record, and `keys init` prints it so people can compare keys.
    """
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def create_reid_keypair(
    directory: Path, passphrase: str | bytes | None = None
) -> tuple[Path, Path]:
    """Write a new X25519 key pair to `directory` and return (public path, private path).

    Both files are created 0600 with O_EXCL: an existing key is never replaced, because a new
    pair would leave every record sealed so far unreadable to the new private key. With a
    passphrase (None or empty: none), the private key is stored encrypted (PKCS #8,
    the best encryption the library offers).
    """
    directory = Path(directory)
    public_path = directory / PUBLIC_KEY_FILENAME
    private_path = directory / PRIVATE_KEY_FILENAME
    for path in (public_path, private_path):
        if path.exists() or path.is_symlink():
            raise ReidKeyError(
                f"refusing to overwrite the existing re-identification key {path}: records "
                "already sealed to it could no longer be opened; move it away first if you "
                "really mean to replace the key pair"
            )
    try:
        create_private_folder(directory)
    except OSError as exc:
        raise ReidKeyError(f"cannot create folder {directory}: {exc.strerror}") from None

    key = X25519PrivateKey.generate()
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem)
    try:
        _write_new(public_path, public_pem)
    except ReidKeyError:
        private_path.unlink(missing_ok=True)  # ours (O_EXCL): never leave half a pair
        raise
    _sync_folder(directory)
    return public_path, private_path


def _write_new(path: Path, data: bytes) -> None:
    """Create `path` 0600 (failing if it exists), write `data` and fsync it."""
    try:
        create_private_file(path, data)
    except FileExistsError:
        raise ReidKeyError(
            f"refusing to overwrite the existing re-identification key {path}"
        ) from None
    except OSError as exc:
        raise ReidKeyError(f"cannot write key file {path}: {exc.strerror}") from None


def _sync_folder(directory: Path) -> None:
    with contextlib.suppress(OSError):  # where the platform allows it
        fsync_directory(directory)


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ReidKeyError(
            f"{what} not found: {path} (create the pair with `dicom-gateway keys init`)"
        ) from None
    except IsADirectoryError:
        raise ReidKeyError(f"{what} {path} is a folder, not a key file") from None
    except OSError as exc:
        raise ReidKeyError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_public_key(path: Path) -> X25519PublicKey:
    """The X25519 public key in a PEM (SubjectPublicKeyInfo) file, or a ReidKeyError."""
    data = _read(path, "re-identification public key")
    if any(marker in data for marker in _PRIVATE_MARKERS):
        raise ReidKeyError(
            f"{path} holds a private key; the gateway needs the public key "
            f"({PUBLIC_KEY_FILENAME}), and the private key does not belong on the gateway host"
        )
    if _PUBLIC_MARKER not in data:
        raise ReidKeyError(
            f"{path} is not a PEM public key (expected a '-----BEGIN PUBLIC KEY-----' block)"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ReidKeyError(f"{path} is not a readable PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise ReidKeyError(
            f"{path} holds a {_key_kind(key)} public key; re-identification needs an X25519 "
            "key (create one with `dicom-gateway keys init`)"
        )
    return key


def load_private_key(path: Path, passphrase: str | bytes | None = None) -> X25519PrivateKey:
    """The X25519 private key in a PEM (PKCS #8) file, decrypted with `passphrase` if needed.

    Refuses a key file that group or others can read, as ssh does: whoever reads it can
    re-identify every patient the gateway has seen.
    """
    path = Path(path)
    data = _read(path, "re-identification private key")
    if os.name == "posix":
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ReidKeyError(
                f"re-identification private key {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
            )
    if _PUBLIC_MARKER in data:
        raise ReidKeyError(
            f"{path} holds a public key; re-identification needs the private key "
            f"({PRIVATE_KEY_FILENAME})"
        )
    if not any(marker in data for marker in _PRIVATE_MARKERS):
        raise ReidKeyError(
            f"{path} is not a PEM private key (expected a '-----BEGIN PRIVATE KEY-----' or "
            "'-----BEGIN ENCRYPTED PRIVATE KEY-----' block)"
        )
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    secret = secret or None
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except TypeError:
        if secret is None:
            raise PassphraseRequiredError(
                f"re-identification private key {path} is encrypted: a passphrase is needed"
            ) from None
        # A passphrase for a key stored without one: nothing to decrypt.
        key = _load_unencrypted(path, data)
    except ValueError:
        if secret is not None and b"ENCRYPTED PRIVATE KEY" in data:
            raise ReidKeyError(
                f"wrong passphrase for re-identification private key {path}"
            ) from None
        raise ReidKeyError(f"{path} is not a readable PEM private key") from None
    except UnsupportedAlgorithm:
        raise ReidKeyError(f"{path} holds a private key of an unsupported type") from None
    if not isinstance(key, X25519PrivateKey):
        raise ReidKeyError(
            f"{path} holds a {_key_kind(key)} private key; re-identification needs an X25519 "
            "key (create one with `dicom-gateway keys init`)"
        )
    return key


def _load_unencrypted(path: Path, data: bytes) -> object:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ReidKeyError(f"{path} is not a readable PEM private key") from None


def _key_kind(key: object) -> str:
    """A short name for a key type, for messages ('RSA', 'Ed25519', ...)."""
    name = type(key).__name__
    for suffix in ("PrivateKey", "PublicKey"):
        name = name.removesuffix(suffix)
    return name.lstrip("_") or "different"
