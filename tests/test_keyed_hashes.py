"""No unkeyed hash of an original UID anywhere the gateway writes or shows.

An unkeyed SHA-256 of a Study Instance UID written beside its pseudonyms links the two for
anyone who can reach the PACS: hash every UID there and match. So every hash of an original
the gateway writes (audit, logs, file names) is keyed with the site secret
(gateway.keys.keyed_hash), and the same secret gives the same hash across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import urllib.request
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from pydicom import dcmread
from service_harness import (
    LOOPBACK,
    Gateway,
    Site,
    create_secret,
    dcmtk_tool,
    gateway_command,
    make_site,
    run_cli,
    running_gateway,
    storescu,
    wait_until,
)

from gateway.keys.keyed_hash import KeyedHash
from gateway.keys.site_secret import read_site_secret
from gateway.tools.synthetic import make_ct_study, random_patient

UID_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def study_with_a_file_to_hold(folder: Path, seed: int) -> tuple[list[Path], Path]:
    """A small CT study whose last slice has less pixel data than its header says: that one
    is held in the quarantine, the rest go on."""
    files = make_ct_study(folder, instances=3, rows=16, columns=16,
                          patient=random_patient(seed), seed=seed)  # fmt: skip
    ds = dcmread(files[-1])
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(files[-1], enforce_file_format=True)
    return files, files[-1]


def original_uids(paths: Iterable[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        found.update(str(ds.get(tag)) for tag in UID_TAGS if ds.get(tag))
    return found


def unkeyed_traces(text: str, uids: Iterable[str]) -> list[str]:
    """Each original UID found in `text`, or the first 8 hex digits (so any longer prefix)
    of its plain SHA-256, SHA-1 or MD5."""
    lowered = text.lower()
    hits = []
    for uid in uids:
        if uid in lowered:
            hits.append(f"{uid} in clear")
        for algorithm in ("sha256", "sha1", "md5"):
            digest = hashlib.new(algorithm, uid.encode("ascii")).hexdigest()
            if digest[:8] in lowered:
                hits.append(f"{algorithm}({uid})[:8] = {digest[:8]}")
    return hits


def names_under(root: Path) -> str:
    return "\n".join(str(p.relative_to(root)) for p in root.rglob("*")) if root.is_dir() else ""


def metrics_text(site: Site) -> str:
    url = f"http://{LOOPBACK}:{site.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode("utf-8"))


def verbose_gateway(site: Site) -> AbstractContextManager[Gateway]:
    """`dicom-gateway -v run -c CONFIG`: debug logging, where UIDs' stand-ins are logged."""
    return running_gateway(site, [*gateway_command(), "-v", "run", "-c", str(site.config)])


def test_the_keyed_hash_is_the_sites_own_and_never_the_secret_itself() -> None:
    secret, uid = bytes(range(32)), "1.2.826.0.1.3680043.2.1125.1"
    keyed = KeyedHash(secret)
    assert keyed(uid) == KeyedHash(secret)(uid) == pickle.loads(pickle.dumps(keyed))(uid)
    assert len(keyed(uid)) == 16 and keyed(uid, 64).startswith(keyed(uid))
    assert keyed(uid) != KeyedHash(bytes(32))(uid)  # another site's secret, another hash
    assert keyed(uid, 64) != hmac.new(secret, uid.encode(), hashlib.sha256).hexdigest()
    assert secret.hex() not in repr(keyed) and keyed(uid) not in repr(keyed)
    with pytest.raises(ValueError):
        KeyedHash(b"")


@pytest.mark.skipif(dcmtk_tool("storescu") is None, reason="DCMTK storescu not installed")
def test_audit_logs_names_and_metrics_carry_only_keyed_hashes_of_original_uids(
    tmp_path: Path,
) -> None:
    secret = create_secret(tmp_path / "keys")
    keyed = KeyedHash(read_site_secret(secret))
    study, held = study_with_a_file_to_hold(tmp_path / "in", seed=21)
    uids = original_uids(study)
    study_uid = str(dcmread(study[0], stop_before_pixels=True).StudyInstanceUID)
    sops = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in study]
    site = make_site(tmp_path / "site", secret, destination={"folder": "PLACEHOLDER"},
                     quiet_seconds=3)  # fmt: skip
    site.write(destination={"folder": str(site.storage / "export")})
    seen: list[str] = []

    for attempt in (1, 2):  # the second gateway, restarted with the same secret, sends again
        with verbose_gateway(site) as gateway:
            assert storescu(site.listen_port, study).acknowledged == study
            spooled = {Path(name).name for _, name in site.spool_rows()}
            assert spooled == {f"{keyed(sop)}.dcm" for sop in sops}  # named by keyed hash
            seen.append(names_under(site.storage))
            wait_until(
                lambda n=attempt: len(site.audit_records()) == n,
                timeout=60,
                what="the study round's audit record",
            )
            seen.append(metrics_text(site))
            gateway.stop()
        log = gateway.log()
        assert f"stored instance {keyed(sops[0], 12)} from " in log  # debug lines are in
        seen.append(log)

    records = site.audit_records()
    assert [r["study_hash"] for r in records] == [keyed(study_uid)] * 2
    assert [r["instances_quarantined"] for r in records] == [1, 1]
    listing = site.quarantine("list")
    assert listing.returncode == 0 and "truncated-pixel-data" in listing.stdout
    seen += [
        (site.storage / "audit.jsonl").read_text(encoding="utf-8"),
        names_under(site.storage),
        listing.stdout,
        *(p.read_text(encoding="utf-8") for p in site.storage.glob("quarantine/*/reason.json")),
    ]
    assert held.name not in names_under(site.storage)
    assert unkeyed_traces("\n".join(seen), uids) == []


def test_anonymize_and_quarantine_release_use_the_keyed_hash_and_need_the_secret_to_spool(
    tmp_path: Path,
) -> None:
    secret = create_secret(tmp_path / "keys")
    keyed = KeyedHash(read_site_secret(secret))
    study, held = study_with_a_file_to_hold(tmp_path / "in", seed=22)
    uids = original_uids(study)
    (tmp_path / "gw.yaml").write_text(
        f"site_id: KEYED-SITE\nstorage_dir: var\nkeys: {{secret: {secret}}}\n", encoding="utf-8"
    )
    storage = tmp_path / "var"

    run = run_cli("-v", "anonymize", "in", "out", "-c", "gw.yaml", "--workers", "2",
                  cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "quarantined: 1" in run.stdout
    (entry,) = storage.glob("quarantine/*/reason.json")
    reason = json.loads(entry.read_text(encoding="utf-8"))
    status = held.stat()
    source = f"offline\0{held.resolve()}\0{status.st_size}\0{status.st_mtime_ns}"
    named = f"{source}\0{reason['stage']}\0{reason['reason']}"
    assert reason["source_key"] == keyed(named, 64)
    assert reason["source_key"] != hashlib.sha256(named.encode()).hexdigest()
    listing = run_cli("quarantine", "-c", "gw.yaml", "list", cwd=tmp_path)
    seen = [run.stdout, run.stderr, names_under(storage), listing.stdout, json.dumps(reason)]
    assert unkeyed_traces("\n".join(seen), uids) == []

    # Releasing an instance puts it into the spool, named by the keyed hash: no secret, no
    # release (a usage error naming the key); list and purge do not need the secret.
    hidden = secret.with_name("elsewhere.key")
    os.rename(secret, hidden)
    refused = run_cli("quarantine", "-c", "gw.yaml", "release", reason["id"], cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("gw.yaml: 'keys.secret': site secret not found"), refused
    assert run_cli("quarantine", "-c", "gw.yaml", "list", cwd=tmp_path).returncode == 0
    kept = run_cli("quarantine", "-c", "gw.yaml", "purge", "--older-than", "1", cwd=tmp_path)
    assert kept.returncode == 0 and "purged 0" in kept.stdout
    os.rename(hidden, secret)
    released = run_cli("quarantine", "-c", "gw.yaml", "release", reason["id"], cwd=tmp_path)
    assert released.returncode == 0, released.stderr
    sop = str(dcmread(held, stop_before_pixels=True).SOPInstanceUID)
    assert [p.name for p in storage.glob("spool/*/*.dcm")] == [f"{keyed(sop)}.dcm"]
    assert unkeyed_traces(names_under(storage) + released.stdout, uids) == []
