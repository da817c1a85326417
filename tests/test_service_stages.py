"""The service's stages apart from the SCP: the scheduler's quarantine purge by age, and the
destinations the forwarding stage sends to (the whole service runs in test_service_e2e.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gateway.base.metrics import Metrics
from gateway.config.schema import DestinationConfig
from gateway.keys.keyed_hash import KeyedHash
from gateway.net.outcome import ForwardOutcome
from gateway.service.forwarding import AeDestination, FolderDestination, destination_for
from gateway.service.scheduler import Scheduler
from gateway.stores import quarantine
from gateway.stores.spool import Spool
from gateway.tools.synthetic import make_ct_study

DAY = 86400.0


def _quarantined(storage: Path, tmp_path: Path, count: int) -> list[quarantine.QuarantineEntry]:
    keyed = KeyedHash(b"stage-test-secret-0123456789abcd")
    made = []
    for index in range(count):
        source = tmp_path / f"in-{index}.dcm"
        source.write_bytes(b"not patient data %d" % index)
        entry = quarantine.put(
            storage, source, reason="deid-error", stage="deid", message="test",
            origin="test", keyed_hash=keyed,
        )  # fmt: skip
        made.append(entry)
    return made


def _age(entry: quarantine.QuarantineEntry, days: float) -> None:
    reason = entry.path / quarantine.REASON_NAME
    record = json.loads(reason.read_text(encoding="utf-8"))
    record["created"] = time.time() - days * DAY
    reason.write_text(json.dumps(record), encoding="utf-8")


def _scheduler(storage: Path, purge_after_days: float | None) -> Scheduler:
    def never(*_args: object) -> None:
        raise AssertionError("no round is due in this test")

    return Scheduler(
        Spool(storage, KeyedHash(b"stage-test-secret-0123456789abcd")),
        30.0,
        Metrics(),
        heal=lambda: None,
        process=never,
        forward=never,
        storage_dir=storage,
        purge_after_days=purge_after_days,
    )


def test_the_scheduler_purges_quarantined_originals_older_than_the_configured_age(
    tmp_path: Path,
) -> None:
    storage = tmp_path / "var"
    old, recent, fresh = _quarantined(storage, tmp_path, 3)
    _age(old, 40)
    _age(recent, 20)
    scheduler = _scheduler(storage, purge_after_days=30)
    assert scheduler.purge_quarantine() == 1
    assert {e.id for e in quarantine.entries(storage)} == {recent.id, fresh.id}
    assert not old.path.exists()
    scheduler.tick()  # nothing due: the stages are not called
    scheduler.stop()


def test_without_a_purge_age_nothing_is_purged(tmp_path: Path) -> None:
    storage = tmp_path / "var"
    (entry,) = _quarantined(storage, tmp_path, 1)
    _age(entry, 4000)
    assert _scheduler(storage, purge_after_days=None).purge_quarantine() == 0
    assert [e.id for e in quarantine.entries(storage)] == [entry.id]


def test_the_configured_destination_is_a_folder_or_an_ae(tmp_path: Path) -> None:
    folder = destination_for(DestinationConfig(folder=tmp_path / "out"), "DEID_GW", None)
    assert isinstance(folder, FolderDestination)
    assert folder.name == f"folder {tmp_path / 'out'}"
    ae = destination_for(
        DestinationConfig(ae_title="ARCHIVE", host="127.0.0.1", port=11113), "DEID_GW", None
    )
    assert isinstance(ae, AeDestination)
    assert (ae.name, ae.calling_ae) == ("ARCHIVE@127.0.0.1:11113", "DEID_GW")


def test_a_folder_destination_marks_what_it_wrote_and_takes_it_again_without_harm(
    tmp_path: Path,
) -> None:
    files = sorted(make_ct_study(tmp_path / "outbox", instances=3, rows=8, columns=8))
    destination = FolderDestination(tmp_path / "out")
    for _ in range(2):
        stored: list[Path] = []
        result = destination.send(files, stored.append)
        assert (result.outcome, result.sent, stored) == (ForwardOutcome.OK, 3, files)
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 3
