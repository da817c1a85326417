"""No patient data in logs, audit records or quarantine reasons, even with debug logging."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from service_harness import (
    Gateway,
    create_secret,
    dcmtk_tool,
    gateway_command,
    make_site,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = pytest.mark.skipif(dcmtk_tool("storescu") is None, reason="DCMTK storescu missing")


def test_debug_logs_audit_and_quarantine_hold_no_identifying_value(tmp_path: Path) -> None:
    patient = random_patient(4711)
    study = make_ct_study(tmp_path / "study", instances=4, rows=32, columns=32, patient=patient)
    # One instance the engine cannot clean (the name in the bytes of a retained ICC Profile),
    # so the quarantine path logs and writes its reason too.
    leaky = dcmread(study[-1])
    leaky.add_new(0x00282000, "OB", patient.name.encode("ascii") + b" ")
    leaky.save_as(study[-1])
    originals = [
        str(getattr(dcmread(path, stop_before_pixels=True), keyword))
        for path in study
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    ]
    needles = {v.lower() for v in patient.identifying_values() if v} | set(originals)
    needles |= {v.replace("^", " ") for v in needles}

    secret = create_secret(tmp_path / "keys")
    site = make_site(tmp_path / "site", secret, destination={"folder": str(tmp_path / "out")})
    log_path = site.root / "debug.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*gateway_command(), "-v", "run", "-c", str(site.config)],
            cwd=site.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    gateway = Gateway(site, process, log_path)
    try:
        wait_until(lambda: gateway.healthz() == 200, timeout=30, what="/healthz")
        sent = storescu(site.listen_port, study)
        assert len(sent.acknowledged) == len(study)
        wait_until(
            lambda: len(list((tmp_path / "out").rglob("*.dcm"))) == len(study) - 1
            and site.audit_records(),
            timeout=60,
            what="the clean instances at the destination",
        )
        time.sleep(0.5)
    finally:
        gateway.stop()

    texts = {"debug log": log_path.read_text(encoding="utf-8", errors="replace")}
    texts["audit"] = (site.storage / "audit.jsonl").read_text(encoding="utf-8")
    for reason in (site.storage / "quarantine").glob("*/reason.json"):
        texts[f"quarantine {reason.parent.name}"] = reason.read_text(encoding="utf-8")
    assert len(texts) == 3, "the leaky instance was quarantined with a reason"
    assert "DEBUG" in texts["debug log"]
    found = {
        (where, needle)
        for where, text in texts.items()
        for needle in needles
        if len(needle) >= 4 and needle in text.lower()
    }
    assert not found, f"identifying values in {sorted({w for w, _ in found})}"
