"""The service as a stream (issue 16): instances are de-identified as they arrive and sent as
they clear; the study's quiet period only closes the round (its audit record).

A real gateway (`dicom-gateway run`) with a long quiet period, fed by DCMTK storescu on
loopback, forwarding to a DCMTK storescp: the clean instances must be at the destination
long before the quiet period ends, each once, with none of the patient's values anywhere.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import pytest
from service_harness import (
    STORESCP,
    STORESCU,
    ae_destination,
    create_secret,
    free_port,
    leaks_in,
    make_site,
    received_files,
    running_gateway,
    storescp_on,
    storescu,
    wait_until,
)

from gateway.tools.synthetic import make_ct_study, random_patient

pytestmark = pytest.mark.skipif(
    STORESCU is None or STORESCP is None, reason="DCMTK storescu/storescp not installed"
)

INSTANCES = 12
QUIET_SECONDS = 40.0  # far longer than the test waits for the instances


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_secret(tmp_path_factory.mktemp("keys"))


def test_instances_are_forwarded_as_they_clear_and_the_quiet_period_only_closes_the_round(
    tmp_path: Path, secret: Path
) -> None:
    patient = random_patient(77)
    study = make_ct_study(tmp_path / "in", instances=INSTANCES, rows=32, columns=32,
                          patient=patient, seed=77)  # fmt: skip
    archive_port = free_port()
    site = make_site(tmp_path / "site", secret, destination=ae_destination(archive_port),
                     quiet_seconds=QUIET_SECONDS)  # fmt: skip
    out = tmp_path / "archive"
    with storescp_on(archive_port, out), running_gateway(site) as gateway:
        sent_at = time.monotonic()
        assert storescu(site.listen_port, study).acknowledged == study
        arrived = wait_until(
            lambda: len(received_files(out)) >= INSTANCES or None,
            timeout=QUIET_SECONDS / 2,
            what="every instance at the archive before the quiet period ends",
        )
        assert arrived
        assert time.monotonic() - sent_at < QUIET_SECONDS
        files = received_files(out)
        assert len(files) == INSTANCES  # each once
        assert len({f.sop_instance_uid for f in files}) == INSTANCES
        assert {f.study_uid for f in files} != {""}
        originals = [v for v in asdict(patient).values() if isinstance(v, str) and len(v) > 3]
        assert leaks_in([f.path for f in files], originals) == []
        # The round is still open (quiet period not over): no study record yet, and the
        # instances are still in the spool, forwarded.
        assert site.audit_records() == []
        assert gateway.metric("instances_forwarded") == INSTANCES
        assert gateway.metric("queue_depth") == INSTANCES
