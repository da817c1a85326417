"""The running gateway, end to end, as a PACS administrator sees it.

Each test starts the real service (`dicom-gateway run -c gateway.yaml`, a child process)
with a config in tmp_path (free loopback ports, a one-second quiet period, a secret from
`dicom-gateway keys init`, fast retries), sends with DCMTK storescu as a modality does, and
checks only what an administrator can observe: the files a real destination (DCMTK storescp
or Orthanc) received, /healthz and /metrics, `audit.jsonl`, the spool folder and the output
of `dicom-gateway quarantine`. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from peers import run_orthanc, run_storescp
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from service_harness import (
    ECHOSCU,
    STORESCP,
    STORESCU,
    STORESCU_PROPOSE,
    Gateway,
    Received,
    Site,
    StoreRun,
    ae_destination,
    create_secret,
    dcmtk_reads_sop_uids,
    echoscu,
    free_port,
    leaks_in,
    make_site,
    received_files,
    running_gateway,
    spool_files,
    start_gateway,
    storescp_on,
    storescu,
    storescu_by_syntax,
    wait_until,
)

from gateway.deid.pseudonyms import patient_key
from gateway.keys.keyed_hash import KeyedHash
from gateway.keys.site_secret import read_site_secret
from gateway.stores.spool import Spool
from gateway.tools.synthetic import SyntheticPatient, make_ct_study, random_patient

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
SIZE = 64  # small images keep the whole module within a few minutes
UID_ROOT = "2.25."
SETTLE_SECONDS = 60  # upper bound for a few small studies to pass quiet period + forwarding

# What DCMTK 3.6.7's storescu cannot send: it does not know these transfer syntaxes, so it
# cannot propose them (and does not decode them to send uncompressed).
CANNOT_SEND = {
    "1.2.840.10008.1.2.4.201": "HTJ2K lossless, unknown to DCMTK 3.6.7",
    "1.2.840.10008.1.2.4.202": "HTJ2K lossless RPCL, unknown to DCMTK 3.6.7",
    "1.2.840.10008.1.2.4.203": "HTJ2K, unknown to DCMTK 3.6.7",
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression, unknown to DCMTK 3.6.7",
}

pytestmark = [
    pytest.mark.skipif(
        None in (STORESCU, STORESCP, ECHOSCU), reason="DCMTK storescu/storescp/echoscu missing"
    ),
    pytest.mark.timeout(180),
]


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Original:
    """What the test knows of one input instance, to compare with what arrived."""

    path: Path
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    transfer_syntax: str
    patient_key: str


def read_original(path: Path) -> Original:
    """The input's identity, from which the site's pseudonyms of it can be computed."""
    ds = dcmread(path, stop_before_pixels=True, force=True)
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return Original(
        path=path,
        sop_instance_uid=str(ds.SOPInstanceUID),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        transfer_syntax=str(syntax or "1.2.840.10008.1.2"),
        patient_key=patient_key(
            str(ds.get("PatientID", "") or ""),
            str(ds.get("IssuerOfPatientID", "") or ""),
            str(ds.get("PatientName", "") or ""),
            str(ds.get("PatientBirthDate", "") or ""),
            str(ds.get("StudyInstanceUID", "") or ""),
        ),
    )


@dataclass(frozen=True)
class SampleFiles:
    """The shared sample files that are valid instances, grouped by storescu option."""

    groups: dict[str, list[Path]]
    skipped: dict[str, str]  # file name -> why storescu cannot send it

    @property
    def files(self) -> list[Path]:
        return [path for files in self.groups.values() for path in files]

    @property
    def compressed(self) -> list[Path]:
        return [
            p for option, files in self.groups.items() if option not in ("", "-xd") for p in files
        ]


def _bad_inputs() -> set[str]:
    """Files MANIFEST.md marks as BAD INPUT: not valid instances, so not sent here."""
    manifest = TESTDATA / "MANIFEST.md"
    bad = set()
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.startswith("| ") and "BAD INPUT" in line:
            bad.add(line.split("|")[1].strip())
    return bad


def prepare_samples(folder: Path) -> SampleFiles:
    """Copy the valid instances; give a fresh SOP Instance UID to those sharing one.

    Several samples are the same image in other transfer syntaxes with the same SOP
    Instance UID; sent together they would be one instance (the last one wins), so each
    later copy gets its own UID. Study and series UIDs stay, so the samples still form
    several multi-file studies.
    """
    folder.mkdir(parents=True)
    bad = _bad_inputs()
    groups: dict[str, list[Path]] = defaultdict(list)
    skipped: dict[str, str] = {}
    seen: set[str] = set()
    for source in sorted(TESTDATA.glob("*.dcm")):
        if source.name in bad:
            continue
        try:
            ds = dcmread(source, force=True)
            original = read_original(source)
        except Exception:
            continue
        if not (ds.get("SOPClassUID") and original.sop_instance_uid and original.study_uid):
            continue  # not an instance (a fragment, or no study)
        option = STORESCU_PROPOSE.get(original.transfer_syntax)
        if option is None:
            skipped[source.name] = CANNOT_SEND.get(
                original.transfer_syntax, f"transfer syntax {original.transfer_syntax}"
            )
            continue
        if not dcmtk_reads_sop_uids(source):
            skipped[source.name] = "DCMTK reads its SOP Class/Instance UID as UN"
            continue
        target = folder / source.name
        if original.sop_instance_uid in seen:
            ds.SOPInstanceUID = generate_uid(entropy_srcs=["e2e", source.name])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(target)
        else:
            shutil.copyfile(source, target)
        seen.add(str(ds.SOPInstanceUID))
        groups[option].append(target)
    return SampleFiles(dict(groups), skipped)


def multi_series_study(folder: Path, patient: SyntheticPatient, seed: int) -> list[Path]:
    """Two series of one synthetic CT study (shared Study and Frame of Reference UIDs)."""
    first = make_ct_study(
        folder / "s1", instances=4, rows=SIZE, columns=SIZE, patient=patient, seed=seed
    )
    second = make_ct_study(
        folder / "s2", instances=3, rows=SIZE, columns=SIZE, patient=patient, seed=seed + 1
    )
    head = dcmread(first[0], stop_before_pixels=True)
    for path in second:
        ds = dcmread(path)
        ds.StudyInstanceUID = head.StudyInstanceUID
        ds.FrameOfReferenceUID = head.FrameOfReferenceUID
        ds.SeriesNumber = 3
        ds.save_as(path)
    return first + second


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_secret(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> SampleFiles:
    if not TESTDATA.is_dir():
        pytest.skip(f"no test data at {TESTDATA}")
    return prepare_samples(tmp_path_factory.mktemp("samples") / "in")


@pytest.fixture(scope="module")
def patient() -> SyntheticPatient:
    return random_patient(31)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, patient: SyntheticPatient) -> list[Path]:
    return multi_series_study(tmp_path_factory.mktemp("study"), patient, seed=31)


# --- helpers ---------------------------------------------------------------------------------


def settled(gateway: Gateway, received: int) -> bool:
    """Every acknowledged instance counted and nothing left in the spool (forwarded or
    quarantined; a failed study would keep its instances in the queue)."""
    return gateway.metric("instances_received") >= received and gateway.metric("queue_depth") == 0


def wait_settled(gateway: Gateway, received: int, timeout: float = SETTLE_SECONDS) -> None:
    wait_until(
        lambda: settled(gateway, received),
        timeout=timeout,
        what=f"{received} instances received and the queue empty",
        interval=0.2,
    )


def quarantined_sops(site: Site) -> set[str]:
    """SOP Instance UIDs of the originals in the quarantine folder."""
    found = set()
    for original in (site.storage / "quarantine").glob("*/original.dcm"):
        found.add(str(dcmread(original, stop_before_pixels=True, force=True).SOPInstanceUID))
    return found


def by_pseudo_sop(site: Site, originals: list[Original]) -> dict[str, Original]:
    pseudonyms = site.pseudonyms()
    return {pseudonyms.uid(o.sop_instance_uid): o for o in originals}


def wait_for_files(out_dir: Path, count: int, timeout: float = SETTLE_SECONDS) -> list[Received]:
    return wait_until(
        lambda: (found := received_files(out_dir)) and len(found) >= count and found,
        timeout=timeout,
        what=f"{count} files in {out_dir.name}",
        interval=0.2,
    )


def assert_consistent_pseudonyms(
    site: Site, received: list[Received], originals: dict[str, Original]
) -> None:
    """Each input study has one new study UID, series grouping and frames of reference
    are kept one-to-one, and every new UID is the site's 2.25 pseudonym of the old one."""
    pseudonyms = site.pseudonyms()
    studies: dict[str, set[str]] = defaultdict(set)
    series: dict[str, set[str]] = defaultdict(set)
    frames: dict[str, set[str]] = defaultdict(set)
    for got in received:
        original = originals[got.sop_instance_uid]
        for uid in (got.sop_instance_uid, got.study_uid, got.series_uid):
            assert uid.startswith(UID_ROOT), (original.path.name, uid)
        studies[original.study_uid].add(got.study_uid)
        series[original.series_uid].add(got.series_uid)
        if original.frame_of_reference_uid:
            frames[original.frame_of_reference_uid].add(got.frame_of_reference_uid)
    for old, new in studies.items():
        assert new == {pseudonyms.uid(old)}, "an input study was split or renamed inconsistently"
    for mapping in (series, frames):
        assert all(len(new) == 1 for new in mapping.values())
        news = [next(iter(new)) for new in mapping.values()]
        assert len(set(news)) == len(news), "two input series/frames were merged into one"
        assert all(n.startswith(UID_ROOT) for n in news)


def send_samples_and_study(
    gateway: Gateway, samples: SampleFiles, study: list[Path]
) -> tuple[StoreRun, StoreRun]:
    port = gateway.site.listen_port
    return storescu_by_syntax(port, samples.groups), storescu(port, study)


# --- 1, 2: everything accepted arrives, de-identified, at storescp and at Orthanc --------------


def test_sample_files_that_storescu_cannot_send_are_named(samples: SampleFiles) -> None:
    """Not a check of the gateway: it makes the samples left out show in the summary."""
    assert samples.files
    if samples.skipped:
        shown = "; ".join(f"{name} ({why})" for name, why in sorted(samples.skipped.items()))
        pytest.skip(f"not sent, storescu cannot: {shown}")


def test_samples_and_a_multi_series_study_reach_storescp_de_identified_and_consistent(
    tmp_path: Path,
    secret: Path,
    samples: SampleFiles,
    study: list[Path],
    patient: SyntheticPatient,
) -> None:
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = make_site(tmp_path / "site", secret, destination=ae_destination(archive.port))
        with running_gateway(site) as gateway:
            sent_samples, sent_study = send_samples_and_study(gateway, samples, study)
            acknowledged = sent_samples.acknowledged + sent_study.acknowledged
            assert sent_study.acknowledged == study, sent_study.output
            refused = {
                p.name: status
                for p, status in sent_samples.statuses.items()
                if p not in sent_samples.acknowledged
            }
            assert refused == {}, "valid sample instances were not acknowledged"
            wait_settled(gateway, len(acknowledged))
            assert gateway.healthz() == 200
        received = received_files(tmp_path / "archive")

    originals = by_pseudo_sop(site, [read_original(p) for p in acknowledged])
    held = quarantined_sops(site)
    print(site.quarantine("list").stdout)
    expected = {uid for uid, o in originals.items() if o.sop_instance_uid not in held}
    counted = Counter(r.sop_instance_uid for r in received)
    assert set(counted) == expected, f"quarantined: {site.quarantine('list').stdout}"
    assert max(counted.values()) == 1, "an instance arrived twice"
    assert not held & {read_original(p).sop_instance_uid for p in study}
    # The samples are mostly clean: the gateway must forward most of them, not hold them.
    assert len(expected) >= len(samples.files) * 3 // 4

    # The patient's values in every file; an all-digit one (a birth date) only in the
    # patient's own: another sample's forty-digit 2.25 UIDs hold any eight digits by chance
    # now and then (the secret, so every UID, is new each run).
    mine = [r for r in received if originals[r.sop_instance_uid].path in study]
    values = patient.identifying_values()
    textual = [v for v in values if not v.isdigit()]
    assert leaks_in((r.path for r in received), textual) == []
    assert leaks_in((r.path for r in mine), values) == []
    assert {r.identity_removed for r in received} == {"YES"}
    assert_consistent_pseudonyms(site, received, originals)
    assert len({r.study_uid for r in mine}) == 1
    assert len({r.frame_of_reference_uid for r in mine}) == 1
    assert sorted(Counter(r.series_uid for r in mine).values()) == [3, 4]


def test_samples_and_a_study_reach_orthanc_under_the_pseudonym_one_study_each(
    tmp_path: Path,
    secret: Path,
    samples: SampleFiles,
    study: list[Path],
    patient: SyntheticPatient,
) -> None:
    with run_orthanc(tmp_path) as orthanc:
        destination = ae_destination(orthanc.dicom_port, ae_title=orthanc.ae_title)
        site = make_site(tmp_path / "site", secret, destination=destination)
        with running_gateway(site) as gateway:
            sent_samples, sent_study = send_samples_and_study(gateway, samples, study)
            acknowledged = sent_samples.acknowledged + sent_study.acknowledged
            wait_settled(gateway, len(acknowledged))
        instances = orthanc_get(orthanc.http_url, "/instances?expand")
        studies = orthanc_get(orthanc.http_url, "/studies?expand")

    originals = by_pseudo_sop(site, [read_original(p) for p in acknowledged])
    held = quarantined_sops(site)
    expected = {uid: o for uid, o in originals.items() if o.sop_instance_uid not in held}
    assert sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in instances) == sorted(expected)

    pseudonyms = site.pseudonyms()
    input_studies = {o.study_uid: o for o in expected.values()}
    assert len(studies) == len(input_studies), "one Orthanc study per input study"
    by_uid = {s["MainDicomTags"]["StudyInstanceUID"]: s for s in studies}
    assert set(by_uid) == {pseudonyms.uid(uid) for uid in input_studies}
    for old_uid, original in input_studies.items():
        tags = by_uid[pseudonyms.uid(old_uid)]["PatientMainDicomTags"]
        pseudonym = pseudonyms.patient_id(original.patient_key)
        assert (tags.get("PatientName"), tags.get("PatientID")) == (pseudonym, pseudonym)
    synthetic = by_uid[pseudonyms.uid(read_original(study[0]).study_uid)]
    shown = " ".join(str(v) for v in synthetic["PatientMainDicomTags"].values()).lower()
    assert not any(v.lower() in shown for v in patient.identifying_values())
    assert len(synthetic["Series"]) == 2


def orthanc_get(url: str, path: str) -> list[dict[str, Any]]:
    """Orthanc's REST API, the view a PACS user has of what arrived."""
    with urllib.request.urlopen(f"{url}{path}", timeout=10) as response:
        return json.loads(response.read())


# --- 3: the calling-AE allow list --------------------------------------------------------------


def test_modality_not_on_the_allow_list_is_refused_and_nothing_is_kept(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = make_site(
            tmp_path / "site",
            secret,
            destination=ae_destination(archive.port),
            allowed_calling_aes=["MODALITY1"],
        )
        with running_gateway(site) as gateway:
            echo = echoscu(site.listen_port, calling_ae="INTRUDER")
            sent = storescu(site.listen_port, study, calling_ae="INTRUDER")
            allowed = echoscu(site.listen_port, calling_ae="MODALITY1")
            assert echo.returncode != 0, echo.stdout + echo.stderr
            assert "Association Rejected" in echo.stdout + echo.stderr
            assert sent.returncode != 0 and sent.acknowledged == [], sent.output
            assert allowed.returncode == 0, allowed.stdout + allowed.stderr
            metrics = gateway.metrics()
            assert metrics["dicom_gateway_instances_received_total"] == 0
            assert metrics['dicom_gateway_failures_total{stage="association"}'] >= 2
            assert metrics["dicom_gateway_queue_depth"] == 0
        assert site.spool_rows() == []
        assert spool_files(site.storage / "spool") == []
        assert received_files(tmp_path / "archive") == []


# --- 4, 5, 6: duplicates, split studies, late instances -----------------------------------------


def test_the_same_instances_sent_twice_arrive_once(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = make_site(tmp_path / "site", secret, destination=ae_destination(archive.port))
        with running_gateway(site) as gateway:
            twice_in_one = storescu(site.listen_port, [*study, *study])
            once_more = storescu(site.listen_port, study)
            sends = len(twice_in_one.output.split("Sending file:")) - 1
            assert sends == 2 * len(study)
            assert len(once_more.acknowledged) == len(study)
            wait_settled(gateway, 3 * len(study))
            assert gateway.metric("studies_forwarded") == 1
        received = received_files(tmp_path / "archive")
    counted = Counter(r.sop_instance_uid for r in received)
    assert len(counted) == len(study)
    assert set(counted.values()) == {1}


def test_study_split_across_associations_is_forwarded_as_one_study(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = make_site(tmp_path / "site", secret, destination=ae_destination(archive.port))
        with running_gateway(site) as gateway:
            for part in (study[:2], study[2:5], study[5:]):
                assert storescu(site.listen_port, part).acknowledged == part
                time.sleep(0.3)  # the modality's pause between series, within the quiet period
            wait_settled(gateway, len(study))
        received = received_files(tmp_path / "archive")
    assert len(received) == len(study)
    assert len({r.study_uid for r in received}) == 1
    rounds = site.audit_records()
    assert [r["result"] for r in rounds] == ["forwarded"]
    assert rounds[0]["pseudo_study_uids"] == [received[0].study_uid]
    assert rounds[0]["instances_in"] == rounds[0]["instances_out"] == len(study)


def test_instance_arriving_after_its_study_was_forwarded_joins_the_same_pseudonymous_study(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    early, late = study[:-1], study[-1:]
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = make_site(tmp_path / "site", secret, destination=ae_destination(archive.port))
        with running_gateway(site) as gateway:
            assert storescu(site.listen_port, early).acknowledged == early
            first = wait_for_files(tmp_path / "archive", len(early))
            wait_settled(gateway, len(early))
            assert storescu(site.listen_port, late).acknowledged == late
            wait_settled(gateway, len(study))
        received = received_files(tmp_path / "archive")
    assert len(received) == len(study)
    assert {r.study_uid for r in received} == {first[0].study_uid}
    late_uid = site.pseudonyms().uid(read_original(late[0]).sop_instance_uid)
    assert late_uid in {r.sop_instance_uid for r in received}
    rounds = site.audit_records()
    assert [r["instances_out"] for r in rounds] == [len(early), len(late)]
    assert all(r["pseudo_study_uids"] == [first[0].study_uid] for r in rounds)


# --- 7, 8: an unreliable or picky destination --------------------------------------------------


def test_destination_down_then_up_gets_everything_exactly_once(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    port = free_port()  # nothing listens here yet
    site = make_site(tmp_path / "site", secret, destination=ae_destination(port))
    with running_gateway(site) as gateway:
        assert storescu(site.listen_port, study).acknowledged == study
        wait_until(
            lambda: gateway.metric("forward_retries") >= 2,
            timeout=30,
            what="forward retries in /metrics",
        )
        assert gateway.metric("queue_depth") == len(study)
        with storescp_on(port, tmp_path / "archive", extra_args=["+xa", "+uf"]):
            wait_settled(gateway, len(study))
        assert gateway.metric("studies_forwarded") == 1
    received = received_files(tmp_path / "archive")
    assert sorted(Counter(r.sop_instance_uid for r in received).values()) == [1] * len(study)


def test_destination_refusing_compressed_syntaxes_gets_them_decoded(
    tmp_path: Path, secret: Path, samples: SampleFiles
) -> None:
    compressed = {k: v for k, v in samples.groups.items() if k not in ("", "-xd")}
    # storescp's default: uncompressed transfer syntaxes only.
    with run_storescp(tmp_path / "archive", extra_args=["+uf"]) as archive:
        site = make_site(tmp_path / "site", secret, destination=ae_destination(archive.port))
        with running_gateway(site) as gateway:
            sent = storescu_by_syntax(site.listen_port, compressed)
            wait_settled(gateway, len(sent.acknowledged))
        received = received_files(tmp_path / "archive")
    originals = by_pseudo_sop(site, [read_original(p) for p in sent.acknowledged])
    held = quarantined_sops(site)
    expected = {u for u, o in originals.items() if o.sop_instance_uid not in held}
    assert {r.sop_instance_uid for r in received} == expected
    assert len(expected) >= len(samples.compressed) // 2
    assert {r.transfer_syntax for r in received} == {ExplicitVRLittleEndian}
    for got in received:
        source = dcmread(originals[got.sop_instance_uid].path)
        decoded = dcmread(got.path)
        assert np.array_equal(decoded.pixel_array, source.pixel_array), got.path.name


# --- 9: SIGTERM in the middle of a transfer ---------------------------------------------------


def test_sigterm_during_a_transfer_loses_nothing_acknowledged_and_sends_nothing_twice(
    tmp_path: Path, secret: Path, patient: SyntheticPatient
) -> None:
    # 128 KiB slices, four associations of 50: SIGTERM lands inside the second one.
    big = make_ct_study(
        tmp_path / "big", instances=200, rows=256, columns=256, patient=patient, seed=90
    )
    batches = [big[i : i + 50] for i in range(0, len(big), 50)]
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = make_site(tmp_path / "site", secret, destination=ae_destination(archive.port))
        gateway = start_gateway(site)
        runs: list[StoreRun] = []

        def modality() -> None:
            """Sends series by series, as a modality does; a refused association fails."""
            for batch in batches:
                runs.append(storescu(site.listen_port, batch, timeout=60))

        sender = threading.Thread(target=modality, daemon=True)
        try:
            sender.start()
            at_sigterm = wait_until(
                lambda: (n := gateway.metric("instances_received")) >= 60 and n,
                timeout=30,
                what="a third of the study received",
                interval=0.02,
            )
            gateway.process.send_signal(signal.SIGTERM)
            assert gateway.process.wait(timeout=45) == 0, gateway.log()
        finally:
            gateway.stop()
            sender.join(timeout=120)
        assert not sender.is_alive()
        acknowledged = [p for run in runs for p in run.acknowledged]
        assert len(acknowledged) >= 60, "the sender saw nothing acknowledged"

        with running_gateway(site) as gateway:
            wait_settled(gateway, 0)
            after_restart = received_files(tmp_path / "archive")
            # The modality sends again what was not acknowledged.
            missing = [p for p in big if p not in set(acknowledged)]
            if missing:
                assert storescu(site.listen_port, missing).acknowledged == missing
            wait_settled(gateway, len(missing))
        received = received_files(tmp_path / "archive")

    pseudonyms = site.pseudonyms()
    acknowledged_uids = {pseudonyms.uid(read_original(p).sop_instance_uid) for p in acknowledged}
    assert acknowledged_uids <= {r.sop_instance_uid for r in after_restart}
    counted = Counter(r.sop_instance_uid for r in received)
    assert len(counted) == len(big), "an acknowledged instance was lost"
    assert set(counted.values()) == {1}, "an instance was forwarded twice"
    print(
        f"SIGTERM after {at_sigterm:.0f} received; acknowledged before the restart: "
        f"{len(acknowledged)} of {len(big)}; per association:",
        [len(run.acknowledged) for run in runs],
    )


# --- 10: the storage folder runs out of space -------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the storage folder (needs root); unmounted in teardown."""
    mount_point = tmp_path / "storage"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        for _ in range(20):  # busy while a process that had files open there winds down
            if subprocess.run(["umount", str(mount_point)], check=False).returncode == 0:
                break
            time.sleep(0.25)
        else:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def full_storage_site(tmp_path: Path, secret: Path, storage: Path, port: int, quiet: float) -> Site:
    return make_site(
        tmp_path / "site",
        secret,
        destination=ae_destination(port),
        storage=storage,
        quiet_seconds=quiet,
    )


def processing_ended(gateway: Gateway) -> bool:
    """A worker finished a round, or failed on it (/metrics)."""
    metrics = gateway.metrics()
    worker_failed = metrics.get('dicom_gateway_failures_total{stage="worker"}', 0)
    return worker_failed >= 1 or metrics.get("dicom_gateway_processing_seconds_count", 0) >= 1


def grow(mount_point: Path) -> None:
    """Space returns: the administrator makes the file system bigger."""
    subprocess.run(["mount", "-o", "remount,size=64m", str(mount_point)], check=True)


def test_full_storage_refuses_with_a700_stays_up_and_accepts_again_once_space_returns(
    tmp_path: Path, secret: Path, patient: SyntheticPatient, small_tmpfs: Path
) -> None:
    # 30 x 128 KiB instances into 2 MiB: about half cannot fit. A quiet period of 4 s keeps
    # the study from being processed before space returns (that case is the next test).
    files = make_ct_study(
        tmp_path / "in", instances=30, rows=256, columns=256, patient=patient, seed=70
    )
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = full_storage_site(tmp_path, secret, small_tmpfs, archive.port, quiet=4)
        with running_gateway(site) as gateway:
            first = storescu(site.listen_port, files)
            refused = first.with_status("Refused: OutOfResources")
            print(f"disk full: {len(first.acknowledged)} stored, {len(refused)} refused (A700)")
            assert refused, first.output
            assert len(first.acknowledged) + len(refused) == len(files), first.statuses
            assert gateway.alive()
            assert gateway.healthz() in (200, 503)
            # Nothing half-written: no temporary files, every spool file recorded.
            spool = site.storage / "spool"
            assert list((spool / "tmp").iterdir()) == []
            recorded = {file for _, file in site.spool_rows()}
            on_disk = {str(p.relative_to(spool)) for p in spool_files(spool)}
            assert on_disk == recorded
            assert gateway.metric("instances_received") == len(first.acknowledged)
            assert gateway.metric("studies_completed") == 0, "processed before space returned"

            grow(small_tmpfs)
            wait_until(lambda: gateway.healthz() == 200, timeout=10, what="/healthz 200")
            again = storescu(site.listen_port, refused)
            assert again.acknowledged == refused, again.output
            wait_settled(gateway, len(files))
            assert gateway.alive()
        received = received_files(tmp_path / "archive")
    counted = Counter(r.sop_instance_uid for r in received)
    assert len(counted) == len(files), f"quarantine: {site.quarantine('list').stdout}"
    assert set(counted.values()) == {1}


def test_study_completed_while_storage_is_full_is_forwarded_once_space_returns(
    tmp_path: Path, secret: Path, patient: SyntheticPatient, small_tmpfs: Path
) -> None:
    files = make_ct_study(
        tmp_path / "in", instances=30, rows=256, columns=256, patient=patient, seed=71
    )
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = full_storage_site(tmp_path, secret, small_tmpfs, archive.port, quiet=1)
        with running_gateway(site) as gateway:
            stored = storescu(site.listen_port, files).acknowledged
            assert 0 < len(stored) < len(files)
            wait_until(
                lambda: processing_ended(gateway),
                timeout=15,
                what="the study to be processed while the storage is full",
            )
            grow(small_tmpfs)
            try:
                wait_settled(gateway, len(stored), timeout=15)
            finally:
                leftovers = [p.name for p in (site.storage / "quarantine").glob(".tmp-*")]
                print("quarantine staging left behind:", leftovers)
            log = gateway.log()[-8000:]
        received = received_files(tmp_path / "archive")
    archived = sorted(p.name for p in (tmp_path / "archive").rglob("*") if p.is_file())
    assert len({r.sop_instance_uid for r in received}) == len(stored), (
        f"quarantine: {site.quarantine('list').stdout}\narchive: {archived}\ngateway log:\n{log}"
    )


# --- 11: a study that failed to forward, and its release ----------------------------------------


def test_failed_study_is_listed_and_released_once_the_destination_works(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    port = free_port()  # nothing listens: every attempt is refused
    site = make_site(tmp_path / "site", secret, destination=ae_destination(port), max_attempts=2)
    with running_gateway(site) as gateway:
        assert storescu(site.listen_port, study).acknowledged == study
        listing = wait_until(
            lambda: "1 studies failed" in (out := site.quarantine("list").stdout) and out,
            timeout=30,
            what="the study to show as failed in `quarantine list`",
            interval=0.3,
        )
        failed = [line for line in listing.splitlines() if line.startswith("round-")]
        assert len(failed) == 1 and f"\tstudy\t{len(study)} instances\tforward/failed" in failed[0]
        round_id = failed[0].split("\t")[0]
        assert gateway.metric("queue_depth") == len(study)

        with storescp_on(port, tmp_path / "archive", extra_args=["+xa", "+uf"]):
            released = site.quarantine("release", round_id)
            assert released.returncode == 0, released.stderr
            assert "queued for forwarding again" in released.stdout
            wait_settled(gateway, len(study))
        assert "0 studies failed" in site.quarantine("list").stdout
        again = site.quarantine("release", round_id)
        assert again.returncode == 1
    received = received_files(tmp_path / "archive")
    assert sorted(Counter(r.sop_instance_uid for r in received).values()) == [1] * len(study)


# --- 12: health and counters ---------------------------------------------------------------------


def test_healthz_and_metrics_counters_match_what_was_sent(
    tmp_path: Path, secret: Path, study: list[Path], patient: SyntheticPatient
) -> None:
    other = make_ct_study(
        tmp_path / "other", instances=5, rows=SIZE, columns=SIZE, patient=patient, seed=55
    )
    with run_storescp(tmp_path / "archive", extra_args=["+xa", "+uf"]) as archive:
        site = make_site(tmp_path / "site", secret, destination=ae_destination(archive.port))
        with running_gateway(site) as gateway:
            assert gateway.healthz() == 200
            assert storescu(site.listen_port, [*study, *other]).acknowledged == [*study, *other]
            wait_settled(gateway, len(study) + len(other))
            metrics = gateway.metrics()
            assert gateway.healthz() == 200
        assert gateway.healthz() == 0  # stopped: nothing answers
    assert metrics["dicom_gateway_instances_received_total"] == len(study) + len(other)
    assert metrics["dicom_gateway_studies_completed_total"] == 2
    assert metrics["dicom_gateway_studies_forwarded_total"] == 2
    assert metrics["dicom_gateway_instances_quarantined_total"] == 0
    assert metrics["dicom_gateway_forward_retries_total"] == 0
    assert metrics["dicom_gateway_queue_depth"] == 0
    assert metrics["dicom_gateway_processing_seconds_count"] == 2
    assert len(received_files(tmp_path / "archive")) == len(study) + len(other)


# --- found while writing these tests ---------------------------------------------------------


def test_idle_tcp_connection_does_not_hold_up_shutdown(tmp_path: Path, secret: Path) -> None:
    """A load-balancer probe or port scan left open must not hold SIGTERM for the ACSE
    timeout (30 s): there is nothing in flight on a connection without an A-ASSOCIATE-RQ."""
    site = make_site(tmp_path / "site", secret, destination={"folder": str(tmp_path / "out")})
    gateway = start_gateway(site)
    try:
        with socket.create_connection(("127.0.0.1", site.listen_port), timeout=5):
            # Give the server time to accept it (nothing observable marks that), then idle.
            time.sleep(0.2)
            gateway.process.send_signal(signal.SIGTERM)
            try:
                gateway.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail("still running 10 s after SIGTERM with one idle connection open")
    finally:
        gateway.stop(timeout=1)


def test_quarantine_list_leaves_a_running_services_work_alone(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    site = make_site(tmp_path / "site", secret, destination={"folder": str(tmp_path / "out")})
    # Stands in for the running service's spool.
    service_spool = Spool(site.storage, KeyedHash(read_site_secret(secret)))
    try:
        data = study[0].read_bytes()
        original = read_original(study[0])
        service_spool.store(
            data,
            sop_instance_uid=original.sop_instance_uid,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            study_uid=original.study_uid,
            transfer_syntax=original.transfer_syntax,
            calling_ae="MODALITY1",
        )
        (due,) = service_spool.due_rounds(0, now=time.time() + 1)
        assert service_spool.claim(due.id) is not None  # a worker is processing it now
        outbox = service_spool.outbox(due.id)
        outbox.mkdir(parents=True)
        (outbox / "written-by-the-worker.dcm").write_bytes(b"clean instance")

        listing = site.quarantine("list")
        assert listing.returncode == 0, listing.stderr
        state = service_spool.get_round(due.id)
        assert state is not None and state.state == "processing"
        assert (outbox / "written-by-the-worker.dcm").exists()
    finally:
        service_spool.close()
