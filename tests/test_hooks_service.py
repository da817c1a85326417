"""After-study hooks in the running service: a script hook gets the pseudonymous study UID
once its study is forwarded; a failing hook is audited and the next study still goes."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from pydicom import dcmread
from service_harness import (
    STORESCU,
    create_secret,
    leaks_in,
    make_site,
    running_gateway,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu missing")

# Appends the study UID it is given to a file; fails (exit 3) the first time.
HOOK = """
import os, sys
seen = sys.argv[1]
first = not os.path.exists(seen)
with open(seen, "a", encoding="utf-8") as out:
    out.write(os.environ["DICOM_GATEWAY_STUDY_UID"] + "\\n")
print("noted round", os.environ["DICOM_GATEWAY_ROUND"])
sys.exit(3 if first else 0)
"""


def test_a_script_hook_gets_the_pseudonymous_study_and_a_failure_holds_nothing_up(
    tmp_path: Path,
) -> None:
    script, seen = tmp_path / "hook.py", tmp_path / "seen.txt"
    script.write_text(textwrap.dedent(HOOK), encoding="utf-8")
    export = tmp_path / "export"
    site = make_site(tmp_path / "site", create_secret(tmp_path / "keys"),
                     destination={"folder": str(export)}, quiet_seconds=0.5)  # fmt: skip
    site.write(hooks={"after_study": {"command": [sys.executable, str(script), str(seen)],
                                      "timeout_seconds": 20}})  # fmt: skip
    patients = [random_patient(81), random_patient(82)]
    studies = [
        make_ct_study(tmp_path / f"in-{n}", instances=3, rows=32, columns=32, patient=p, seed=n)
        for n, p in zip((81, 82), patients, strict=True)
    ]
    with running_gateway(site) as gateway:
        for number, study in enumerate(studies, start=1):
            assert storescu(site.listen_port, study).acknowledged == study
            wait_until(lambda n=number: gateway.metric("studies_forwarded") == n, timeout=60,
                       what=f"study {number} forwarded")  # fmt: skip
        wait_until(lambda: len(site.audit_records("after_study_hook")) == 2, timeout=30,
                   what="both hooks audited")  # fmt: skip
    first, second = site.audit_records("after_study_hook")
    assert (first["outcome"], first["exit_status"]) == ("failed", 3)
    assert (second["outcome"], second["exit_status"]) == ("succeeded", 0)
    assert "noted round" in second["output"]
    exported = sorted(export.rglob("*.dcm"))
    assert len(exported) == 6  # the failed hook held nothing up
    pseudonymous = {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in exported}
    assert set(seen.read_text(encoding="utf-8").split()) == pseudonymous
    originals = [str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for s in studies
                 for p in s]  # fmt: skip
    for patient in patients:
        originals += [patient.name, patient.patient_id, patient.accession]
    audit = site.storage / "audit.jsonl"
    assert leaks_in([seen, audit], originals) == []
