"""The destination misbehaves: down, refusing, aborting mid-study, answering failures.

The running gateway (`dicom-gateway run`, a child process) forwards to a scripted pynetdicom
archive (scripted_archive.py) on a fixed loopback port. What is checked is what an
administrator sees: /metrics (retries, the next-attempt gauge, failed studies), state.db,
`dicom-gateway quarantine list/release`, and what the archive stored, instance by instance.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from scripted_archive import ScriptedArchive
from service_harness import (
    STORESCU,
    Gateway,
    Site,
    ae_destination,
    create_secret,
    free_port,
    make_site,
    running_gateway,
    sop_instance_uid,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = [
    pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu missing"),
    pytest.mark.timeout(120),
]

INSTANCES = 12


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_secret(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def study(tmp_path: Path) -> list[Path]:
    return make_ct_study(
        tmp_path / "in", instances=INSTANCES, rows=32, columns=32, patient=random_patient(81)
    )


def pseudo_uids(site: Site, files: list[Path]) -> list[str]:
    """The de-identified SOP Instance UIDs, in the order the gateway sends them (by name)."""
    pseudonyms = site.pseudonyms()
    return sorted(pseudonyms.uid(sop_instance_uid(p)) for p in files)


def round_states(site: Site) -> list[str]:
    with closing(sqlite3.connect(f"file:{site.storage / 'state.db'}?mode=ro", uri=True)) as db:
        return [str(row[0]) for row in db.execute("SELECT state FROM rounds")]


def until(predicate: Callable[[], object], what: str, timeout: float = 30) -> None:
    wait_until(predicate, timeout=timeout, what=what, interval=0.1)


def seen_waiting(gateway: Gateway) -> float:
    """A retry is scheduled: the gauge says in how many seconds (0 when none waits)."""
    return gateway.metric("forward_next_attempt_seconds")


def test_down_refusing_aborting_and_out_of_resources_then_everything_arrives_once(
    tmp_path: Path, secret: Path, study: list[Path], report_figures: list[str]
) -> None:
    port = free_port()
    site = make_site(tmp_path / "site", secret, destination=ae_destination(port))
    expected = pseudo_uids(site, study)
    archive = ScriptedArchive(port)
    with running_gateway(site) as gateway:
        assert storescu(site.listen_port, study).acknowledged == study

        # Down: nothing listens on the port. Retries back off (initial 0.5 s, at most 2 s).
        until(lambda: gateway.metric("forward_retries") >= 2, "two refused attempts")
        waiting = wait_until(
            lambda: seen_waiting(gateway), timeout=10, what="a scheduled retry", interval=0.05
        )
        assert 0 < waiting <= 2.0
        assert round_states(site) == ["forwarding"]

        # Up but refusing: every association is rejected.
        archive.reject = True
        archive.start()
        retries = gateway.metric("forward_retries")
        until(
            lambda: archive.associations >= 2 and gateway.metric("forward_retries") >= retries + 2,
            "two rejected associations",
        )
        assert "association rejected" in gateway.log()
        assert not archive.stored

        # Accepting, but aborting after 4 instances of each association, and answering
        # Out of Resources for the last instance once: every attempt resumes where the
        # last one stopped.
        archive.answers = {expected[-1]: 0xA700}
        archive.abort_after = 4
        archive.reject = False
        until(lambda: gateway.metric("queue_depth") == 0, "the study delivered")
        metrics = gateway.metrics()
    archive.stop()

    assert sorted(archive.stored) == expected
    assert set(archive.stored.values()) == {1}, "an instance was stored twice"
    assert archive.refused[0xA700] == 1
    assert metrics["dicom_gateway_instances_forwarded_total"] == INSTANCES
    assert metrics["dicom_gateway_studies_forwarded_total"] == 1
    assert metrics["dicom_gateway_forward_retries_total"] >= 2 + 2 + 2 + 1
    assert metrics["dicom_gateway_forward_failed_studies"] == 0
    assert metrics["dicom_gateway_forward_next_attempt_seconds"] == 0
    report_figures.append(
        f"outage: {metrics['dicom_gateway_forward_retries_total']:.0f} retries, "
        f"{archive.associations} associations, {INSTANCES} instances stored once each"
    )


def test_cannot_understand_ends_in_failed_forward_and_release_sends_only_the_rest(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    port = free_port()
    site = make_site(tmp_path / "site", secret, destination=ae_destination(port))
    expected = pseudo_uids(site, study)
    with ScriptedArchive(port) as archive, running_gateway(site) as gateway:
        archive.answers = {expected[3]: 0xC000}  # "cannot understand": resending cannot help
        assert storescu(site.listen_port, study).acknowledged == study
        until(lambda: gateway.metric("forward_failed_studies") == 1, "a failed-forward study")
        assert round_states(site) == ["failed"]
        assert gateway.metric("queue_depth") == INSTANCES, "the study must be kept"
        assert sorted(archive.stored) == [u for u in expected if u != expected[3]]
        listing = site.quarantine("list").stdout
        assert "1 studies failed" in listing and "0xC000" in listing, listing
        (line,) = [x for x in listing.splitlines() if x.startswith("round-")]

        # The archive is fixed; the administrator releases the study.
        released = site.quarantine("release", line.split("\t")[0])
        assert released.returncode == 0, released.stderr
        until(lambda: gateway.metric("queue_depth") == 0, "the released study delivered")
        assert gateway.metric("forward_failed_studies") == 0
    assert sorted(archive.stored) == expected
    assert set(archive.stored.values()) == {1}, "release sent a confirmed instance again"


def test_max_attempts_ends_in_failed_forward_visible_in_metrics_not_lost(
    tmp_path: Path, secret: Path, study: list[Path]
) -> None:
    port = free_port()  # nothing listens
    site = make_site(tmp_path / "site", secret, destination=ae_destination(port), max_attempts=3)
    expected = pseudo_uids(site, study)
    with running_gateway(site) as gateway:
        assert storescu(site.listen_port, study).acknowledged == study
        until(lambda: gateway.metric("forward_failed_studies") == 1, "the study to fail")
        metrics = gateway.metrics()
        assert metrics["dicom_gateway_forward_retries_total"] == 2  # attempts 1 and 2
        assert metrics['dicom_gateway_failures_total{stage="forward"}'] == 3
        assert metrics["dicom_gateway_queue_depth"] == INSTANCES
        assert metrics["dicom_gateway_forward_next_attempt_seconds"] == 0
        assert round_states(site) == ["failed"]
        assert "failed after 3 attempts" in gateway.log()
        with ScriptedArchive(port) as archive:
            (line,) = [
                x for x in site.quarantine("list").stdout.splitlines() if x.startswith("round-")
            ]
            assert site.quarantine("release", line.split("\t")[0]).returncode == 0
            until(lambda: gateway.metric("queue_depth") == 0, "the released study delivered")
    assert sorted(archive.stored) == expected
    assert set(archive.stored.values()) == {1}
