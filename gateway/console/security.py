"""Sessions, CSRF tokens and role checks for the console's Flask application.

The session is Flask's signed cookie (HttpOnly, SameSite=Strict, Secure under TLS), signed
with a key generated once and kept 0600 in `storage_dir/console/session.key`. It holds the
user name, an issue time and the CSRF token; the role is read from the accounts file on
every request, so removing an account or lowering a role takes effect at once.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from flask import abort, g, redirect, request, session, url_for

from gateway.base.durable import create_private_file, fsync_directory
from gateway.console.accounts import Account, Accounts, Role, SignOuts

__all__ = ["SESSION_SECONDS", "csrf_token", "load_session_key", "require", "signed_in"]

SESSION_KEY_NAME = "session.key"
SESSION_SECONDS = 8 * 3600  # a session ends after a working day, whatever its activity
CSRF_FIELD = "csrf_token"

F = TypeVar("F", bound=Callable[..., Any])


def load_session_key(console_folder: Path) -> bytes:
    """The key that signs session cookies: made once (32 random bytes, 0600), then read."""
    path = console_folder / SESSION_KEY_NAME
    try:
        create_private_file(path, secrets.token_bytes(32))
        fsync_directory(console_folder)
    except FileExistsError:
        pass
    key = path.read_bytes()
    if len(key) < 32:
        raise ValueError(f"{path}: a session key of {len(key)} bytes is too short")
    return key


def csrf_token() -> str:
    """The session's CSRF token, made on first use (a form before login has one too)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_ok() -> bool:
    """Whether this POST carries the session's token (form field or X-CSRF-Token header)."""
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or ""
    return isinstance(expected, str) and hmac.compare_digest(expected, given)


def sign_in(account: Account) -> None:
    """A fresh session for `account` (a new CSRF token too: no fixation across login)."""
    session.clear()
    session["user"] = account.name
    session["issued"] = time.time()
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def signed_in(accounts: Accounts, sign_outs: SignOuts) -> Account | None:
    """The account of this request's session, if it is valid and unexpired, the account
    still exists, and neither a logout nor a new password or role came after the login."""
    name, issued = session.get("user"), session.get("issued")
    if not isinstance(name, str) or not isinstance(issued, int | float):
        return None
    account = accounts.get(name)
    if (
        account is None
        or not 0 <= time.time() - issued < SESSION_SECONDS
        or issued <= account.changed
        or issued <= sign_outs.since(name)
    ):
        session.clear()
        return None
    return account


def require(role: Role) -> Callable[[F], F]:
    """A view for `role` and above: the login page for no session, 403 for a lower role."""

    def decorate(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            account: Account | None = g.get("account")
            if account is None:
                return redirect(url_for("login", next=request.path))
            if account.role < role:
                abort(403)
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate
