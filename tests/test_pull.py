"""`dicom-gateway pull` end to end: a real gateway (`dicom-gateway run`, folder
destination), Orthanc and DCMTK dcmqrscp as staging archives, everything on 127.0.0.1.

Each study is loaded into the archive with storescu, pulled with the command as a user types
it, and then looked for where an administrator looks: the pull's stdout and JSON report, the
gateway's /metrics (what it was sent), its audit trail and the folder destination, where
every file must be de-identified (no name, ID, accession or original UID of the patient in
any byte of it, file meta and nested sequences included).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pull_peers import Archive, dcmqrscp_source, orthanc_source
from pydicom import dcmread
from service_harness import (
    GATEWAY_AE,
    LOOPBACK,
    STORESCU,
    Gateway,
    Site,
    create_secret,
    free_port,
    gateway_command,
    leaks_in,
    make_site,
    running_gateway,
    storescu,
    wait_until,
)

from gateway.keys.keyed_hash import KeyedHash
from gateway.keys.site_secret import read_site_secret
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

pytestmark = [
    pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu missing"),
    pytest.mark.timeout(120),
]

SIZE = 32


@dataclass(frozen=True)
class Study:
    patient: SyntheticPatient
    files: list[Path]
    study_uid: str
    uids: list[str]  # every original UID of the study (study, series, instances, frame)

    @property
    def accession(self) -> str:
        return self.patient.accession


@dataclass
class World:
    tmp: Path
    site: Site
    gateway: Gateway
    orthanc: Archive
    keyed_hash: KeyedHash
    studies: dict[str, Study]

    def config(self, name: str = "pull.yaml", **source: Any) -> Path:
        """A configuration beside the gateway's, with `source:` (Orthanc by default)."""
        settings = {**self.site.settings}
        settings["source"] = {
            "ae_title": self.orthanc.ae_title,
            "host": LOOPBACK,
            "port": self.orthanc.port,
            "timeout_seconds": 20,
            **source,
        }
        path = self.site.root / name
        import yaml

        path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        return path

    def received(self) -> float:
        return self.gateway.metric("instances_received")


def make_study(folder: Path, seed: int, instances: int = 4) -> Study:
    patient = random_patient(seed)
    files = make_ct_study(
        folder / f"study{seed}", instances=instances, rows=SIZE, columns=SIZE,
        patient=patient, seed=seed,
    )  # fmt: skip
    uids: set[str] = set()
    for path in files:
        ds = dcmread(path, stop_before_pixels=True)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                        "FrameOfReferenceUID"):  # fmt: skip
            if ds.get(keyword):
                uids.add(str(ds.get(keyword)))
    study_uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    return Study(patient, files, study_uid, sorted(uids))


HOOK = """
import os
with open({out!r}, "a", encoding="utf-8") as out:
    out.write(os.environ["DICOM_GATEWAY_STUDY_HASH"] + " " + os.environ["DICOM_GATEWAY_REPORT"]
              + "\\n")
"""


def hook_reports(world: World, study: Study) -> list[str]:
    """The report paths the after-study hook was given for `study`."""
    path = world.tmp / "hooks.txt"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    key = world.keyed_hash(study.study_uid)
    return [line.split(" ", 1)[1] for line in lines if line.startswith(key + " ")]


SEEDS = {"uid": 701, "accession": 702, "patient": 703, "csv": 704, "get": 705,
         "dry": 706, "resume": 707, "resume-get": 710}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("pull")
    secret = create_secret(tmp / "keys")
    site = make_site(tmp / "site", secret, destination={"folder": str(tmp / "export")})
    # An after-study hook that notes each forwarded study's hash and the pull report's path.
    hook = tmp / "hook.py"
    hook.write_text(HOOK.format(out=str(tmp / "hooks.txt")), encoding="utf-8")
    site.write(hooks={"after_study": {"command": [sys.executable, str(hook)]}})
    studies = {
        name: make_study(tmp / "in", seed, instances=24 if name.startswith("resume") else 4)
        for name, seed in SEEDS.items()
    }
    with (
        orthanc_source(tmp, {GATEWAY_AE: site.listen_port}) as orthanc,
        running_gateway(site) as gateway,
    ):
        for study in studies.values():
            sent = storescu(orthanc.port, study.files, called_ae=orthanc.ae_title)
            assert len(sent.acknowledged) == len(study.files), sent.output
        keyed = KeyedHash(read_site_secret(secret))
        yield World(tmp, site, gateway, orthanc, keyed, studies)


def pull(config: Path, *args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gateway_command(), "pull", "-c", str(config), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def report_of(output: str) -> dict[str, Any]:
    line = [x for x in output.splitlines() if x.startswith("report: ")][-1]
    return dict(json.loads(Path(line[len("report: ") :]).read_text(encoding="utf-8")))


def forwarded(world: World, study: Study) -> set[str]:
    """The pseudonymous study UIDs of the study, once the gateway forwarded every instance
    (a study pulled in two runs may close in two rounds)."""
    key = world.keyed_hash(study.study_uid)

    def done() -> set[str] | None:
        rounds = [r for r in world.site.audit_records() if r.get("study_hash") == key]
        sent = [r for r in rounds if r.get("result") == "forwarded"]
        if sum(int(r["instances_out"]) for r in sent) < len(study.files):
            return None
        return {uid for r in sent for uid in r["pseudo_study_uids"]}

    return wait_until(done, timeout=30, what="the pulled study to be forwarded")


def output_files(world: World, pseudo_study_uids: set[str]) -> list[Path]:
    """The folder destination's files of these pseudonymous studies."""
    found = []
    for path in sorted((world.tmp / "export").rglob("*.dcm")):
        if str(dcmread(path, stop_before_pixels=True).StudyInstanceUID) in pseudo_study_uids:
            found.append(path)
    return found


def assert_arrived_clean(world: World, study: Study) -> None:
    pseudo_study_uids = forwarded(world, study)
    assert len(pseudo_study_uids) == 1
    files = output_files(world, pseudo_study_uids)
    assert len(files) == len(study.files)
    values = [*study.patient.identifying_values(), *study.uids]
    assert leaks_in(files, values) == []
    for path in files:
        ds = dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientID) != study.patient.patient_id


def assert_report_clean(report: dict[str, Any], studies: list[Study]) -> None:
    text = json.dumps(report).lower()
    for study in studies:
        for value in [study.patient.patient_id, study.accession, study.patient.name, *study.uids]:
            assert value.lower() not in text


# --- by study UID, accession, patient ID, CSV ---------------------------------------------


def test_pull_by_study_uid_reaches_the_destination_de_identified(world: World) -> None:
    study = world.studies["uid"]
    before = world.received()
    result = pull(world.config(), "--study", study.study_uid)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/1 studies retrieved, 4/4 instances" in result.stdout
    report = report_of(result.stdout)
    assert report["counts"]["found"] == 1 and report["counts"]["not_found"] == 0
    assert report["counts"]["instances_retrieved"] == 4
    assert report["studies"][0]["study_hash"] == world.keyed_hash(study.study_uid)
    assert report["studies"][0]["modalities"] == ["CT"]
    assert_report_clean(report, [study])
    assert world.received() - before == 4
    assert_arrived_clean(world, study)
    # The after-study hook was told which pull run the study came from.
    reports = wait_until(lambda: hook_reports(world, study), timeout=30,
                         what="the after-study hook for the pulled study")  # fmt: skip
    assert reports == [line[len("report: "):] for line in result.stdout.splitlines()
                       if line.startswith("report: ")]  # fmt: skip
    # Run again: nothing is fetched; the report now holds the gateway's side from the audit.
    again = pull(world.config(), "--study", study.study_uid)
    assert again.returncode == 0 and "already retrieved" in again.stdout
    assert world.received() - before == 4
    side = report_of(again.stdout)["gateway"]
    assert side["instances_forwarded"] == 4 and side["instances_quarantined"] == 0


def test_pull_by_accession_and_by_patient_id(world: World) -> None:
    by_accession, by_patient = world.studies["accession"], world.studies["patient"]
    before = world.received()
    result = pull(world.config(), "--accession", by_accession.accession, "NO-SUCH-ACC")
    assert result.returncode == 0, result.stdout + result.stderr
    report = report_of(result.stdout)
    assert report["counts"]["requested"] == 2
    assert report["counts"]["not_found"] == 1 and report["not_found"] == ["argument 2"]
    result = pull(world.config(), "--patient", by_patient.patient.patient_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert world.received() - before == 8
    assert_arrived_clean(world, by_accession)
    assert_arrived_clean(world, by_patient)
    assert_report_clean(report_of(result.stdout), [by_accession, by_patient])


def test_pull_by_csv_column(world: World) -> None:
    study = world.studies["csv"]
    table = world.tmp / "request.csv"
    table.write_text(f"Name,Accession Number\nx,{study.accession}\ny,UNKNOWN-1\n", encoding="utf-8")
    result = pull(world.config(), "--csv", table, "--column", "Accession Number")
    assert result.returncode == 0, result.stdout + result.stderr
    report = report_of(result.stdout)
    assert report["key"] == "accession" and report["not_found"] == ["row 3"]
    assert report["counts"]["studies_retrieved"] == 1
    assert_arrived_clean(world, study)


def test_pull_by_c_get_relays_through_the_running_gateway(world: World) -> None:
    study = world.studies["get"]
    before = world.received()
    config = world.config("gateway-get.yaml", retrieve="get")
    result = pull(config, "--study", study.study_uid, "--batch-size", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert world.received() - before == 4
    assert_arrived_clean(world, study)
    incoming = world.site.storage / "pull" / report_of(result.stdout)["run_id"] / "incoming"
    assert list(incoming.iterdir()) == []  # nothing identified left behind


def test_dry_run_moves_nothing(world: World) -> None:
    study = world.studies["dry"]
    before = world.received()
    result = pull(world.config(), "--patient", study.patient.patient_id, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would pull study 1" in result.stdout and "4 instances" in result.stdout
    report = report_of(result.stdout)
    assert report["dry_run"] is True and report["counts"]["found"] == 1
    assert not (world.site.storage / "pull" / f"{report['run_id']}.state.json").exists()
    assert report["counts"]["instances_expected"] == 4
    assert world.received() == before


# --- resume --------------------------------------------------------------------------------


def settled(count: Callable[[], int], quiet: float = 1.0, limit: float = 15.0) -> int:
    """`count()` once it has not changed for `quiet` seconds (at most `limit` seconds)."""
    value, since, deadline = count(), time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = count()
        if now != value:
            value, since = now, time.monotonic()
    return value


@pytest.mark.parametrize("retrieve", ["move", "get"])
def test_a_killed_run_started_again_fetches_only_what_is_missing(
    world: World, retrieve: str
) -> None:
    study = world.studies["resume" if retrieve == "move" else "resume-get"]
    config = world.config(f"pull-{retrieve}.yaml", retrieve=retrieve)
    before = world.received()
    ran_before = {p.name[:16] for p in (world.site.storage / "pull").glob("*.state.json")}
    command = [*gateway_command(), "pull", "-c", str(config), "--study",
               study.study_uid, "--batch-size", "2"]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for _ in range(50):  # bounded: one line per batch at most
            line = process.stdout.readline()
            if not line or " 2/24 instances" in line or " 4/24 instances" in line:
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    # A C-MOVE the killed run had asked for goes on at the source: count once it settles.
    got_first = settled(lambda: world.received() - before)
    assert 2 <= got_first < 24, "the first run was not cut off halfway"

    # Started again with --resume and a request that grew (its own run id would differ).
    runs = [p.name[:16] for p in (world.site.storage / "pull").glob("*.state.json")]
    run_id = next(r for r in runs if r not in ran_before)
    result = pull(config, "--study", study.study_uid, "1.2.3.4.5", "--batch-size", "2",
                  "--resume", run_id)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert report_of(result.stdout)["not_found"] == ["argument 2"]
    first_line = next(x for x in result.stdout.splitlines() if x.startswith("study 1/1"))
    already = int(first_line.split(": ")[1].split("/")[0])
    assert already >= 2 and already <= got_first
    # Asked again only for what the first run had not finished: at most one batch twice.
    total = world.received() - before
    assert 24 <= total <= 24 + 2, total
    assert total - got_first == 24 - already
    assert_arrived_clean(world, study)
    incoming = world.site.storage / "pull" / run_id / "incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


# --- errors --------------------------------------------------------------------------------


def test_source_down_is_a_clear_error(world: World) -> None:
    config = world.config("gateway-down.yaml", port=free_port())
    result = pull(config, "--accession", "X1")
    assert result.returncode == 1
    assert "source STAGING@127.0.0.1" in result.stderr and "no answer" in result.stderr


def test_no_source_configured_is_a_usage_error(world: World) -> None:
    result = pull(world.site.config, "--accession", "X1")
    assert result.returncode == 2
    assert "'source'" in result.stderr


def test_gateway_not_running_is_a_clear_error(world: World, tmp_path: Path) -> None:
    site = make_site(tmp_path / "other", world.site.secret, destination={"folder": str(tmp_path)})
    site.write(source={"ae_title": "STAGING", "host": LOOPBACK, "port": world.orthanc.port})
    result = pull(site.config, "--accession", "X1")
    assert result.returncode == 1
    assert "gateway DEID_GW@127.0.0.1" in result.stderr and "is it running" in result.stderr


# --- a second archive: DCMTK dcmqrscp ---------------------------------------------------------


def test_pull_from_dcmqrscp_by_accession(world: World) -> None:
    study = make_study(world.tmp / "in", 708)
    with dcmqrscp_source(world.tmp, {GATEWAY_AE: world.site.listen_port}) as archive:
        sent = storescu(archive.port, study.files, called_ae=archive.ae_title)
        assert len(sent.acknowledged) == len(study.files), sent.output
        config = world.config("gateway-dcmqr.yaml", ae_title=archive.ae_title, port=archive.port)
        before = world.received()
        result = pull(config, "--accession", study.accession)
        assert result.returncode == 0, result.stdout + result.stderr
        assert world.received() - before == 4
    report = report_of(result.stdout)
    assert report["counts"]["instances_retrieved"] == 4
    assert_report_clean(report, [study])
    assert_arrived_clean(world, study)


# --- the source over TLS ------------------------------------------------------------------------


def test_pull_from_a_source_over_tls(world: World) -> None:
    certs = world.tmp / "certs"
    made = subprocess.run(
        [*gateway_command(), "certs", "dev", "--dir", str(certs)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    study = make_study(world.tmp / "in", 709)
    tls = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(certs / "server.pem"),
        "DicomTlsPrivateKey": str(certs / "server-key.pem"),
        "DicomTlsTrustedCertificates": str(certs / "ca.pem"),
        "DicomTlsRemoteCertificateRequired": True,
    }
    with orthanc_source(
        world.tmp, {GATEWAY_AE: world.site.listen_port}, ae_title="SECURE", settings=tls
    ) as archive:
        # Loaded by its REST API: its DICOM port speaks TLS, which storescu here does not.
        for path in study.files:
            request = urllib.request.Request(
                f"{archive.http_url}/instances", data=path.read_bytes(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200
        client = {"cert": str(certs / "client.pem"), "key": str(certs / "client-key.pem"),
                  "ca": str(certs / "ca.pem")}  # fmt: skip
        config = world.config(
            "pull-tls.yaml", ae_title=archive.ae_title, port=archive.port, tls=client
        )
        before = world.received()
        result = pull(config, "--accession", study.accession)
        assert result.returncode == 0, result.stdout + result.stderr
        assert world.received() - before == 4
        # Without our client certificate the archive refuses, and the message says so.
        plain = world.config("pull-plain.yaml", ae_title=archive.ae_title, port=archive.port)
        refused = pull(plain, "--accession", study.accession)
        assert refused.returncode == 1 and "source SECURE@127.0.0.1" in refused.stderr
    assert_arrived_clean(world, study)
