"""A study processed partly before a crash gets a whole audit record after the restart.

Instances are de-identified as they arrive; what the workers reported of them is kept in
state.db with their processed marks, so the round's record (instances in and out, the
pseudonymous study UID) counts what was done before the crash too.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread
from service_harness import (
    STORESCU,
    create_secret,
    leaks_in,
    make_site,
    running_gateway,
    start_gateway,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu missing")


def processed(storage: Path) -> int:
    db = sqlite3.connect(f"file:{storage / 'state.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM instances WHERE processed = 1").fetchone()[0])
    finally:
        db.close()


def test_the_round_record_counts_what_was_processed_before_a_crash(tmp_path: Path) -> None:
    patient = random_patient(91)
    study = make_ct_study(tmp_path / "in", instances=10, rows=32, columns=32, patient=patient,
                          seed=91)  # fmt: skip
    export = tmp_path / "export"
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination={"folder": str(export)}, quiet_seconds=4)  # fmt: skip
    first = start_gateway(site)
    try:
        assert storescu(site.listen_port, study[:6]).acknowledged == study[:6]
        wait_until(lambda: processed(site.storage) == 6, timeout=60,
                   what="six instances processed on arrival")  # fmt: skip
    finally:
        os.kill(first.pid, signal.SIGKILL)  # a crash: no drain, no audit record
        first.stop(timeout=10)
    assert site.audit_records() == []
    with running_gateway(site) as gateway:
        assert storescu(site.listen_port, study[6:]).acknowledged == study[6:]
        wait_until(lambda: gateway.metric("studies_forwarded") == 1, timeout=60,
                   what="the study forwarded")  # fmt: skip
    out = sorted(export.rglob("*.dcm"))
    assert len(out) == 10
    (record,) = site.audit_records()
    assert (record["instances_in"], record["instances_out"]) == (10, 10)
    assert record["instances_quarantined"] == 0
    pseudonymous = {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in out}
    assert record["pseudo_study_uids"] == sorted(pseudonymous)
    originals = [patient.name, patient.patient_id, patient.accession]
    originals += [str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in study]
    assert (
        leaks_in([*out, site.storage / "audit.jsonl", site.storage / "state.db"], originals) == []
    )
