"""`run` refuses what it cannot honour; `quarantine` lists, releases and purges."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_harness import run_cli

from gateway.keys.keyed_hash import KeyedHash
from gateway.stores import quarantine
from gateway.stores.spool import Spool


@pytest.fixture
def site(tmp_path: Path) -> Path:
    assert run_cli("keys", "init", "--dir", "keys", cwd=tmp_path).returncode == 0
    (tmp_path / "gw.yaml").write_text(
        "site_id: CLI-SITE\nstorage_dir: var\nkeys: {secret: keys/site-secret.key}\n",
        encoding="utf-8",
    )
    return tmp_path


def test_run_refuses_tls_files_that_are_not_certificates_before_listening(site: Path) -> None:
    config = site / "tls.yaml"
    key = "keys/site-secret.key"
    config.write_text(
        (site / "gw.yaml").read_text(encoding="utf-8")
        + f"listen:\n  tls: {{cert: {key}, key: {key}, ca: {key}}}\n",
        encoding="utf-8",
    )
    for command in ("run", "check-config"):
        result = run_cli(command, "-c", config, cwd=site)
        assert result.returncode == 2, command
        assert f"{config}: 'listen.tls." in result.stderr, result.stderr


def test_certs_dev_makes_the_five_files_once(site: Path) -> None:
    made = run_cli("certs", "dev", "--dir", "tls", cwd=site)
    assert made.returncode == 0, made.stderr
    names = ["ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"]
    assert sorted(p.name for p in (site / "tls").iterdir()) == sorted(names)
    assert (site / "tls" / "server-key.pem").stat().st_mode & 0o777 == 0o600
    again = run_cli("certs", "dev", "--dir", "tls", cwd=site)
    assert again.returncode == 1 and "error:" in again.stderr


def test_run_with_a_missing_secret_names_the_key(site: Path) -> None:
    (site / "keys" / "site-secret.key").unlink()
    result = run_cli("run", "-c", "gw.yaml", cwd=site)
    assert result.returncode == 2
    assert "'keys.secret'" in result.stderr


def test_quarantine_list_release_and_purge_of_an_instance(site: Path, tmp_path: Path) -> None:
    source = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "CT_small.dcm"
    if not source.exists():
        pytest.skip("shared/testdata is not beside the project")
    storage = site / "var"
    entry = quarantine.put(
        storage, source, reason="identifier-found", stage="verify", message="x", origin="test",
        keyed_hash=KeyedHash(bytes(range(32))),
    )
    listed = run_cli("quarantine", "-c", "gw.yaml", "list", cwd=site)
    assert listed.returncode == 0
    assert entry.id in listed.stdout and "verify/identifier-found" in listed.stdout
    assert "1 quarantined instances, 0 studies failed to forward" in listed.stdout

    missing = run_cli("quarantine", "-c", "gw.yaml", "release", "20990101T000000-x", cwd=site)
    assert missing.returncode == 1

    released = run_cli("quarantine", "-c", "gw.yaml", "release", entry.id, cwd=site)
    assert released.returncode == 0, released.stderr
    assert quarantine.entries(storage) == []
    spool = Spool(storage, None, recover=False)
    assert spool.queue_depth() == 1  # back in the spool, processed again with its study
    spool.close()

    quarantine.put(
        storage, source, reason="r", stage="s", message="m", origin="test",
        keyed_hash=KeyedHash(bytes(range(32))),
    )
    kept = run_cli("quarantine", "-c", "gw.yaml", "purge", "--older-than", "1", cwd=site)
    assert "purged 0" in kept.stdout
    purged = run_cli("quarantine", "-c", "gw.yaml", "purge", cwd=site)
    assert "purged 1" in purged.stdout
    assert quarantine.entries(storage) == []
