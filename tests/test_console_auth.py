"""The web console's guards without a browser: accounts, lockout, roles, CSRF, config.

The Flask application runs in-process over a storage folder of its own (Flask's test
client, no server); the browser tests (test_console_browser.py) drive the real thing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from service_harness import gateway_command

from gateway.config import load_config
from gateway.config.loading import ConfigError
from gateway.console import accounts as accounts_module
from gateway.console.accounts import AccountError, Accounts, Lockout, Role, default_users_file
from gateway.console.app import ConsoleContext, create_app
from gateway.deid.profile import default_profile
from gateway.keys.keyed_hash import KeyedHash
from gateway.pipeline.files import EngineSettings
from gateway.stores import quarantine
from gateway.stores.audit import AuditLog
from gateway.stores.spool import Spool

PASSWORD = "correct horse battery"
# argon2id at the library's parameters takes a good part of a second per hash here: the unit
# tests use cheap parameters (a hash records its own, so verification follows them).
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "_HASHER", CHEAP)
    monkeypatch.setattr(accounts_module, "_DUMMY_HASH", CHEAP.hash("dummy"))


CT = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "CT_small.dcm"


def test_accounts_file_holds_argon2_hashes_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "console" / "users.json"
    accounts = Accounts(path)
    accounts.add("ana", PASSWORD, Role.REVIEWER)
    text = path.read_text(encoding="utf-8")
    assert "$argon2id$" in text and PASSWORD not in text
    assert path.stat().st_mode & 0o777 == 0o600
    assert accounts.verify("ana", PASSWORD) == accounts.get("ana")
    assert accounts.get("ana").role is Role.REVIEWER
    assert accounts.verify("ana", "wrong password!") is None
    assert accounts.verify("nobody", PASSWORD) is None
    with pytest.raises(AccountError):
        accounts.add("bob", "short", Role.VIEWER)
    with pytest.raises(AccountError):
        accounts.add("bad name", PASSWORD, Role.VIEWER)
    with pytest.raises(AccountError):
        Role.named("root")
    assert accounts.remove("ana") and accounts.get("ana") is None


def test_five_failures_in_the_window_lock_and_the_lock_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "failures.json"
    lockout = Lockout(path, failures=5, seconds=900)
    locks = [lockout.failed("ana", now=1000.0 + i) for i in range(5)]
    assert locks == [False, False, False, False, True]
    again = Lockout(path, failures=5, seconds=900)  # a restarted gateway
    assert again.locked("ana", now=1010.0)
    assert not again.locked("ana", now=1000.0 + 901)  # the oldest failure aged out
    assert not again.locked("bob", now=1010.0)


def test_console_user_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    (tmp_path / "gw.yaml").write_text(
        "site_id: S\nstorage_dir: var\nkeys: {secret: missing.key}\n", encoding="utf-8"
    )
    command = [*gateway_command(), "console", "user", "add", "ana", "--role", "admin"]
    result = subprocess.run(
        [*command, "-c", "gw.yaml"], cwd=tmp_path, input=PASSWORD + "\n", text=True,
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    accounts = Accounts(default_users_file(tmp_path / "var"))
    assert accounts.verify("ana", PASSWORD).role is Role.ADMIN


def test_console_user_list_and_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli.main import main

    config = tmp_path / "gw.yaml"
    config.write_text("site_id: S\nstorage_dir: var\nkeys: {secret: s.key}\n", encoding="utf-8")
    Accounts(default_users_file(tmp_path / "var")).add("vera", PASSWORD, Role.VIEWER)
    assert main(["console", "user", "list", "-c", str(config)]) == 0
    assert capsys.readouterr().out == "vera\tviewer\n"
    assert main(["console", "user", "remove", "vera", "-c", str(config)]) == 0
    assert main(["console", "user", "remove", "vera", "-c", str(config)]) == 1
    assert Accounts(default_users_file(tmp_path / "var")).list() == []


def test_the_console_off_loopback_without_tls_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "site_id: S\nstorage_dir: var\nkeys: {secret: s.key}\n"
        "http: {host: 0.0.0.0, console: true}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, check_files=False)
    problem = "\n".join(caught.value.problems)
    assert f"{path}: 'http.host'" in problem and "TLS" in problem
    path.write_text(path.read_text().replace("0.0.0.0", "127.0.0.1"), encoding="utf-8")
    assert load_config(path, check_files=False).http.console


# --- the application ---------------------------------------------------------------------


@pytest.fixture
def console(tmp_path: Path) -> tuple[FlaskClient, ConsoleContext]:
    storage = tmp_path / "var"
    secret = bytes(range(32))
    spool = Spool(storage, KeyedHash(secret))
    context = ConsoleContext(
        storage_dir=storage,
        spool=spool,
        audit=AuditLog(storage / "audit.jsonl"),
        settings=EngineSettings(default_profile(), secret, "SITE", storage),
        listening="DEID_GW@127.0.0.1:11112",
        healthy=lambda: True,
    )
    accounts = Accounts(default_users_file(storage))
    for name, role in (("vera", Role.VIEWER), ("rita", Role.REVIEWER)):
        accounts.add(name, PASSWORD, role)
    app = create_app(context)
    yield app.test_client(), context
    spool.close()


def _token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _login(client: FlaskClient, name: str, password: str = PASSWORD) -> int:
    token = _token(client)
    form = {"user": name, "password": password, "csrf_token": token}
    return client.post("/login", data=form).status_code


def _audit_events(context: ConsoleContext) -> list[str]:
    path = context.audit.path
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [re.search(r'"event":"([^"]+)"', line).group(1) for line in lines]


def test_login_without_the_csrf_token_is_refused(console) -> None:
    client, context = console
    response = client.post("/login", data={"user": "rita", "password": PASSWORD})
    assert response.status_code == 403
    assert client.get("/").status_code == 302  # still not signed in
    assert _login(client, "rita") == 302
    assert client.get("/").status_code == 200
    assert "console_csrf_refused" in _audit_events(context)


def test_wrong_passwords_lock_the_account_even_for_the_right_one(console) -> None:
    client, context = console
    codes = [_login(client, "rita", "not the password") for _ in range(5)]
    assert codes == [401] * 5
    assert _login(client, "rita") == 429
    events = _audit_events(context)
    assert events.count("console_login_failed") == 5 and "console_lockout" in events
    assert "console_login_locked" in events and "console_login" not in events


def test_session_cookie_is_httponly_and_same_site_strict(console) -> None:
    client, _ = console
    token = _token(client)
    response = client.post(
        "/login", data={"user": "vera", "password": PASSWORD, "csrf_token": token}
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


@pytest.mark.skipif(not CT.exists(), reason="shared/testdata is not beside the project")
def test_a_viewer_sees_the_reason_but_not_the_original_nor_release(console) -> None:
    client, context = console
    entry = quarantine.put(
        context.storage_dir, CT, reason="identifier-found", stage="verify", message="x",
        origin="test", keyed_hash=KeyedHash(bytes(32)),
    )  # fmt: skip
    assert _login(client, "vera") == 302
    page = client.get(f"/quarantine/{entry.id}")
    assert page.status_code == 200 and "identifier-found" in page.get_data(as_text=True)
    assert client.get(f"/quarantine/{entry.id}/original.png").status_code == 403
    token = _token(client, "/quarantine")
    refused = client.post(f"/quarantine/{entry.id}/release", data={"csrf_token": token})
    assert refused.status_code == 403
    assert [e.id for e in quarantine.entries(context.storage_dir)] == [entry.id]

    client.post("/logout", data={"csrf_token": token})
    assert _login(client, "rita") == 302
    picture = client.get(f"/quarantine/{entry.id}/original.png")
    assert picture.status_code == 200 and picture.data[:4] == b"\x89PNG"
    page = client.get(f"/quarantine/{entry.id}").get_data(as_text=True)
    assert "PatientName" in page  # the header diff, for reviewers
    token = _token(client, "/quarantine")
    no_token = client.post(f"/quarantine/{entry.id}/purge")
    assert no_token.status_code == 403
    done = client.post(f"/quarantine/{entry.id}/purge", data={"csrf_token": token})
    assert done.status_code == 302 and quarantine.entries(context.storage_dir) == []
    assert not (context.console_folder / "cache" / entry.id).exists()
    assert "console_purge" in _audit_events(context)


def test_a_copied_cookie_is_void_after_logout_and_after_a_new_password(console) -> None:
    client, context = console
    assert _login(client, "rita") == 302
    cookie = client.get_cookie("dicom_gateway_console").value
    replay = client.application.test_client()
    replay.set_cookie("dicom_gateway_console", cookie)
    assert replay.get("/").status_code == 200
    token = _token(client, "/quarantine")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert replay.get("/").status_code == 302  # to the login page

    assert _login(client, "rita") == 302
    cookie = client.get_cookie("dicom_gateway_console").value
    Accounts(default_users_file(context.storage_dir)).add("rita", PASSWORD + "!", Role.VIEWER)
    replay = client.application.test_client()
    replay.set_cookie("dicom_gateway_console", cookie)
    assert replay.get("/").status_code == 302
