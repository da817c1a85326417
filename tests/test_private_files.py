"""What the gateway leaves on disk is its owner's alone, whatever umask it was started with.

state.db (and its WAL) holds original Study and SOP Instance UIDs and calling AE titles, the
spool and the quarantine hold identified instances: another local user must read none of it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_harness import (
    create_secret,
    dcmtk_tool,
    make_site,
    run_cli,
    running_gateway,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Start the gateway as a login shell would (umask 022): files 0644, folders 0755."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def open_to_others(root: Path) -> list[str]:
    """Every file or folder under `root` that another user could read; files the running
    service moves or deletes meanwhile (outbox, WAL) are passed over."""
    found = []
    paths = [root]
    for folder, dirs, files in os.walk(root):  # os.walk skips a folder that vanished
        paths += [Path(folder, name) for name in (*dirs, *files)]
    for path in paths:
        try:
            status = path.lstat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077 and not stat.S_ISLNK(status.st_mode):
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


@pytest.mark.skipif(dcmtk_tool("storescu") is None, reason="DCMTK storescu not installed")
def test_nothing_the_service_writes_is_readable_by_others(tmp_path: Path, umask_022) -> None:
    secret = create_secret(tmp_path / "keys")
    study = make_ct_study(tmp_path / "in", instances=4, rows=16, columns=16,
                          patient=random_patient(3))  # fmt: skip
    site = make_site(tmp_path / "site", secret, destination={"folder": "PLACEHOLDER"})
    site.write(
        destination={"folder": str(site.storage / "export")},
        keys={"secret": str(secret), "reid_public_key": str(secret.parent / "reid-public.pem")},
    )
    with running_gateway(site) as gateway:
        assert storescu(site.listen_port, study).acknowledged == study
        wait_until(
            lambda: len(list(site.export.rglob("*.dcm"))) == len(study),
            timeout=60,
            what="the study exported",
        )
        running = open_to_others(site.storage)  # state.db-wal and -shm exist while it runs
        gateway.stop()
    assert (site.storage / "state.db").exists() and (site.storage / "mapping.db").exists()
    assert not running, running
    assert not open_to_others(site.storage)


def test_anonymize_closes_a_storage_folder_left_open_and_writes_nothing_open(
    tmp_path: Path, umask_022
) -> None:
    secret = create_secret(tmp_path / "keys")
    storage = tmp_path / "var"
    storage.mkdir(mode=0o755)
    storage.chmod(0o755)
    (tmp_path / "gw.yaml").write_text(
        f"site_id: PRIVATE-SITE\nstorage_dir: {storage}\n"
        f"keys: {{secret: {secret}, reid_public_key: {secret.parent / 'reid-public.pem'}}}\n",
        encoding="utf-8",
    )
    make_ct_study(tmp_path / "in", instances=2, rows=16, columns=16, patient=random_patient(4))
    (tmp_path / "in" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")

    run = run_cli("anonymize", "in", "out", "-c", "gw.yaml", "--workers", "1", cwd=tmp_path)

    assert run.returncode == 0, run.stderr
    assert f"storage folder {storage} was open to other users (mode 0755): now 0700" in run.stderr
    assert list(storage.glob("quarantine/*")), "the broken file is held in the quarantine"
    assert not open_to_others(storage)
