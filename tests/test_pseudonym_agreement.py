"""One patient, three ways in, one pseudonym: `anonymize`, `csv` and the network gateway.

A research archive joins images and clinical tables on the pseudonymous patient ID, and
lines up visit dates with study dates. That only works if the folder tool, the CSV tool and
the running service all ask the same function (`Engine.patient_identity`) and so give the
same patient the same pseudonym and the same date shift. Everything here runs as a site
runs it: `keys init`, one configuration file, the installed command, DCMTK storescu.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

import pytest
from pydicom import dcmread
from service_harness import (
    STORESCU,
    create_secret,
    leaks_in,
    make_site,
    received_files,
    run_cli,
    running_gateway,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu not installed")

PROFILE = """\
base: basic
options: [retain_longitudinal_modified_dates]
clinical_csv:
  id_column: MRN
  date_columns: [VisitDate]
  drop_columns: [Name]
"""


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def _dotted(day: str) -> str:
    return date(int(day[:4]), int(day[4:6]), int(day[6:])).strftime("%d.%m.%Y")


def test_anonymize_csv_and_network_give_a_patient_one_pseudonym_and_shift(
    tmp_path: Path,
) -> None:
    patient = random_patient(4242)
    secret = create_secret(tmp_path / "keys")
    site = make_site(tmp_path / "site", secret, destination={"folder": str(tmp_path / "net")})
    profile = tmp_path / "research.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    site.write(deid={"profile": str(profile)})

    folder = tmp_path / "export"
    (image,) = make_ct_study(folder, instances=1, rows=16, columns=16, patient=patient, seed=9)
    visit = _dotted(patient.study_date)
    (folder / "visits.csv").write_text(
        "MRN,IssuerOfPatientID,Name,VisitDate,Score\n"
        f"{patient.patient_id},{patient.issuer},{patient.family_name},{visit},4\n",
        encoding="utf-8",
    )
    # The data manager's own copy has no issuer column: the site names it on the command.
    table = tmp_path / "table.csv"
    table.write_text(f"MRN,VisitDate,Score\n{patient.patient_id},{visit},4\n", encoding="utf-8")

    offline = run_cli("anonymize", folder, tmp_path / "out", "-c", site.config, cwd=site.root)
    assert offline.returncode == 0, offline.stderr
    assert "csv written: 1" in offline.stdout
    by_folder = dcmread(next((tmp_path / "out").rglob("*.dcm")), stop_before_pixels=True)

    by_command = tmp_path / "table-pseudo.csv"
    command = run_cli("csv", table, by_command, "-c", site.config, "--issuer", patient.issuer,
                      cwd=site.root)
    assert command.returncode == 0, command.stderr

    with running_gateway(site):
        sent = storescu(site.listen_port, [image])
        assert sent.acknowledged == [image], sent.output
        (arrived,) = wait_until(
            lambda: received_files(tmp_path / "net"), timeout=60, what="the forwarded instance"
        )
    by_network = dcmread(arrived.path, stop_before_pixels=True)

    pseudonym = str(by_folder.PatientID)
    assert pseudonym != patient.patient_id
    assert str(by_network.PatientID) == pseudonym
    assert str(by_network.StudyDate) == str(by_folder.StudyDate) != patient.study_date
    # The visit on the study's day lands on the pseudonymised study's day: the same shift.
    expected = [["MRN", "VisitDate", "Score"], [pseudonym, _dotted(str(by_folder.StudyDate)), "4"]]
    assert _rows(tmp_path / "out" / "visits.csv") == expected
    assert _rows(by_command) == expected
    outputs = [by_command, tmp_path / "out" / "visits.csv", arrived.path]
    originals = [patient.patient_id, patient.family_name, patient.issuer, visit]
    assert leaks_in(outputs, originals) == []
