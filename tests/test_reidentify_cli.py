"""A processed study can be traced back only with the private key, and every use is audited."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from pydicom import dcmread
from service_harness import run_cli

from gateway.tools.synthetic import make_ct_study, random_patient


def test_reidentify_returns_exactly_the_originals_of_a_processed_study(tmp_path: Path) -> None:
    assert run_cli("keys", "init", "--dir", "keys", cwd=tmp_path).returncode == 0
    (tmp_path / "gw.yaml").write_text(
        "site_id: REID-SITE\nstorage_dir: var\n"
        "keys: {secret: keys/site-secret.key, reid_public_key: keys/reid-public.pem}\n",
        encoding="utf-8",
    )
    patient = random_patient(77)
    inputs = make_ct_study(tmp_path / "in", instances=3, rows=16, columns=16, patient=patient)
    first = dcmread(inputs[0], stop_before_pixels=True)
    run = run_cli("anonymize", "in", "out", "-c", "gw.yaml", "--workers", "1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    outputs = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(outputs) == 3
    clean = dcmread(outputs[0], stop_before_pixels=True)

    # Everything the gateway host holds (mapping, public key, secret, config) is no help.
    host_bytes = b"".join(
        p.read_bytes()
        for p in [*(tmp_path / "var").glob("mapping.db*"), *(tmp_path / "keys").glob("*")]
        if p.name != "reid-private.pem"
    ).lower()
    for value in (patient.patient_id, patient.family_name, first.StudyInstanceUID):
        assert value.lower().encode() not in host_bytes

    study = run_cli(
        "reidentify", "--private-key", "keys/reid-private.pem", "-c", "gw.yaml",
        "--study", clean.StudyInstanceUID, cwd=tmp_path,
    )
    assert study.returncode == 0, study.stderr
    assert first.StudyInstanceUID in study.stdout
    assert patient.patient_id in study.stdout
    assert patient.accession in study.stdout
    for path in inputs:
        assert dcmread(path, stop_before_pixels=True).SOPInstanceUID in study.stdout

    person = run_cli(
        "reidentify", "--private-key", "keys/reid-private.pem", "-c", "gw.yaml",
        "--patient", clean.PatientID, cwd=tmp_path,
    )
    assert person.returncode == 0, person.stderr
    assert patient.patient_id in person.stdout and patient.family_name in person.stdout

    assert run_cli("keys", "init", "--dir", "other", cwd=tmp_path).returncode == 0
    wrong = run_cli(
        "reidentify", "--private-key", "other/reid-private.pem", "-c", "gw.yaml",
        "--study", clean.StudyInstanceUID, cwd=tmp_path,
    )
    assert wrong.returncode == 1
    assert "error:" in wrong.stderr and first.StudyInstanceUID not in wrong.stderr + wrong.stdout

    audit = [
        json.loads(line)
        for line in (tmp_path / "var" / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    uses = [record for record in audit if record["event"] == "reidentify"]
    assert len(uses) == 3
    text = json.dumps(uses).lower()
    assert clean.StudyInstanceUID.lower() in text  # which pseudonym was asked about
    for value in (patient.patient_id, patient.family_name, first.StudyInstanceUID):
        assert value.lower() not in text  # never the answer


def test_the_audit_names_the_os_account_and_counts_what_was_disclosed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LOGNAME and USER are the caller's to set; the audit takes the process's real uid."""
    assert run_cli("keys", "init", "--dir", "keys", cwd=tmp_path).returncode == 0
    (tmp_path / "gw.yaml").write_text(
        "site_id: REID-SITE\nstorage_dir: var\n"
        "keys: {secret: keys/site-secret.key, reid_public_key: keys/reid-public.pem}\n",
        encoding="utf-8",
    )
    make_ct_study(tmp_path / "in", instances=3, rows=16, columns=16, patient=random_patient(5))
    run = run_cli("anonymize", "in", "out", "-c", "gw.yaml", "--workers", "1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    clean = dcmread(sorted((tmp_path / "out").rglob("*.dcm"))[0], stop_before_pixels=True)

    monkeypatch.setenv("LOGNAME", "mallory")
    monkeypatch.setenv("USER", "mallory")
    study = run_cli(
        "reidentify", "--private-key", "keys/reid-private.pem", "-c", "gw.yaml",
        "--study", clean.StudyInstanceUID, cwd=tmp_path,
    )
    assert study.returncode == 0, study.stderr
    missing = run_cli(
        "reidentify", "--private-key", "keys/reid-private.pem", "-c", "gw.yaml",
        "--study", "2.25.404", cwd=tmp_path,
    )
    assert missing.returncode == 1

    audit = [
        json.loads(line)
        for line in (tmp_path / "var" / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    answered, not_found = [r for r in audit if r["event"] == "reidentify"]
    account = pwd.getpwuid(os.getuid()).pw_name
    assert (answered["who"], answered["uid"]) == (account, os.getuid())
    assert (not_found["who"], not_found["uid"]) == (account, os.getuid())
    assert "mallory" not in json.dumps(audit)
    # The study, its accession number, the patient and date shift, one series, 3 instances.
    assert answered["outcome"] == "answered" and answered["disclosed"] == 8
    assert not_found["outcome"] == "not-found" and "disclosed" not in not_found
