"""The console's local accounts and its lockout after repeated failed logins.

Accounts live in one JSON file of argon2id hashes and roles, mode 0600, replaced whole on
every change (write, fsync, rename), so a crash leaves the old file or the new one. Failed
logins are kept in a file of their own in the storage folder, so a restart does not reset a
lockout. Neither file holds patient data.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.base.durable import create_folder, fsync_directory

__all__ = [
    "CONSOLE_DIR",
    "LOCKOUT_FAILURES",
    "LOCKOUT_SECONDS",
    "Account",
    "AccountError",
    "Accounts",
    "Lockout",
    "Role",
    "console_dir",
    "default_users_file",
]

CONSOLE_DIR = "console"  # in storage_dir: users.json (default), session.key, failures, cache
USERS_NAME = "users.json"
FAILURES_NAME = "login-failures.json"
SIGN_OUTS_NAME = "sign-outs.json"
# Five wrong passwords within fifteen minutes lock the account for the rest of that window.
LOCKOUT_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60
MAX_NAME = 64
MIN_PASSWORD = 10

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
# Compared against when the name is unknown, so an unknown name takes as long as a wrong
# password and does not tell who has an account.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class Role(IntEnum):
    """Each role can do everything the one below it can."""

    VIEWER = 1  # status, studies in flight, quarantine reasons: pseudonymous data only
    REVIEWER = 2  # quarantined originals and header diffs; release, purge, pixel rules
    ADMIN = 3  # the audit trail as well

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise AccountError(f"unknown role {name!r} (viewer, reviewer or admin)") from None


class AccountError(Exception):
    """A name, password or role the accounts file refuses (no secret in the message)."""


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    changed: float = 0.0  # when its password or role was last set: older sessions end


def console_dir(storage_dir: Path) -> Path:
    """`storage_dir/console` (0700), created when missing."""
    folder = Path(storage_dir) / CONSOLE_DIR
    create_folder(folder)
    os.chmod(folder, 0o700)
    return folder


def default_users_file(storage_dir: Path) -> Path:
    return Path(storage_dir) / CONSOLE_DIR / USERS_NAME


def _check_name(name: str) -> None:
    if not name or len(name) > MAX_NAME or not all(c.isalnum() or c in "._-@" for c in name):
        raise AccountError(f"a user name is 1-{MAX_NAME} letters, digits, '.', '_', '-' or '@'")


def _write_private_json(path: Path, data: object) -> None:
    """Replace `path` by `data`, mode 0600, durably (write, fsync, rename, fsync folder)."""
    create_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)


class Accounts:
    """The accounts file: `{"users": {NAME: {"hash": ARGON2, "role": ROLE}}}`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, dict[str, str]]] | None = None

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cache is not None and self._cache[0] == mtime:
            return self._cache[1]
        users = json.loads(self.path.read_text(encoding="utf-8")).get("users", {})
        if not isinstance(users, dict):
            raise AccountError(f"{self.path}: 'users' is not a mapping")
        self._cache = (mtime, users)
        return users

    def add(self, name: str, password: str, role: Role) -> None:
        """Add or replace `name` (a new password and role)."""
        _check_name(name)
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
        with self._lock:
            users = dict(self._read())
            users[name] = {
                "hash": _HASHER.hash(password), "role": role.name.lower(), "changed": time.time(),
            }  # fmt: skip
            _write_private_json(self.path, {"users": users})

    def remove(self, name: str) -> bool:
        with self._lock:
            users = dict(self._read())
            if users.pop(name, None) is None:
                return False
            _write_private_json(self.path, {"users": users})
            return True

    def list(self) -> list[Account]:
        return [_account(name, u) for name, u in sorted(self._read().items())]

    def get(self, name: str) -> Account | None:
        """The account as it is now (a role changed or an account removed takes effect on
        the session's next request)."""
        found = self._read().get(name)
        return _account(name, found) if found else None

    def verify(self, name: str, password: str) -> Account | None:
        """The account when `password` is its password; None otherwise (in the same time
        whether or not the name exists)."""
        found = self._read().get(name)
        try:
            _HASHER.verify(found["hash"] if found else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return _account(name, found) if found else None


def _account(name: str, stored: dict[str, object]) -> Account:
    changed = stored.get("changed", 0.0)
    return Account(
        name,
        Role.named(str(stored["role"])),
        float(changed) if isinstance(changed, int | float) else 0.0,
    )


class Lockout:
    """Failed logins per account name, persisted; `LOCKOUT_FAILURES` within
    `LOCKOUT_SECONDS` lock the name until the oldest of them ages out."""

    def __init__(
        self,
        path: Path,
        failures: int = LOCKOUT_FAILURES,
        seconds: float = LOCKOUT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.failures, self.seconds = failures, seconds
        self._lock = threading.Lock()

    def _recent(self, now: float) -> dict[str, list[float]]:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            stored = {}
        since = now - self.seconds
        return {
            name: kept
            for name, times in stored.items()
            if (kept := [t for t in times if isinstance(t, int | float) and t > since])
        }

    def locked(self, name: str, now: float | None = None) -> bool:
        moment = time.time() if now is None else now
        with self._lock:
            return len(self._recent(moment).get(name, [])) >= self.failures

    def failed(self, name: str, now: float | None = None) -> bool:
        """Count one failure; True when it locks the account (the count just reached)."""
        moment = time.time() if now is None else now
        with self._lock:
            recent = self._recent(moment)
            times = [*recent.get(name, []), moment][-self.failures :]
            recent[name] = times
            _write_private_json(self.path, recent)
            return len(times) == self.failures

    def succeeded(self, name: str) -> None:
        with self._lock:
            recent = self._recent(time.time())
            if recent.pop(name, None) is not None:
                _write_private_json(self.path, recent)


def failures_file(storage_dir: Path) -> Path:
    return Path(storage_dir) / CONSOLE_DIR / FAILURES_NAME


class SignOuts:
    """When each user last logged out, persisted: a session cookie issued before it is void
    (a copy of the cookie does not outlive the logout, in any browser)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, float]:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return {k: float(v) for k, v in stored.items() if isinstance(v, int | float)}

    def signed_out(self, name: str) -> None:
        with self._lock:
            times = self._read()
            times[name] = time.time()
            _write_private_json(self.path, times)

    def since(self, name: str) -> float:
        return self._read().get(name, 0.0)


def sign_outs_file(storage_dir: Path) -> Path:
    return Path(storage_dir) / CONSOLE_DIR / SIGN_OUTS_NAME
