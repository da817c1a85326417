"""Pre-assigned pseudonyms (`deid.pseudonym_table`, issue 17 point 4): a trial's subject IDs.

Listed patients get the table's pseudonym in Patient ID and Patient's Name, offline, through
the running service and in clinical CSV files alike, and `reidentify` finds them by it;
unlisted ones are quarantined (`unlisted-patient`) or, with `unlisted_patients: keyed`,
get the keyed pseudonym; date shifts and UIDs stay keyed. Every problem in the table stops
`check-config` and `run` with exit 2, naming the file, the line and the reason, never a
cell. Real files, real commands, the real service; nothing is mocked.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydicom import dcmread
from pydicom.dataset import Dataset
from service_harness import (
    STORESCU,
    create_secret,
    leaks_in,
    make_site,
    run_cli,
    running_gateway,
    storescu,
    wait_until,
)

from gateway.cli.main import main as cli_main
from gateway.deid.actions import shift_da
from gateway.deid.profile import default_profile
from gateway.deid.pseudonym_table import load_pseudonym_table
from gateway.deid.pseudonyms import Pseudonyms, patient_key
from gateway.keys.site_secret import read_site_secret
from gateway.pipeline.files import EngineSettings, build_engine_and_mapping, encode
from gateway.pipeline.instance import Clean, Quarantine, process_instance
from gateway.stores import quarantine
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

SITE_ID = "TRIAL-SITE"
LISTED = random_patient(1701)  # in the table
UNLISTED = random_patient(1702)  # not in it
TRIAL_ID = "TRIAL-0001"
FEDERATION = (
    Path(__file__).resolve().parents[1] / "conf" / "profiles" / "research-federation.script"
)


# --- helpers ---------------------------------------------------------------------------------


def table_text(*rows: tuple[str, ...], header: str = "patient_id,issuer,pseudonym") -> str:
    return "\n".join([header, *(",".join(row) for row in rows)]) + "\n"


def listed_table(issuer: str = LISTED.issuer) -> str:
    return table_text((LISTED.patient_id, issuer, TRIAL_ID), ("MRN9999999", "", "TRIAL-0002"))


def write_config(root: Path, table: str | None, unlisted: str = "quarantine", **deid: Any) -> Path:
    """A site folder: keys (with the re-identification pair), a table, a configuration."""
    if not (root / "keys" / "site-secret.key").exists():
        assert run_cli("keys", "init", "--dir", "keys", cwd=root).returncode == 0
    settings: dict[str, Any] = {
        "site_id": SITE_ID,
        "storage_dir": "var",
        "keys": {"secret": "keys/site-secret.key", "reid_public_key": "keys/reid-public.pem"},
        "deid": {"unlisted_patients": unlisted, **deid},
    }
    if table is not None:
        (root / "trial.csv").write_text(table, encoding="utf-8")
        settings["deid"]["pseudonym_table"] = "trial.csv"
    config = root / "gw.yaml"
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return config


def study(folder: Path, patient: SyntheticPatient, seed: int, instances: int = 2) -> list[Path]:
    return make_ct_study(folder, instances=instances, rows=16, columns=16, patient=patient,
                         seed=seed)  # fmt: skip


def uids_of(paths: list[Path]) -> set[str]:
    """Every UID of the inputs (all depths and the file meta) that identifies something."""
    found: set[str] = set()

    def walk(ds: Dataset) -> None:
        for elem in ds:
            if elem.VR == "SQ":
                for item in elem.value or ():
                    walk(item)
            elif elem.VR == "UI" and elem.keyword != "ImplementationClassUID":
                values = elem.value if isinstance(elem.value, list) else [elem.value]
                found.update(
                    str(v) for v in values if v and not str(v).startswith("1.2.840.10008.")
                )

    for path in paths:
        ds = dcmread(path)
        walk(ds.file_meta)
        walk(ds)
    return found


def originals(inputs: list[Path], *patients: SyntheticPatient) -> list[str]:
    """What must appear nowhere in an output: names, IDs, birth dates, every UID."""
    values = [v for patient in patients for v in patient.identifying_values()]
    return values + sorted(uids_of(inputs))


def keyed(secret: Path, patient: SyntheticPatient) -> str:
    key = patient_key(patient.patient_id, patient.issuer, "", "", "")
    return Pseudonyms(read_site_secret(secret), SITE_ID).patient_id(key)


def without_patient_id(source: Path, target: Path) -> Path:
    ds = dcmread(source)
    del ds.PatientID
    del ds.IssuerOfPatientID
    ds.save_as(target, enforce_file_format=True)
    return target


# --- the table file --------------------------------------------------------------------------


def test_a_table_with_bom_spaces_semicolons_and_other_column_names_is_read(tmp_path: Path) -> None:
    path = tmp_path / "trial.csv"
    text = " Pseudonym ; Issuer of Patient ID ;PatientID\n TRIAL-7 ; HOSP ; 123 \nTRIAL-8;;456\n"
    path.write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    table = load_pseudonym_table(path, "keyed")
    assert table.lookup("123", "HOSP") == "TRIAL-7"
    assert table.lookup("123", "ELSEWHERE") is None  # a row with an issuer: that issuer only
    assert table.lookup("456", "ANY") == table.lookup("456") == "TRIAL-8"
    assert table.lookup("") is None
    assert table.pseudonym_for("999") is None  # keyed: the caller gives the keyed one
    shown = repr(table).replace(str(path), "PATH")  # the tmp path may hold "123" itself
    assert "123" not in shown and "TRIAL-7" not in shown


BAD_TABLES = [
    ("two pseudonyms", table_text(("A1", "", "T-1"), ("B2", "", "T-2"), ("A1", "", "T-3")),
     4, "patient listed again with another pseudonym (first on line 2)"),
    ("one pseudonym twice", table_text(("A1", "", "T-1"), ("B2", "", "T-1")),
     3, "pseudonym already given to another patient on line 2"),
    ("empty pseudonym", table_text(("A1", "", "T-1"), ("B2", "", " ")), 3, "empty pseudonym"),
    ("too long", table_text(("A1", "", "T" * 65)), 2, "longer than 64 characters"),
    ("backslash", table_text(("A1", "", "T\\1")), 2, "holds a backslash"),
    ("control", table_text(("A1", "", "T\x071")), 2, "holds a control character"),
    ("space", table_text(("A1", "", "TRIAL 1")), 2, "characters other than letters"),
    ("empty id", table_text(("A1", "", "T-1"), (" ", "", "T-2")), 3, "empty patient ID"),
    ("fields", table_text(("A1", "", "T-1"), ("B2", "T-2")), 3, "2 fields where the header has 3"),
    ("no header", table_text(("B2", "", "T-2"), header="A1,,T-1"), 1,
     "column 1 of the header row is not one of"),
    ("no pseudonym column", table_text(("A1", "x"), header="patient_id,issuer"), 1,
     "names no pseudonym column"),
    ("pseudonym is an ID", table_text(("A1", "", "B2"), ("B2", "", "T-2")), 2,
     "pseudonym is an original Patient ID of the table"),
    ("with and without issuer", table_text(("A1", "", "T-1"), ("A1", "HOSP", "T-2")), 2,
     "listed without an issuer here and with one elsewhere"),
]  # fmt: skip


@pytest.mark.parametrize(("table", "line", "reason"), [case[1:] for case in BAD_TABLES],
                         ids=[case[0] for case in BAD_TABLES])  # fmt: skip
def test_each_bad_table_stops_check_config_and_run_naming_file_line_and_reason(
    tmp_path: Path,
    table: str,
    line: int,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(tmp_path, table)
    where = f"gw.yaml: 'deid.pseudonym_table': {tmp_path / 'trial.csv'}:{line}: "
    outputs: list[tuple[str, int, str, str]] = []
    if table == BAD_TABLES[0][1]:
        # The installed command, both ways in; `run` reads the table through the same
        # start-up as `check-config`, so for the other tables the command's own function,
        # in this process, is enough (a second apiece less).
        for command in ("check-config", "run"):
            result = run_cli(command, "-c", "gw.yaml", cwd=tmp_path, timeout=60)
            outputs.append((command, result.returncode, result.stdout, result.stderr))
    else:
        monkeypatch.chdir(tmp_path)
        code = cli_main(["check-config", "-c", "gw.yaml"])
        captured = capsys.readouterr()
        outputs.append(("check-config", code, captured.out, captured.err))
    for command, code, out, err in outputs:
        assert code == 2, (command, out, err)
        assert any(x.startswith(where) and reason in x for x in err.splitlines()), err
        for cell in ("A1", "B2"):  # never a patient ID of the table
            assert cell not in err + out


def test_a_ctp_script_profile_with_a_table_is_refused_at_start_up(tmp_path: Path) -> None:
    write_config(tmp_path, listed_table(), profile=str(FEDERATION))
    result = run_cli("check-config", "-c", "gw.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "'deid.pseudonym_table': cannot be used with a CTP script" in result.stderr


# --- the engine: issuer respected ------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "listed"), [(LISTED.issuer, True), ("", True), ("OTHER_MRN", False)]
)
def test_the_issuer_column_decides_who_is_listed(tmp_path: Path, issuer: str, listed: bool) -> None:
    (tmp_path / "trial.csv").write_text(listed_table(issuer), encoding="utf-8")
    settings = EngineSettings(
        default_profile(), b"s" * 32, SITE_ID, tmp_path / "var",
        pseudonym_table=load_pseudonym_table(tmp_path / "trial.csv"),
    )  # fmt: skip
    engine, _ = build_engine_and_mapping(settings)
    (path,) = study(tmp_path / "in", LISTED, 3, instances=1)
    outcome = process_instance(dcmread(path), engine)
    if listed:
        assert isinstance(outcome, Clean), outcome
        assert outcome.dataset.PatientID == outcome.dataset.PatientName == TRIAL_ID
        output = tmp_path / "out.dcm"
        output.write_bytes(encode(outcome.dataset))
        assert leaks_in([output], originals([path], LISTED)) == []
    else:
        assert isinstance(outcome, Quarantine)
        assert (outcome.reason, outcome.stage) == ("unlisted-patient", "deid")
        assert LISTED.patient_id not in outcome.message and LISTED.issuer not in outcome.message


# --- offline: anonymize, csv, reidentify -----------------------------------------------------


def offline_inputs(root: Path) -> tuple[list[Path], list[Path], Path]:
    """The listed patient's study, the unlisted one's plus a file without Patient ID, and
    a clinical table with a row of each."""
    listed = study(root / "in" / "listed", LISTED, 11)
    unlisted = study(root / "in" / "unlisted", UNLISTED, 12)
    unlisted.append(without_patient_id(study(root / "c", random_patient(1703), 13, 1)[0],
                                       root / "in" / "no-id.dcm"))  # fmt: skip
    visits = root / "in" / "visits.csv"
    visits.write_text(
        "MRN,IssuerOfPatientID,Score\n"
        f"{LISTED.patient_id},{LISTED.issuer},3\n{UNLISTED.patient_id},{UNLISTED.issuer},4\n"
        f"{LISTED.patient_id},{LISTED.issuer},5\n",
        encoding="utf-8",
    )
    return listed, unlisted, visits


def test_offline_listed_patient_gets_the_trial_id_unlisted_ones_are_quarantined(
    tmp_path: Path,
) -> None:
    write_config(tmp_path, listed_table())
    listed, unlisted, _ = offline_inputs(tmp_path)
    run = run_cli("anonymize", "in", "out", "-c", "gw.yaml", "--workers", "2", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "written: 2, quarantined: 3" in run.stdout
    assert "csv rows left out (not in the pseudonym table): 1" in run.stdout
    outputs = sorted((tmp_path / "out").rglob("*.dcm"))
    assert {p.relative_to(tmp_path / "out").parts[0] for p in outputs} == {TRIAL_ID}
    secret = tmp_path / "keys" / "site-secret.key"
    pseudonyms = Pseudonyms(read_site_secret(secret), SITE_ID)
    shift = pseudonyms.date_shift_days(patient_key(LISTED.patient_id, LISTED.issuer, "", "", ""))
    for path in outputs:
        ds = dcmread(path)
        assert ds.PatientID == str(ds.PatientName) == TRIAL_ID
        assert ds.StudyDate == shift_da(LISTED.study_date, shift)  # dates stay keyed
        original = {dcmread(p).SOPInstanceUID for p in listed}
        assert ds.SOPInstanceUID in {pseudonyms.uid(uid) for uid in original}  # UIDs too
    entries = quarantine.entries(tmp_path / "var")
    assert [e.reason for e in entries] == ["unlisted-patient"] * 3
    assert all("deid.unlisted_patients is quarantine" in e.message for e in entries)
    visits = (tmp_path / "out" / "visits.csv").read_text(encoding="utf-8").splitlines()
    assert visits == ["MRN,Score", f"{TRIAL_ID},3", f"{TRIAL_ID},5"]
    written = [*outputs, tmp_path / "out" / "visits.csv"]
    assert leaks_in(written, originals(listed + unlisted, LISTED, UNLISTED)) == []
    log = run.stdout + run.stderr
    assert LISTED.patient_id not in log and UNLISTED.patient_id not in log

    person = run_cli("reidentify", "--private-key", "keys/reid-private.pem", "-c", "gw.yaml",
                     "--patient", TRIAL_ID, cwd=tmp_path)  # fmt: skip
    assert person.returncode == 0, person.stderr
    assert LISTED.patient_id in person.stdout and LISTED.family_name in person.stdout
    table = run_cli("reidentify", "--private-key", "keys/reid-private.pem", "-c", "gw.yaml",
                    "--csv", "out/visits.csv", "--id-column", "MRN", cwd=tmp_path)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert table.stdout.count(LISTED.patient_id) == 2


def test_offline_keyed_fallback_gives_unlisted_patients_the_keyed_pseudonym(
    tmp_path: Path,
) -> None:
    write_config(tmp_path, listed_table(), unlisted="keyed")
    listed, unlisted, _ = offline_inputs(tmp_path)
    run = run_cli("anonymize", "in", "out", "-c", "gw.yaml", "--workers", "1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "written: 5, quarantined: 0" in run.stdout
    expected = keyed(tmp_path / "keys" / "site-secret.key", UNLISTED)
    patients = {dcmread(p).PatientID for p in (tmp_path / "out").rglob("*.dcm")}
    assert TRIAL_ID in patients and expected in patients and len(patients) == 3
    visits = (tmp_path / "out" / "visits.csv").read_text(encoding="utf-8").splitlines()
    assert visits == ["MRN,Score", f"{TRIAL_ID},3", f"{expected},4", f"{TRIAL_ID},5"]
    outputs = [*(tmp_path / "out").rglob("*.dcm"), tmp_path / "out" / "visits.csv"]
    assert leaks_in(outputs, originals(listed + unlisted, LISTED, UNLISTED)) == []


def test_the_csv_command_gives_the_images_pseudonyms_and_leaves_unlisted_rows_out(
    tmp_path: Path,
) -> None:
    write_config(tmp_path, listed_table())
    (tmp_path / "visits.csv").write_text(
        f"MRN,Score\n{LISTED.patient_id},3\n{UNLISTED.patient_id},4\n", encoding="utf-8"
    )
    run = run_cli("csv", "visits.csv", "out.csv", "-c", "gw.yaml", "--issuer", LISTED.issuer,
                  cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "1 rows of 1 patients left out (not in deid.pseudonym_table)" in run.stdout
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines() == [
        "MRN,Score", f"{TRIAL_ID},3"
    ]  # fmt: skip
    assert leaks_in([tmp_path / "out.csv"], [LISTED.patient_id, UNLISTED.patient_id]) == []


# --- the running service ---------------------------------------------------------------------


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu missing")
@pytest.mark.timeout(180)
def test_the_service_forwards_the_trial_id_and_quarantines_the_unlisted_patient(
    tmp_path: Path,
) -> None:
    secret = create_secret(tmp_path / "keys")
    site = make_site(tmp_path / "site", secret, destination={"folder": str(tmp_path / "export")},
                     quiet_seconds=0.5)  # fmt: skip
    (site.root / "trial.csv").write_text(listed_table(), encoding="utf-8")
    site.write(deid={"pseudonym_table": str(site.root / "trial.csv")})
    listed = study(tmp_path / "listed", LISTED, 21, instances=3)
    unlisted = study(tmp_path / "unlisted", UNLISTED, 22, instances=2)
    with running_gateway(site) as gateway:
        assert storescu(site.listen_port, listed + unlisted).acknowledged == listed + unlisted
        wait_until(
            lambda: (
                gateway.metric("instances_received") == 5
                and gateway.metric("queue_depth") == 0
                and len(quarantine.entries(site.storage)) == 2
                and len(list((tmp_path / "export").rglob("*.dcm"))) == 3
            ),
            timeout=90,
            what="both studies to be processed",
        )
        log = gateway.log()
    exported = sorted((tmp_path / "export").rglob("*.dcm"))
    for path in exported:
        ds = dcmread(path)
        assert ds.PatientID == str(ds.PatientName) == TRIAL_ID
    assert {e.reason for e in quarantine.entries(site.storage)} == {"unlisted-patient"}
    assert leaks_in(exported, originals(listed + unlisted, LISTED, UNLISTED)) == []
    for value in (LISTED.patient_id, UNLISTED.patient_id, LISTED.family_name):
        assert value not in log
    audit = (site.storage / "audit.jsonl").read_text(encoding="utf-8")
    assert "unlisted-patient" in audit
    assert LISTED.patient_id not in audit and UNLISTED.patient_id not in audit
