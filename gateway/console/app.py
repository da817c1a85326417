"""The console's Flask application: its context, login and logout, and the request guards.

Every request but the login page needs a session; every POST needs the session's CSRF
token; every action (login, failed login, lockout, logout, release, purge, a look at an
original) is written to the audit trail with the user's name, and nothing the console logs
or audits carries patient data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, g, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from gateway.console.accounts import (
    Accounts,
    Lockout,
    SignOuts,
    console_dir,
    default_users_file,
    failures_file,
    sign_outs_file,
)
from gateway.console.pages import register_pages
from gateway.console.preview import forget_gone
from gateway.console.review_pages import register_review_pages
from gateway.console.security import (
    csrf_ok,
    csrf_token,
    load_session_key,
    sign_in,
    signed_in,
)
from gateway.pipeline.files import EngineSettings
from gateway.stores import quarantine
from gateway.stores.audit import AuditLog
from gateway.stores.spool import Spool

__all__ = ["ConsoleContext", "Destination", "create_app"]

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 << 10
SWEEP_SECONDS = 60.0  # how often the caches of entries gone from the quarantine are deleted


@dataclass(frozen=True)
class Destination:
    name: str
    kind: str  # "folder" or "DICOM AE"


@dataclass
class ConsoleContext:
    """What the console reads and calls: the running service's stores and settings."""

    storage_dir: Path
    spool: Spool
    audit: AuditLog
    settings: EngineSettings  # the workers' engine settings, for the cleaned preview
    listening: str  # "AE@host:port"
    healthy: Callable[[], bool]
    destinations: list[Destination] = field(default_factory=list)
    users_file: Path | None = None
    pixel_rules: Path | None = None  # deid.pixel_rules, where a marked region becomes a rule
    https: bool = False
    # One cleaned preview at a time: each runs the engine and OCR in this process.
    preview_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def console_folder(self) -> Path:
        return console_dir(self.storage_dir)


def create_app(context: ConsoleContext) -> Flask:
    folder = context.console_folder
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=load_session_key(folder),
        SESSION_COOKIE_NAME="dicom_gateway_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=context.https,
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.logger.handlers.clear()  # log through the gateway's handlers, never a value
    accounts = Accounts(context.users_file or default_users_file(context.storage_dir))
    if not accounts.list():
        log.warning(
            "web console on, but %s has no account: add one with "
            "`dicom-gateway console user add NAME --role reviewer`",
            accounts.path,
        )
    lockout = Lockout(failures_file(context.storage_dir))
    sign_outs = SignOuts(sign_outs_file(context.storage_dir))
    app.extensions["console"] = context
    app.extensions["accounts"] = accounts
    swept = [time.monotonic()]
    forget_gone(folder, _live_entries(context.storage_dir))

    @app.before_request
    def guard() -> Any:
        if time.monotonic() - swept[0] > SWEEP_SECONDS:  # entries purged by the CLI or by age
            swept[0] = time.monotonic()
            forget_gone(folder, _live_entries(context.storage_dir))
        g.account = signed_in(accounts, sign_outs)
        if request.method == "POST" and not csrf_ok():
            audit_action("console_csrf_refused", path=request.path)
            return render_template("error.html", code=403, why="missing or wrong CSRF token"), 403
        return None

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'"
        )
        return response

    @app.context_processor
    def template_names() -> dict[str, Any]:
        return {"account": g.get("account"), "csrf_token": csrf_token}

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        code = error.code or 500
        return render_template("error.html", code=code, why=error.name), code

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        # The type only: an exception's text may quote a value of an original.
        log.error("console: %s on %s %s", type(error).__name__, request.method, request.path)
        return render_template("error.html", code=500, why="internal error (see the log)"), 500

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        if request.method == "GET":
            return render_template("login.html", problem="")
        name = request.form.get("user", "")[:64]
        password = request.form.get("password", "")[:1024]
        known = accounts.get(name) is not None
        if known and lockout.locked(name):
            audit_action("console_login_locked", user=name)
            problem = "This account is locked after repeated failed logins; try again later."
            return render_template("login.html", problem=problem), 429
        account = accounts.verify(name, password)
        if account is None:
            # An unknown name is not written down: it may be a password typed in the wrong box.
            audit_action("console_login_failed", user=name if known else "(unknown)")
            if known and lockout.failed(name):
                audit_action("console_lockout", user=name)
            return render_template("login.html", problem="Wrong user name or password."), 401
        lockout.succeeded(name)
        sign_in(account)
        audit_action("console_login", user=account.name, role=account.role.name.lower())
        target = request.args.get("next", "")
        local = target.startswith("/") and "//" not in target and "\\" not in target
        return redirect(target if local else "/")

    @app.post("/logout")
    def logout() -> Any:
        account = g.get("account")
        if account is not None:
            sign_outs.signed_out(account.name)
            audit_action("console_logout", user=account.name)
        session.clear()
        return redirect(url_for("login"))

    def audit_action(event: str, **fields: Any) -> None:
        account = g.get("account")
        fields.setdefault("user", account.name if account is not None else "(none)")
        fields.setdefault("address", request.remote_addr or "")
        context.audit.record(event, **fields)

    app.extensions["audit_action"] = audit_action
    register_pages(app)
    register_review_pages(app)
    return app


def _live_entries(storage_dir: Path) -> set[str]:
    """The quarantine's entry names (folder names only: cheap with thousands held)."""
    root = quarantine.quarantine_root(storage_dir)
    if not root.is_dir():
        return set()
    return {p.name for p in root.iterdir() if not p.name.startswith(".")}
