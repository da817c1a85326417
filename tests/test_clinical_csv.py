"""Clinical CSV files: the images' pseudonyms and date shifts, nothing of the originals.

A research data manager's table names patients by their hospital ID, repeats the ID in
other columns, carries names and dates in several spellings, and comes from Excel in
whatever encoding and delimiter the workstation uses. The table must come out with exactly
the pseudonym and date shift the DICOM path gives the same patient, or not at all.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydicom import dcmread
from service_harness import leaks_in, run_cli

from gateway.deid.clinical_csv import CsvError, pseudonymise_csv
from gateway.deid.profile import CsvRules, default_profile
from gateway.deid.pseudonyms import Pseudonyms
from gateway.keys.site_secret import read_site_secret
from gateway.offline import EngineSettings, anonymize_csv
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

SITE_ID = "CSV-SITE"
RULES = CsvRules(
    id_column="MRN",
    date_columns=("VisitDate", "labdate", "ScanDate", "FollowUp"),
    drop_columns=("name", "BirthDate"),
)


def _formats(day: str) -> list[str]:
    """A YYYYMMDD date in every spelling the tool reads."""
    parsed = date(int(day[:4]), int(day[4:6]), int(day[6:]))
    return [
        parsed.strftime("%Y%m%d"),
        parsed.strftime("%Y-%m-%d"),
        parsed.strftime("%d/%m/%Y"),
        parsed.strftime("%d.%m.%Y"),
    ]


def _days_between(later: str, earlier: str) -> int:
    first = date(int(earlier[:4]), int(earlier[4:6]), int(earlier[6:]))
    second = date(int(later[:4]), int(later[4:6]), int(later[6:]))
    return (second - first).days


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site folder: keys from `keys init` and a config with a re-identification key."""
    root = tmp_path_factory.mktemp("csv-site")
    assert run_cli("keys", "init", "--dir", "keys", cwd=root).returncode == 0
    (root / "gw.yaml").write_text(
        f"site_id: {SITE_ID}\nstorage_dir: var\n"
        "keys: {secret: keys/site-secret.key, reid_public_key: keys/reid-public.pem}\n",
        encoding="utf-8",
    )
    return root


def _settings(site: Path, rules: CsvRules = RULES, *, keep_dates: bool = True) -> EngineSettings:
    profile = default_profile() if keep_dates else dataclasses.replace(
        default_profile(), options=frozenset()
    )
    return EngineSettings(
        dataclasses.replace(profile, csv=rules),
        read_site_secret(site / "keys" / "site-secret.key"),
        SITE_ID,
        site / "var",
        site / "keys" / "reid-public.pem",
    )


def _table(patient: SyntheticPatient, other: SyntheticPatient) -> str:
    """Visits of two patients; the first patient's ID repeated in another column."""
    day = patient.study_date
    iso, slashed, dotted = _formats(day)[1:]
    given = patient.name.split("^")[1]
    return (
        "MRN,IssuerOfPatientID,Name,BirthDate,VisitDate,LabDate,ScanDate,FollowUp,Value,"
        "ReferredBy\n"
        f"{patient.patient_id},{patient.issuer},\"{patient.family_name}, {given}\","
        f"{patient.birth_date},{iso},{slashed},{day},{dotted},5.4,\n"
        f"{other.patient_id},{other.issuer},{other.family_name},{other.birth_date},"
        f"2021-3-7,,{other.study_date},,7,{patient.patient_id}\n"
    )


def test_table_gets_the_images_pseudonym_and_date_shift(site: Path, tmp_path: Path) -> None:
    patient, other = random_patient(301), random_patient(302)
    make_ct_study(tmp_path / "in", instances=1, rows=16, columns=16, patient=patient, seed=3)
    run = run_cli("anonymize", tmp_path / "in", tmp_path / "out", "-c", site / "gw.yaml",
                  cwd=site)
    assert run.returncode == 0, run.stderr
    (image,) = sorted((tmp_path / "out").rglob("*.dcm"))
    clean = dcmread(image, stop_before_pixels=True)
    shift = _days_between(patient.study_date, str(clean.StudyDate))
    assert shift > 0

    source = tmp_path / "visits.csv"
    source.write_text(_table(patient, other), encoding="utf-8")
    target = tmp_path / "pseudo" / "visits.csv"
    report = anonymize_csv(source, target, _settings(site))

    assert report.rows == 2 and len(report.patients) == 2
    assert report.shifted == ("VisitDate", "LabDate", "ScanDate", "FollowUp")
    assert set(report.dropped) == {"IssuerOfPatientID", "Name", "BirthDate"}
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "MRN,VisitDate,LabDate,ScanDate,FollowUp,Value,ReferredBy"
    first, second = (line.split(",") for line in lines[1:])
    assert first[0] == clean.PatientID  # exactly the images' pseudonym
    moved = (date.fromisoformat(_formats(patient.study_date)[1]) - timedelta(days=shift))
    assert first[1:5] == [
        moved.strftime("%Y-%m-%d"), moved.strftime("%d/%m/%Y"), str(clean.StudyDate),
        moved.strftime("%d.%m.%Y"),
    ]
    assert first[5:] == ["5.4", ""]
    settings = _settings(site)
    engine = settings.profile.build_engine(Pseudonyms(settings.secret, SITE_ID))
    identity = engine.patient_identity(other.patient_id, other.issuer)
    assert second[0] == identity.pseudonym != first[0]
    assert identity.shift_days is not None
    visit = date(2021, 3, 7) - timedelta(days=identity.shift_days)
    assert second[1] == f"{visit.year}-{visit.month}-{visit.day}"  # keeps its own padding
    assert second[2] == "" and second[6] == first[0]  # the repeated ID is pseudonymised
    originals = [
        patient.patient_id, other.patient_id, patient.issuer, other.issuer,
        patient.family_name, other.family_name, patient.name.split("^")[1],
        *_formats(patient.birth_date), *_formats(other.birth_date),
        *_formats(patient.study_date), *_formats(other.study_date), "2021-3-7", "2021-03-07",
    ]
    assert leaks_in([target], originals) == []


def test_a_profile_without_dates_empties_the_date_columns(site: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("MRN,VisitDate,Value\nX1,2024-01-17,3\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    anonymize_csv(source, target, _settings(site, keep_dates=False))
    assert target.read_text(encoding="utf-8").splitlines()[1].split(",")[1:] == ["", "3"]


@pytest.mark.parametrize(
    ("encoding", "delimiter", "bom"),
    [
        ("cp1252", ";", b""),
        ("utf-16-le", "\t", codecs.BOM_UTF16_LE),
        ("utf-8", ",", codecs.BOM_UTF8),
        ("utf-8", "|", b""),
    ],
)
def test_encoding_and_delimiter_are_sniffed(
    site: Path, tmp_path: Path, encoding: str, delimiter: str, bom: bytes
) -> None:
    rows = [["MRN", "Ward", "VisitDate", "Note"], ["P-7781", "Gériatrie", "17.01.2024", "a, b"],
            ["P-7782", "Cœur", "", "x"]]
    text = "\r\n".join(delimiter.join(row) for row in rows).replace("a, b", '"a, b"') + "\r\n"
    source = tmp_path / "in.csv"
    source.write_bytes(bom + text.encode(encoding))
    target = tmp_path / "out.csv"
    report = anonymize_csv(source, target, _settings(site))
    assert report.delimiter == delimiter
    raw = target.read_bytes()
    assert not raw.startswith(codecs.BOM_UTF8) and b"\r\n" in raw
    out = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), delimiter=delimiter))
    assert out[0] == rows[0]
    assert [row[1] for row in out[1:]] == ["Gériatrie", "Cœur"]
    assert out[1][2] != "17.01.2024" and out[1][2].count(".") == 2 and out[2][2] == ""
    assert out[1][3] == "a, b"
    assert leaks_in([target], ["P-7781", "P-7782", "17.01.2024"]) == []


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"),
    [
        ("MRN,VisitDate\nA1,2024-01-17\nA2,2024-01-18,9\n", 3, None, "3 fields where"),
        ("MRN,VisitDate\nA1,2024-01-17\nA2,17 Jan 2024\n", 3, "VisitDate", "not a date"),
        ("MRN,VisitDate\nA1,2024-02-30\n", 2, "VisitDate", "not a date"),
        ('MRN,Note,VisitDate\nA1,"two\nlines",2024-01-17\n\n  ,x,2024-01-18\n', 5, "MRN",
         "empty patient ID"),
        ("A1,2024-01-17\nA2,2024-01-18\n", 1, None, "no header row"),
        ("", None, None, "header row"),
        ("MRN,Seen\nA1,2024-01-17\n", 2, "Seen", "neither date_columns"),
        ("MRN,Seen\nA1,20240117\nA2,\nA3,20230101\n", 2, "Seen", "neither date_columns"),
        ("Patient,VisitDate\nA1,2024-01-17\n", 1, "MRN", "not in the header row"),
    ],
)
def test_a_malformed_row_is_reported_and_nothing_is_written(
    site: Path, tmp_path: Path, text: str, line: int | None, column: str | None, reason: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(text, encoding="utf-8")
    target = tmp_path / "out" / "out.csv"
    engine = default_profile().build_engine(Pseudonyms(b"k" * 32, SITE_ID))
    rules = dataclasses.replace(RULES, date_columns=("VisitDate",))
    with pytest.raises(CsvError) as caught:
        pseudonymise_csv(source, target, engine, rules)
    error = caught.value
    assert (error.line, error.column) == (line, column)
    assert reason in error.reason
    assert str(error).startswith(f"{source}:{line}:" if line else f"{source}:")
    assert not target.exists() and not any(target.parent.glob("*"))
    for value in ("A1", "A2", "2024-01-17", "17 Jan"):
        assert value not in str(error)


def test_csv_command_exit_codes_and_reidentification(site: Path, tmp_path: Path) -> None:
    config = site / "gw.yaml"
    source = tmp_path / "in.csv"
    source.write_text("Hospital Number;Score\nQX-4417;3\nQX-4418;QX-4417\n", encoding="cp1252")
    done = run_cli("csv", source, tmp_path / "out.csv", "-c", config, cwd=site)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert "QX-44" not in text and text.startswith("Hospital Number;Score\n")
    back = run_cli("reidentify", "--private-key", "keys/reid-private.pem", "-c", config,
                   "--csv", tmp_path / "out.csv", "--id-column", "Hospital Number", cwd=site)
    assert back.returncode == 0, back.stderr
    assert "QX-4417" in back.stdout and "QX-4418" in back.stdout

    source.write_text("MRN,Score\nQX-4417,3\n,4\n", encoding="utf-8")
    bad = run_cli("csv", source, tmp_path / "bad.csv", "-c", config, cwd=site)
    assert bad.returncode == 1
    assert f"{source}:3: column 'MRN': empty patient ID" in bad.stderr
    assert "QX-4417" not in bad.stdout + bad.stderr
    assert not (tmp_path / "bad.csv").exists()
    wrong_column = run_cli("csv", source, tmp_path / "bad.csv", "-c", config,
                           "--id-column", "Subject", cwd=site)
    assert wrong_column.returncode == 1 and "column 'Subject'" in wrong_column.stderr
    same = run_cli("csv", source, source, "-c", config, cwd=site)
    assert same.returncode == 2 and "QX-4417" in source.read_text(encoding="utf-8")
    missing = run_cli("csv", tmp_path / "nope.csv", tmp_path / "x.csv", "-c", config, cwd=site)
    assert missing.returncode == 2 and "not found" in missing.stderr
    no_config = run_cli("csv", source, tmp_path / "x.csv", "-c", tmp_path / "none.yaml",
                        cwd=site)
    assert no_config.returncode == 2 and not (tmp_path / "x.csv").exists()


def test_anonymize_pseudonymises_every_csv_of_the_folder(site: Path, tmp_path: Path) -> None:
    patient = random_patient(303)
    inputs = tmp_path / "export"
    make_ct_study(inputs / "images", instances=2, rows=16, columns=16, patient=patient, seed=4)
    (inputs / "clinical").mkdir()
    (inputs / "clinical" / "labs.CSV").write_text(
        f"PatientID;IssuerOfPatientID;Hb\n{patient.patient_id};{patient.issuer};13.1\n",
        encoding="utf-8",
    )
    (inputs / "bad.csv").write_text(
        f"PatientID,Hb\n{patient.patient_id},13.1\n{patient.patient_id}\n", encoding="utf-8"
    )
    run = run_cli("anonymize", inputs, tmp_path / "out", "-c", site / "gw.yaml", cwd=site)
    assert run.returncode == 0, run.stderr
    assert "written: 2," in run.stdout and "csv written: 1, csv failed: 1" in run.stdout
    assert "csv failed: bad.csv: line 3:" in run.stderr
    images = sorted((tmp_path / "out").rglob("*.dcm"))
    assert len(images) == 2
    pseudonym = str(dcmread(images[0], stop_before_pixels=True).PatientID)
    labs = (tmp_path / "out" / "clinical" / "labs.CSV").read_text(encoding="utf-8")
    assert labs == f"PatientID;Hb\n{pseudonym};13.1\n"
    assert not (tmp_path / "out" / "bad.csv").exists()
    assert patient.patient_id not in run.stdout + run.stderr


def test_years_as_column_names_are_a_header(site: Path, tmp_path: Path) -> None:
    source = tmp_path / "wide.csv"
    source.write_text("Subject,2022,2023\nA1,3,4\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    anonymize_csv(source, target, _settings(site, CsvRules()))
    header, row = target.read_text(encoding="utf-8").splitlines()
    assert header == "Subject,2022,2023" and row.endswith(",3,4") and "A1" not in row
