"""`run`: one poison instance never holds up its study, and a round that fails for the
environment's sake is retried with a backoff and a bound, counted where an administrator
looks (/metrics, `quarantine list`).

Before the fix a round whose instance raised (the mapping writer's "empty pseudonym for a
patient record") failed as a whole; the pool was rebuilt and the round retried every quiet
period forever, and none of its clean instances was ever forwarded.

Some tests run the real service through a small launcher that changes it first (a
processing bug on one marked instance; a smaller retry bound), as `python -c` would.
"""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from pydicom import dcmread
from service_harness import (
    STORESCU,
    Gateway,
    Site,
    create_secret,
    make_site,
    running_gateway,
    storescu,
    wait_until,
)

from gateway.service.worker_pool import (
    PROCESS_MAX_ATTEMPTS,
    PROCESS_RETRY_MAX_SECONDS,
    processing_retry_delay,
)
from gateway.stores import quarantine
from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = [
    pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu missing"),
    pytest.mark.timeout(180),
]

FEDERATION = (
    Path(__file__).resolve().parents[1] / "conf" / "profiles" / "research-federation.script"
)
INSTANCES = 10
POISON_NUMBER = 7  # the Instance Number of the instance the patched service fails on

# Any exception a bug could raise on one instance, raised where the one was.
POISON_PATCH = f"""
import gateway.pipeline.files as files
_real = files.process_instance
def _poisoned(ds, *args, **kwargs):
    if int(ds.get("InstanceNumber", 0) or 0) == {POISON_NUMBER}:
        raise ValueError("empty pseudonym for a patient record")
    return _real(ds, *args, **kwargs)
files.process_instance = _poisoned
"""
SMALL_BOUND_PATCH = """
import gateway.service.worker_pool as worker_pool
worker_pool.PROCESS_MAX_ATTEMPTS = 3
worker_pool.PROCESS_RETRY_INITIAL_SECONDS = 0.2
"""


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_secret(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("study")
    return make_ct_study(
        folder, instances=INSTANCES, rows=32, columns=32, patient=random_patient(41), seed=41
    )


def test_processing_retries_back_off_and_end_in_a_hold() -> None:
    delays = [processing_retry_delay(n) for n in range(1, PROCESS_MAX_ATTEMPTS + 1)]
    assert delays[:4] == [1.0, 2.0, 4.0, 8.0]
    assert delays[-1] is None and None not in delays[:-1]
    assert max(d for d in delays if d is not None) == PROCESS_RETRY_MAX_SECONDS
    assert 1800 < sum(d for d in delays if d is not None) < 7200  # held after about an hour


def folder_site(root: Path, secret: Path) -> Site:
    return make_site(root, secret, destination={"folder": str(root / "export")}, quiet_seconds=0.5)


def exported(site: Site) -> list[Path]:
    folder = site.root / "export"
    return sorted(folder.rglob("*.dcm")) if folder.is_dir() else []


def gateway_running(site: Site, patch: str = "") -> AbstractContextManager[Gateway]:
    """`dicom-gateway run -c CONFIG` (its entry point), with `patch` run first in the same
    interpreter (the forked workers inherit it); stopped by its PID at the end."""
    code = f"{patch}\nimport sys\nfrom gateway.cli.main import entry\nsys.exit(entry())"
    return running_gateway(site, [sys.executable, "-c", code, "run", "-c", str(site.config)])


def settled(gateway: Gateway) -> bool:
    return gateway.metric("instances_received") == INSTANCES and gateway.metric("queue_depth") == 0


def no_retry_loop(gateway: Gateway) -> None:
    metrics = gateway.metrics()
    assert metrics.get("dicom_gateway_process_retries_total") == 0
    assert metrics.get('dicom_gateway_failures_total{stage="worker"}', 0) == 0
    assert "processing it again" not in gateway.log()


def test_a_study_with_one_poison_instance_forwards_nine_and_quarantines_one(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    site = folder_site(tmp_path / "site", secret)
    with gateway_running(site, POISON_PATCH) as gateway:
        assert storescu(site.listen_port, study).acknowledged == study
        wait_until(lambda: settled(gateway), timeout=60, what="the round to finish")
        no_retry_loop(gateway)
        assert gateway.metric("instances_quarantined") == 1
        assert gateway.metric("studies_forwarded") == 1
    assert len(exported(site)) == INSTANCES - 1
    (entry,) = quarantine.entries(site.storage)
    assert (entry.reason, entry.message) == ("processing-failed", "unexpected ValueError")
    assert dcmread(entry.path / "original.dcm").InstanceNumber == POISON_NUMBER
    (record,) = site.audit_records()
    assert record["result"] == "forwarded"
    assert (record["instances_out"], record["instances_quarantined"]) == (INSTANCES - 1, 1)
    assert record["quarantine_reasons"] == ["processing-failed"]


def test_an_instance_without_patient_id_under_a_ctp_script_is_forwarded_with_its_study(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    site = folder_site(tmp_path / "site", secret)
    site.write(
        keys={"secret": str(secret), "reid_public_key": str(secret.parent / "reid-public.pem")},
        deid={"profile": str(FEDERATION)},
    )
    inputs = []
    for path in study:
        ds = dcmread(path)
        # The synthetic study names its patient in the descriptions, which the script keeps.
        ds.StudyDescription, ds.SeriesDescription = "CT CHEST", "AXIAL"
        if ds.InstanceNumber == POISON_NUMBER:
            del ds.PatientID
        ds.save_as(tmp_path / path.name)
        inputs.append(tmp_path / path.name)
    with gateway_running(site) as gateway:
        assert storescu(site.listen_port, inputs).acknowledged == inputs
        wait_until(lambda: settled(gateway), timeout=60, what="the round to finish")
        no_retry_loop(gateway)
    assert len(exported(site)) == INSTANCES
    assert quarantine.entries(site.storage) == []
    assert (site.storage / "mapping.db").is_file()


def block_outbox(site: Site, round_id: int) -> Path:
    """A file where the round's outbox folder must go: every attempt fails (EEXIST), as on
    a storage folder that cannot be written."""
    blocker = site.storage / "outbox" / str(round_id)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"in the way")
    return blocker


def round_lines(site: Site) -> list[str]:
    listing = site.quarantine("list")
    assert listing.returncode == 0, listing.stderr
    return [line for line in listing.stdout.splitlines() if line.startswith("round-")]


def test_a_round_failing_for_the_environment_is_retried_with_backoff_and_shown(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    site = folder_site(tmp_path / "site", secret)
    with gateway_running(site) as gateway:
        blocker = block_outbox(site, 1)
        assert storescu(site.listen_port, study).acknowledged == study
        wait_until(lambda: gateway.metric("process_retries") >= 2, timeout=30, what="two retries")
        (line,) = wait_until(
            lambda: round_lines(site), timeout=10, what="the round in `quarantine list`"
        )
        assert line.startswith(f"round-1\tstudy\t{INSTANCES} instances\tprocess/retrying\t")
        assert "failed attempts: processing failed (FileExistsError: File exists)" in line
        assert gateway.metric("queue_depth") == INSTANCES
        assert gateway.metric("process_held_studies") == 0
        log = gateway.log()
        assert "(failure 1); processing it again in 1 s" in log
        assert "(failure 2); processing it again in 2 s" in log

        blocker.unlink()  # the administrator frees the storage
        wait_until(lambda: settled(gateway), timeout=60, what="the round to go through")
        assert round_lines(site) == []
    assert len(exported(site)) == INSTANCES


def test_a_round_that_keeps_failing_is_held_visible_and_released(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    site = folder_site(tmp_path / "site", secret)
    with gateway_running(site, SMALL_BOUND_PATCH) as gateway:
        blocker = block_outbox(site, 1)
        assert storescu(site.listen_port, study).acknowledged == study
        wait_until(lambda: gateway.metric("process_held_studies") == 1, timeout=30, what="the hold")
        assert gateway.metric("process_retries") == 2  # failures 1 and 2; the 3rd holds
        (line,) = round_lines(site)
        assert line.startswith(f"round-1\tstudy\t{INSTANCES} instances\tprocess/held\t3 failed")
        assert "1 studies held after failed processing" in site.quarantine("list").stdout
        time.sleep(1.5)  # held means held: no further attempt
        assert gateway.metric("process_retries") == 2
        assert gateway.metric("queue_depth") == INSTANCES

        blocker.unlink()
        released = site.quarantine("release", "round-1")
        assert released.returncode == 0, released.stderr
        assert "queued for processing again" in released.stdout
        wait_until(lambda: settled(gateway), timeout=60, what="the released round to go through")
        assert gateway.metric("process_held_studies") == 0
    assert len(exported(site)) == INSTANCES
