"""The spool keeps every acknowledged instance across crashes, per study round."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.keys.keyed_hash import KeyedHash
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import RoundState

STUDY = "1.2.826.0.1.3680043.2.1125.9.1"
KEYED_HASH = KeyedHash(bytes(range(32)))  # names the spool's files


def _store(spool: Spool, sop: str, payload: bytes = b"DICM", study: str = STUDY) -> None:
    spool.store(
        payload,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        study_uid=study,
        transfer_syntax="1.2.840.10008.1.2.1",
        calling_ae="MODALITY",
    )


def test_a_study_is_due_after_its_quiet_period_and_claimed_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    _store(spool, "1.2")
    assert spool.due_rounds(quiet_seconds=3600) == []
    due = spool.due_rounds(quiet_seconds=0)
    assert [(r.study_uid, r.instances) for r in due] == [(STUDY, 2)]
    claimed = spool.claim(due[0].id)
    assert claimed is not None and {i.sop_instance_uid for i in claimed} == {"1.1", "1.2"}
    assert all(i.path.read_bytes() == b"DICM" for i in claimed)
    assert spool.claim(due[0].id) is None
    assert spool.queue_depth() == 2


def test_duplicate_sop_instance_replaces_the_earlier_copy(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1", b"first")
    _store(spool, "1.1", b"second")
    (due,) = spool.due_rounds(quiet_seconds=0)
    claimed = spool.claim(due.id)
    assert claimed is not None and len(claimed) == 1
    assert claimed[0].path.read_bytes() == b"second"


def test_instance_arriving_while_its_study_is_processed_starts_a_new_round(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    (first,) = spool.due_rounds(quiet_seconds=0)
    assert spool.claim(first.id)
    _store(spool, "1.2")
    (second,) = spool.due_rounds(quiet_seconds=0)
    assert second.id != first.id and second.instances == 1
    assert spool.get_round(first.id).state is RoundState.PROCESSING


def test_forwarding_retries_fail_and_release(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    (due,) = spool.due_rounds(quiet_seconds=0)
    spool.claim(due.id)
    spool.outbox(due.id).mkdir(parents=True)
    spool.processed(due.id)
    assert [r.id for r in spool.forward_due()] == [due.id]
    spool.forward_failed(due.id, attempts=1, next_attempt=9e12, message="refused")
    assert spool.forward_due() == []
    spool.forward_failed(due.id, attempts=2, next_attempt=None, message="gave up")
    assert [r.message for r in spool.failed_rounds()] == ["gave up"]
    assert spool.release(due.id)
    assert [r.id for r in spool.forward_due()] == [due.id]
    spool.finish(due.id)
    assert spool.queue_depth() == 0
    assert not spool.outbox(due.id).exists()
    assert not (spool.spool_dir / str(due.id)).exists()


def test_restart_reprocesses_interrupted_rounds_and_drops_unacknowledged_files(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    (due,) = spool.due_rounds(quiet_seconds=0)
    spool.claim(due.id)
    spool.outbox(due.id).mkdir(parents=True)
    (spool.outbox(due.id) / "half.dcm").write_bytes(b"half-written")
    (spool.spool_dir / "tmp" / "x.part").write_bytes(b"never acknowledged")
    (spool.spool_dir / str(due.id) / "orphan.dcm").write_bytes(b"renamed, not recorded")
    spool.close()

    again = Spool(tmp_path, KEYED_HASH)
    (redo,) = again.due_rounds(quiet_seconds=3600)  # due at once: it was complete before
    assert redo.id == due.id and redo.state is RoundState.RECEIVING
    assert not again.outbox(due.id).exists()
    assert list((again.spool_dir / "tmp").iterdir()) == []
    assert [p.name for p in (again.spool_dir / str(due.id)).iterdir()] == [
        again.claim(due.id)[0].path.name
    ]


def test_state_survives_in_sqlite_with_full_sync(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    spool.close()
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM instances").fetchone()[0] == 1


def test_health_probe_reports_a_writable_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    assert spool.writable()
    assert list((spool.spool_dir / "tmp").iterdir()) == []


def test_a_failed_round_waits_for_its_retry_and_a_held_one_for_its_release(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    (due,) = spool.due_rounds(quiet_seconds=0)
    spool.claim(due.id)
    spool.outbox(due.id).mkdir(parents=True)
    spool.processing_failed(due.id, 1, retry_at=1000.0, message="processing failed (OSError)")
    assert not spool.outbox(due.id).exists()
    assert spool.due_rounds(quiet_seconds=0, now=999.0) == []
    (retry,) = spool.due_rounds(quiet_seconds=0, now=1000.0)
    assert (retry.attempts, retry.message) == (1, "processing failed (OSError)")
    assert [r.id for r in spool.retrying_rounds()] == [due.id]

    spool.claim(due.id)
    spool.processing_failed(due.id, 2, retry_at=None, message="gave up")
    assert spool.get_round(due.id).state is RoundState.HELD
    assert spool.due_rounds(quiet_seconds=0, now=9e12) == [] and spool.retrying_rounds() == []
    assert spool.queue_depth() == 1  # held means kept
    assert not spool.release(due.id)  # not a failed forward
    assert spool.release_held(due.id)
    (again,) = spool.due_rounds(quiet_seconds=3600)
    assert again.id == due.id and again.attempts == 0
    spool.claim(due.id)
    spool.processed(due.id)
    assert spool.get_round(due.id).attempts == 0


def test_health_probe_syncs_at_most_once_per_cache_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/healthz may be asked many times a second; the disk is probed (a sync) rarely."""
    import gateway.stores.spool as spool_module

    probes: list[Path] = []
    real = spool_module.create_private_file

    def counting(path: Path, data: bytes) -> None:
        probes.append(path)
        real(path, data)

    monkeypatch.setattr(spool_module, "create_private_file", counting)
    spool = Spool(tmp_path, KEYED_HASH)
    assert all(spool.writable() for _ in range(50))
    assert len(probes) == 1
    monkeypatch.setattr(spool_module, "WRITABLE_CACHE_SECONDS", 0.0)
    assert spool.writable()
    assert len(probes) == 2
