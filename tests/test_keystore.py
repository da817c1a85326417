"""The sealed mapping as its users meet it: the gateway writes it, only the key holder reads it."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import fresh_python
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydicom import dcmread

from gateway.base.identifiers import collect_identifiers
from gateway.deid.engine import Engine
from gateway.deid.profile import default_profile
from gateway.deid.pseudonyms import Pseudonyms, patient_key
from gateway.keys.reid_keys import (
    PRIVATE_KEY_FILENAME,
    PUBLIC_KEY_FILENAME,
    PassphraseRequiredError,
    ReidKeyError,
    create_reid_keypair,
    load_private_key,
    load_public_key,
)
from gateway.keys.site_secret import create_site_secret, read_site_secret
from gateway.reidentify import ReidentifyError, reidentify
from gateway.stores.audit import AuditLog
from gateway.stores.mapping_reader import MappingReader
from gateway.stores.mapping_records import (
    KINDS,
    MAPPING_FILENAME,
    DamagedRecordError,
    InstanceOriginals,
    MappingEntry,
    PseudonymNotFoundError,
    WrongKeyError,
)
from gateway.stores.mapping_writer import MappingWriter
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

SITE_ID = "KEYSTORE-SITE"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@dataclass
class Site:
    """A gateway host (site secret, public key, config, storage) and an officer's private key."""

    host: Path
    secret: Path
    public_key: Path
    private_key: Path
    config: Path
    mapping: Path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    host = tmp_path / "gateway-host"
    certs = host / "certs"
    secret = create_site_secret(certs)
    public, private = create_reid_keypair(certs)
    # As `keys init` tells the operator: the private key leaves the gateway host.
    officer = tmp_path / "officer"
    officer.mkdir(mode=0o700)
    moved = officer / PRIVATE_KEY_FILENAME
    shutil.move(private, moved)
    config = host / "conf" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text(
        f"site_id: {SITE_ID}\nstorage_dir: ../var\nkeys:\n  secret: ../certs/site-secret.key\n"
        "  reid_public_key: ../certs/reid-public.pem\n",
        encoding="utf-8",
    )
    return Site(host, secret, public, moved, config, host / "var" / MAPPING_FILENAME)


@dataclass
class RecordedStudy:
    """One synthetic study as the pipeline de-identified and recorded it."""

    patient: SyntheticPatient
    patient_pseudonym: str
    study_pseudonym: str
    originals: list[InstanceOriginals]
    pseudonymous: dict[str, str]  # pseudonymous SOP Instance UID -> original
    series: dict[str, str]  # pseudonymous Series UID -> original
    date_shift_days: int | None


def record_study(
    site: Site, writer: MappingWriter, folder: Path, patient: SyntheticPatient, seed: int
) -> RecordedStudy:
    """What the pipeline does per instance: capture originals, de-identify, record."""
    engine = Engine(default_profile(), Pseudonyms(read_site_secret(site.secret), SITE_ID))
    paths = make_ct_study(folder, instances=3, rows=8, columns=8, patient=patient, seed=seed)
    originals, instances, series = [], {}, {}
    result = None
    for path in paths:
        ds = dcmread(path)
        captured = InstanceOriginals.from_dataset(ds)
        result = engine.deidentify(ds, collect_identifiers(ds, engine.profile.keeps))
        writer.record_instance(captured, result)
        originals.append(captured)
        instances[result.sop_instance_uid] = captured.sop_instance_uid
        series[result.series_uid] = captured.series_uid
    assert result is not None
    return RecordedStudy(
        patient,
        result.patient_pseudonym,
        result.study_uid,
        originals,
        instances,
        series,
        result.date_shift_days,
    )


def originals_of(study: RecordedStudy) -> set[str]:
    """Every original value the mapping holds for this study (the secrets to look for)."""
    patient = study.patient
    values = {
        patient.patient_id,
        patient.issuer,
        patient.name,
        patient.family_name,
        patient.given_name,
        patient.middle_name,
        patient.birth_date,
        patient.accession,
    }
    for captured in study.originals:
        values |= {captured.study_uid, captured.series_uid, captured.sop_instance_uid}
    return {value for value in values if value}


# -- keys ---------------------------------------------------------------------------------


def test_keys_init_writes_an_owner_only_pair_and_never_replaces_it(tmp_path: Path) -> None:
    public, private = create_reid_keypair(tmp_path / "keys")

    assert (public.name, private.name) == (PUBLIC_KEY_FILENAME, PRIVATE_KEY_FILENAME)
    assert mode_of(public) == mode_of(private) == 0o600
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    before = (public.read_bytes(), private.read_bytes())

    with pytest.raises(ReidKeyError, match="refusing to overwrite") as refused:
        create_reid_keypair(tmp_path / "keys")
    assert str(public) in str(refused.value)
    assert (public.read_bytes(), private.read_bytes()) == before


def test_a_lone_existing_private_key_is_not_replaced_either(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / PRIVATE_KEY_FILENAME).write_bytes(b"precious")

    with pytest.raises(ReidKeyError, match=PRIVATE_KEY_FILENAME):
        create_reid_keypair(keys)
    assert (keys / PRIVATE_KEY_FILENAME).read_bytes() == b"precious"
    assert not (keys / PUBLIC_KEY_FILENAME).exists()


def test_an_encrypted_private_key_needs_its_passphrase(tmp_path: Path) -> None:
    public, private = create_reid_keypair(tmp_path, passphrase="correct horse battery")
    assert private.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    with pytest.raises(PassphraseRequiredError, match="encrypted"):
        load_private_key(private)
    with pytest.raises(ReidKeyError, match="wrong passphrase"):
        load_private_key(private, "incorrect horse")
    key = load_private_key(private, "correct horse battery")
    assert key.public_key() == load_public_key(public)


def test_key_files_that_are_not_what_they_should_be_say_why(tmp_path: Path) -> None:
    public, private = create_reid_keypair(tmp_path / "keys")

    with pytest.raises(ReidKeyError, match=r"not found: .*missing.pem"):
        load_public_key(tmp_path / "missing.pem")
    with pytest.raises(ReidKeyError, match=r"holds a private key.*not belong on the gateway"):
        load_public_key(private)
    with pytest.raises(ReidKeyError, match="holds a public key"):
        load_private_key(public)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    garbage.chmod(0o600)
    with pytest.raises(ReidKeyError, match="not a PEM public key"):
        load_public_key(garbage)
    with pytest.raises(ReidKeyError, match="not a PEM private key"):
        load_private_key(garbage)
    other = tmp_path / "ed25519.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    other.chmod(0o600)
    with pytest.raises(ReidKeyError, match=r"Ed25519 private key; .*X25519"):
        load_private_key(other)
    private.chmod(0o644)
    with pytest.raises(ReidKeyError, match=r"accessible by group or others.*chmod 600"):
        load_private_key(private)


# -- sealing and opening --------------------------------------------------------------------


def test_every_kind_round_trips_through_the_private_key(site: Site) -> None:
    originals = {
        "patient": json.dumps({"PatientID": "RT-1", "PatientName": "Roundtrip^Ada"}),
        "date_shift": "1234",
        "study": "1.2.3.4.100",
        "accession": "ACC-RT-77",
        "series": "1.2.3.4.100.1",
        "instance": "1.2.3.4.100.1.1",
    }
    assert set(originals) == set(KINDS)
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        for kind, original in originals.items():
            assert writer.record(kind, f"PSEUDO-{kind}", original, parent="PARENT")
        assert not writer.record("study", "PSEUDO-study", "1.2.3.4.100")  # already there

    with MappingReader(site.mapping, load_private_key(site.private_key)) as reader:
        for kind, original in originals.items():
            assert reader.lookup(kind, f"PSEUDO-{kind}") == original
        assert reader.lookup("study", "PSEUDO-unknown") is None
        assert reader.lookup("instance", "PSEUDO-study") is None  # kinds are kept apart


def test_the_first_original_for_a_pseudonym_is_kept(site: Site) -> None:
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        writer.record("study", "2.25.1", "1.2.3.first")
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        writer.record("study", "2.25.1", "1.2.3.second")
    with MappingReader(site.mapping, load_private_key(site.private_key)) as reader:
        assert reader.lookup("study", "2.25.1") == "1.2.3.first"


def test_a_study_is_found_whole_by_study_and_by_patient(site: Site, tmp_path: Path) -> None:
    patient = random_patient(7)
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        first = record_study(site, writer, tmp_path / "s1", patient, seed=1)
        second = record_study(site, writer, tmp_path / "s2", patient, seed=2)
        other = record_study(site, writer, tmp_path / "s3", random_patient(8), seed=3)
    assert first.patient_pseudonym == second.patient_pseudonym != other.patient_pseudonym

    with MappingReader(site.mapping, load_private_key(site.private_key)) as reader:
        found = reader.study(first.study_pseudonym)
        assert found["StudyInstanceUID"] == first.originals[0].study_uid
        assert found["AccessionNumber"] == patient.accession
        assert found["patient"]["pseudonym"] == first.patient_pseudonym
        assert found["patient"]["original"] == {
            "PatientID": patient.patient_id,
            "IssuerOfPatientID": patient.issuer,
            "PatientName": patient.name,
            "PatientBirthDate": patient.birth_date,
        }
        key = patient_key(patient.patient_id, patient.issuer, patient.name, "", "")
        expected_shift = Pseudonyms(read_site_secret(site.secret), SITE_ID).date_shift_days(key)
        assert found["patient"]["date_shift_days"] == first.date_shift_days == expected_shift
        assert {s["pseudonym"]: s["SeriesInstanceUID"] for s in found["series"]} == first.series
        instances = {
            i["pseudonym"]: i["SOPInstanceUID"] for s in found["series"] for i in s["instances"]
        }
        assert instances == first.pseudonymous

        whole = reader.patient(first.patient_pseudonym)
        assert whole["original"]["PatientID"] == patient.patient_id
        assert {s["pseudonym"]: s["StudyInstanceUID"] for s in whole["studies"]} == {
            first.study_pseudonym: first.originals[0].study_uid,
            second.study_pseudonym: second.originals[0].study_uid,
        }
        assert {s["AccessionNumber"] for s in whole["studies"]} == {patient.accession}

        with pytest.raises(PseudonymNotFoundError, match="no study"):
            reader.study("2.25.404")
        with pytest.raises(PseudonymNotFoundError, match="no patient"):
            reader.patient("NOBODY-404")


def test_a_study_costs_one_new_record_per_instance_after_the_first(site: Site) -> None:
    @dataclass
    class Identity:
        patient_pseudonym: str
        study_uid: str
        series_uid: str
        sop_instance_uid: str
        date_shift_days: int | None

    captured = InstanceOriginals(
        "ID1", "", "Doe^Jane", "19700101", "1.2.9", "1.2.9.1", "1.2.9.1.1", "ACC1"
    )
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        first = writer.record_instance(
            captured, Identity("P", "2.25.9", "2.25.91", "2.25.911", 400)
        )
        second = writer.record_instance(
            captured, Identity("P", "2.25.9", "2.25.91", "2.25.912", 400)
        )
    assert (first, second) == (6, 1)  # patient, date_shift, study, accession, series, instance


def test_a_wrong_private_key_is_told_apart_from_an_unknown_pseudonym(
    site: Site, tmp_path: Path
) -> None:
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        writer.record("study", "2.25.77", "1.2.3.77", parent="P-77")
    _, stranger = create_reid_keypair(tmp_path / "stranger")

    with MappingReader(site.mapping, load_private_key(stranger)) as reader:
        with pytest.raises(
            WrongKeyError, match=r"does not open this mapping.*sealed to the public"
        ):
            reader.lookup("study", "2.25.77")
        with pytest.raises(WrongKeyError):
            reader.study("2.25.77")
        assert reader.lookup("study", "2.25.78") is None  # not there: no key question


def test_a_sealed_original_moved_to_another_pseudonym_fails_to_open(site: Site) -> None:
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        writer.record("instance", "2.25.1", "1.2.3.1", parent="2.25.10")
        writer.record("instance", "2.25.2", "1.2.3.2", parent="2.25.10")
    with sqlite3.connect(site.mapping) as db:  # someone with write access swaps two records
        rows = dict(db.execute("SELECT pseudonym, sealed FROM mapping").fetchall())
        db.execute("UPDATE mapping SET sealed = ? WHERE pseudonym = '2.25.1'", (rows["2.25.2"],))
        db.execute("UPDATE mapping SET parent = '2.25.99' WHERE pseudonym = '2.25.2'")

    with MappingReader(site.mapping, load_private_key(site.private_key)) as reader:
        with pytest.raises(DamagedRecordError, match=r"instance record 2.25.1 .*authentication"):
            reader.lookup("instance", "2.25.1")
        with pytest.raises(DamagedRecordError):
            reader.lookup("instance", "2.25.2")  # moved under another parent


def _encodings(value: str) -> list[bytes]:
    variants = {value, value.lower(), value.upper(), value.replace("^", " ")}
    found = []
    for text in variants:
        for codec in ("utf-8", "utf-16-le", "utf-16-be"):
            found.append(text.lower().encode(codec))
    return found


def test_the_gateway_host_holds_nothing_that_reveals_an_original(
    site: Site, tmp_path: Path
) -> None:
    writer = MappingWriter(site.mapping, load_public_key(site.public_key))
    studies = [
        record_study(site, writer, tmp_path / "s1", random_patient(21), seed=1),
        record_study(site, writer, tmp_path / "s2", SyntheticPatient(), seed=2),
    ]
    needles = set().union(*(originals_of(study) for study in studies))
    # The date shift is an original too, but a 3-4 digit number occurs by chance in any
    # 2.25 decimal UID; it is covered by the round trip and the sealed column instead.

    def scan() -> list[str]:
        leaks = []
        for path in sorted(p for p in site.host.rglob("*") if p.is_file()):
            haystack = path.read_bytes().lower()  # ASCII case folding in every encoding
            leaks += [
                f"{path.name}: {n!r}" for n in needles for e in _encodings(n) if e in haystack
            ]
        return leaks

    wal = site.mapping.with_name(MAPPING_FILENAME + "-wal")
    assert wal.stat().st_size > 0  # the records are still in the write-ahead log
    assert scan() == []
    writer.close()  # the last connection checkpoints the log into mapping.db
    assert site.mapping.stat().st_size > 0
    assert scan() == []
    assert not list(site.host.rglob(PRIVATE_KEY_FILENAME))
    assert mode_of(site.mapping) == 0o600

    # What the host holds cannot open the store; the private key can.
    with pytest.raises(TypeError):
        MappingReader(site.mapping, load_public_key(site.public_key))  # type: ignore[arg-type]
    with MappingReader(site.mapping, load_private_key(site.private_key)) as reader:
        assert reader.study(studies[1].study_pseudonym)["AccessionNumber"] == "ACC24011700917"


def _record_in_worker(db: str, public_key: str, order: int, start: object) -> int:
    """One gateway worker process recording a study's records, in its own order."""
    writer = MappingWriter(Path(db), load_public_key(Path(public_key)))
    start.wait()  # type: ignore[attr-defined]
    recorded = 0
    numbers = range(200) if order == 0 else reversed(range(200))
    for number in numbers:
        recorded += writer.record_many(
            [
                *_study_entries(),
                _entry("instance", f"2.25.5{number:03d}", f"1.2.5.1.{number}", "2.25.51"),
            ]
        )
    writer.close()
    return recorded


def _entry(kind: str, pseudonym: str, original: str, parent: str | None) -> MappingEntry:
    return MappingEntry(kind, pseudonym, original, parent)


def _study_entries() -> list[MappingEntry]:
    return [
        _entry("patient", "P-5", json.dumps({"PatientID": "CONC-5"}), None),
        _entry("study", "2.25.5", "1.2.5", "P-5"),
        _entry("series", "2.25.51", "1.2.5.1", "2.25.5"),
    ]


def test_two_worker_processes_record_at_once_without_errors_or_duplicates(site: Site) -> None:
    context = multiprocessing.get_context("spawn")  # as the worker pool starts its processes
    start = context.Manager().Event()
    with context.Pool(2) as pool:
        pending = [
            pool.apply_async(
                _record_in_worker, (str(site.mapping), str(site.public_key), order, start)
            )
            for order in (0, 1)
        ]
        start.set()
        recorded = [job.get(timeout=120) for job in pending]

    assert sum(recorded) >= 203  # every record stored by one process or the other
    with sqlite3.connect(site.mapping) as db:
        rows = db.execute("SELECT kind, pseudonym FROM mapping").fetchall()
    assert len(rows) == len(set(rows)) == 203
    with MappingReader(site.mapping, load_private_key(site.private_key)) as reader:
        found = reader.study("2.25.5")
        assert len(found["series"][0]["instances"]) == 200
        assert {i["SOPInstanceUID"] for i in found["series"][0]["instances"]} == {
            f"1.2.5.1.{n}" for n in range(200)
        }


# -- reidentify -----------------------------------------------------------------------------


def test_reidentify_answers_and_audits_who_asked_for_which_pseudonym(
    site: Site, tmp_path: Path
) -> None:
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        study = record_study(site, writer, tmp_path / "s1", random_patient(31), seed=1)
    audit = AuditLog(site.host / "var" / "audit.jsonl")

    by_study = reidentify(
        site.mapping, site.private_key, study=study.study_pseudonym, audit=audit, who="officer"
    )
    by_patient = reidentify(
        site.mapping, site.private_key, patient=study.patient_pseudonym, audit=audit, who="officer"
    )

    assert study.patient.patient_id in by_study and study.patient.accession in by_study
    assert all(original in by_study for original in study.pseudonymous.values())
    assert study.patient.name in by_patient and study.originals[0].study_uid in by_patient
    records = [json.loads(line) for line in audit.path.read_text().splitlines()]
    assert [(r["event"], r["who"], r["outcome"]) for r in records] == [
        ("reidentify", "officer", "answered"),
        ("reidentify", "officer", "answered"),
    ]
    assert records[0]["pseudonyms"] == {"study": [study.study_pseudonym]}
    assert records[1]["pseudonyms"] == {"patient": [study.patient_pseudonym]}
    text = audit.path.read_bytes().lower()
    assert [n for n in originals_of(study) for e in _encodings(n) if e in text] == []


def test_reidentify_a_csv_adds_the_original_columns(site: Site, tmp_path: Path) -> None:
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        study = record_study(site, writer, tmp_path / "s1", random_patient(41), seed=1)
    table = tmp_path / "research.csv"
    table.write_text(
        "PatientID,StudyInstanceUID,score\n"
        f"{study.patient_pseudonym},{study.study_pseudonym},7\n"
        "UNKNOWN-1,2.25.404,3\n",
        encoding="utf-8",
    )
    audit = AuditLog(tmp_path / "audit.jsonl")

    text = reidentify(site.mapping, site.private_key, csv_path=table, audit=audit, who="officer")

    header, known, unknown = text.splitlines()
    assert header == (
        "PatientID,StudyInstanceUID,score,original_PatientID,original_IssuerOfPatientID,"
        "original_PatientName,original_PatientBirthDate,date_shift_days,"
        "original_StudyInstanceUID,original_AccessionNumber"
    )
    patient = study.patient
    assert known.split(",")[3:] == [
        patient.patient_id,
        patient.issuer,
        patient.name,
        patient.birth_date,
        str(study.date_shift_days),
        study.originals[0].study_uid,
        patient.accession,
    ]
    assert unknown == "UNKNOWN-1,2.25.404,3" + "," * 7
    (record,) = [json.loads(line) for line in audit.path.read_text().splitlines()]
    assert record["pseudonyms"] == {
        "patient": [study.patient_pseudonym, "UNKNOWN-1"],
        "study": [study.study_pseudonym, "2.25.404"],
    }
    assert (record["rows"], record["not_found"]) == (2, 2)
    assert str(table) not in audit.path.read_text()

    output = tmp_path / "reidentified.csv"
    summary = reidentify(
        site.mapping,
        site.private_key,
        csv_path=table,
        csv_output=output,
        audit=audit,
        who="officer",
    )
    assert summary.startswith(f"wrote {output}: 2 rows")
    assert output.read_text() == text and mode_of(output) == 0o600
    with pytest.raises(ReidentifyError, match="refusing to overwrite"):
        reidentify(
            site.mapping,
            site.private_key,
            csv_path=table,
            csv_output=output,
            audit=audit,
            who="officer",
        )


def test_a_csv_without_a_pseudonym_column_is_refused(site: Site, tmp_path: Path) -> None:
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        writer.record("study", "2.25.1", "1.2.3")
    table = tmp_path / "plain.csv"
    table.write_text("MRN,score\nX,1\n", encoding="utf-8")
    audit = AuditLog(tmp_path / "audit.jsonl")

    with pytest.raises(ReidentifyError, match=r"no pseudonym column.*PatientID"):
        reidentify(site.mapping, site.private_key, csv_path=table, audit=audit, who="officer")
    text = reidentify(
        site.mapping, site.private_key, csv_path=table, id_column="MRN", audit=audit, who="officer"
    )
    assert text.splitlines()[0].startswith("MRN,score,original_PatientID")


def test_reidentify_with_a_wrong_key_is_audited_and_answers_nothing(
    site: Site, tmp_path: Path
) -> None:
    with MappingWriter(site.mapping, load_public_key(site.public_key)) as writer:
        writer.record("study", "2.25.3", "1.2.3.secret", parent="P-3")
    _, stranger = create_reid_keypair(tmp_path / "stranger")
    audit = AuditLog(tmp_path / "audit.jsonl")

    with pytest.raises(WrongKeyError):
        reidentify(site.mapping, stranger, study="2.25.3", audit=audit, who="mallory")
    with pytest.raises(PseudonymNotFoundError):
        reidentify(site.mapping, site.private_key, study="2.25.404", audit=audit, who="officer")

    records = [json.loads(line) for line in audit.path.read_text().splitlines()]
    assert [(r["who"], r["outcome"]) for r in records] == [
        ("mallory", "wrong-key"),
        ("officer", "not-found"),
    ]
    assert "1.2.3.secret" not in audit.path.read_text()


def test_reidentify_asks_for_a_passphrase_only_when_the_key_has_one(
    site: Site, tmp_path: Path
) -> None:
    public, private = create_reid_keypair(tmp_path / "locked", passphrase="s3cret words")
    mapping = tmp_path / "var" / MAPPING_FILENAME
    with MappingWriter(mapping, load_public_key(public)) as writer:
        writer.record("study", "2.25.8", "1.2.8", parent="P-8")
    audit = AuditLog(tmp_path / "audit.jsonl")
    asked = []

    def ask() -> str:
        asked.append(True)
        return "s3cret words"

    text = reidentify(
        mapping, private, study="2.25.8", audit=audit, who="officer", ask_passphrase=ask
    )
    assert "1.2.8" in text and asked == [True]
    with pytest.raises(PassphraseRequiredError):
        reidentify(mapping, private, study="2.25.8", audit=audit, who="officer")


def test_reidentify_needs_exactly_one_question(site: Site) -> None:
    audit = AuditLog(site.host / "audit.jsonl")
    with pytest.raises(ReidentifyError, match="exactly one"):
        reidentify(site.mapping, site.private_key, audit=audit, who="officer")
    with pytest.raises(ReidentifyError, match="exactly one"):
        reidentify(
            site.mapping, site.private_key, patient="P", study="2.25.1", audit=audit, who="officer"
        )
    assert not os.path.exists(audit.path)


def test_the_service_never_imports_the_mapping_reader() -> None:
    # The gateway host cannot re-identify: the code that opens a sealed record is not even
    # loaded by the service, its workers or offline mode (only `reidentify` loads it).
    probe = (
        "import sys\n"
        "import gateway.service.gateway_service, gateway.pipeline.instance, gateway.offline\n"
        "assert 'gateway.stores.mapping_writer' in sys.modules\n"
        "print('gateway.stores.mapping_reader' in sys.modules)\n"
    )
    assert fresh_python(probe) == "False"
