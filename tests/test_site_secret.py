"""The site secret as an operator handles it: created once, kept private, read back."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest

from gateway.keys.site_secret import (
    SECRET_FILENAME,
    SiteSecretError,
    create_site_secret,
    read_site_secret,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_secret(path: Path, content: str, mode: int = 0o600) -> Path:
    path.write_text(content)
    path.chmod(mode)
    return path


def test_keys_init_creates_a_private_file_of_64_hex_digits(tmp_path: Path) -> None:
    path = create_site_secret(tmp_path)

    assert path == tmp_path / SECRET_FILENAME == tmp_path / "site-secret.key"
    assert mode_of(path) == 0o600
    text = path.read_text()
    assert text.endswith("\n")
    assert len(text.strip()) == 64
    int(text, 16)  # hex digits only


def test_keys_init_creates_a_private_folder(tmp_path: Path) -> None:
    folder = tmp_path / "certs"

    create_site_secret(folder)

    assert mode_of(folder) == 0o700


def test_keys_init_gives_a_different_secret_each_site(tmp_path: Path) -> None:
    first = read_site_secret(create_site_secret(tmp_path / "a"))
    second = read_site_secret(create_site_secret(tmp_path / "b"))

    assert first != second


def test_keys_init_twice_keeps_the_first_secret(tmp_path: Path) -> None:
    path = create_site_secret(tmp_path)
    before = path.read_bytes()

    with pytest.raises(SiteSecretError, match="refusing to overwrite") as caught:
        create_site_secret(tmp_path)

    assert str(path) in str(caught.value)
    assert path.read_bytes() == before
    assert mode_of(path) == 0o600


def test_the_secret_reads_back_as_the_bytes_written(tmp_path: Path) -> None:
    path = create_site_secret(tmp_path)

    key = read_site_secret(path)

    assert len(key) == 32
    assert key.hex() == path.read_text().strip()


def test_a_longer_secret_written_by_hand_is_accepted(tmp_path: Path) -> None:
    path = write_secret(tmp_path / SECRET_FILENAME, "AB" * 48 + "\n")

    assert read_site_secret(path) == bytes([0xAB]) * 48


def test_secret_not_created_yet(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILENAME

    with pytest.raises(SiteSecretError, match="not found") as caught:
        read_site_secret(path)

    assert str(path) in str(caught.value)
    assert "keys init" in str(caught.value)


@pytest.mark.parametrize(
    "content",
    ["not a secret at all\n", "zz" * 32 + "\n", "abc\n", "", "ab cd" * 16 + "\n"],
    ids=["words", "not-hex", "odd-length", "empty", "spaces"],
)
def test_secret_in_the_wrong_format(tmp_path: Path, content: str) -> None:
    path = write_secret(tmp_path / SECRET_FILENAME, content)

    with pytest.raises(SiteSecretError, match="wrong format") as caught:
        read_site_secret(path)

    assert str(path) in str(caught.value)


def test_secret_too_short(tmp_path: Path) -> None:
    path = write_secret(tmp_path / SECRET_FILENAME, "ab" * 16 + "\n")

    with pytest.raises(SiteSecretError, match="too short: 16 bytes") as caught:
        read_site_secret(path)

    assert str(path) in str(caught.value)


def test_messages_never_quote_the_secret(tmp_path: Path) -> None:
    path = write_secret(tmp_path / SECRET_FILENAME, "c0ffee" * 4 + "\n")

    with pytest.raises(SiteSecretError) as caught:
        read_site_secret(path)

    assert "c0ffee" not in str(caught.value)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_secret_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = create_site_secret(tmp_path)
    path.chmod(mode)

    with pytest.raises(SiteSecretError, match="chmod 600") as caught:
        read_site_secret(path)

    assert str(path) in str(caught.value)
    assert f"{mode:04o}" in str(caught.value)


def test_secret_path_is_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / SECRET_FILENAME
    folder.mkdir(mode=0o700)

    with pytest.raises(SiteSecretError, match="not a regular file") as caught:
        read_site_secret(folder)

    assert str(folder) in str(caught.value)


def _posix_acl(entries: list[tuple[int, int, int]]) -> bytes:
    """A system.posix_acl_access value (linux/posix_acl_xattr.h, version 2)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def test_a_systemd_credential_readable_only_through_an_acl_for_us_is_accepted(
    tmp_path: Path,
) -> None:
    """systemd 254+ LoadCredential=: root-owned 0400 plus `user:<service>:r--`, mode 0440."""
    path = create_site_secret(tmp_path / "keys")
    anyone = 0xFFFFFFFF
    only_us = [(0x01, 6, anyone), (0x02, 4, os.geteuid()), (0x04, 0, anyone)]
    try:
        os.setxattr(
            path,
            "system.posix_acl_access",
            _posix_acl([*only_us, (0x10, 4, anyone), (0x20, 0, anyone)]),
        )
    except OSError:
        pytest.skip("this file system has no POSIX ACLs")
    assert path.stat().st_mode & 0o777 == 0o640
    assert len(read_site_secret(path)) == 32

    group_too = [(0x01, 6, anyone), (0x02, 4, os.geteuid()), (0x04, 4, anyone)]
    os.setxattr(
        path,
        "system.posix_acl_access",
        _posix_acl([*group_too, (0x10, 4, anyone), (0x20, 0, anyone)]),
    )
    with pytest.raises(SiteSecretError, match="group or others"):
        read_site_secret(path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_check_config_refuses_the_readable_secret_that_run_refuses(tmp_path: Path, capsys) -> None:
    """check-config and run start from the same checked site (gateway.site.load_site)."""
    from gateway.cli.main import main

    secret = create_site_secret(tmp_path / "keys")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"site_id: SECRET-SITE\nstorage_dir: var\nkeys:\n  secret: {secret}\n")
    assert main(["check-config", "-c", str(config)]) == 0
    capsys.readouterr()
    secret.chmod(0o640)
    for command in ("check-config", "run"):
        assert main([command, "-c", str(config)]) == 2, command
        assert f"{config}: 'keys.secret':" in capsys.readouterr().err, command
