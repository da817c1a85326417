"""The spool's records for processing on arrival: which instances are still to process, and
that clearing a round's outbox (a failed or interrupted attempt, a hold) always clears their
marks with it, so nothing acknowledged is left unprocessed and unsent."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from gateway.keys.keyed_hash import KeyedHash
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import STATE_DB, RoundState

STUDY = "1.2.826.0.1.3680043.2.1125.9.2"
KEYED_HASH = KeyedHash(bytes(range(32)))


def _store(spool: Spool, sop: str) -> None:
    spool.store(b"DICM", sop_instance_uid=sop, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                study_uid=STUDY, transfer_syntax="1.2.840.10008.1.2.1",
                calling_ae="MODALITY")  # fmt: skip


def _uids(found: dict[int, list]) -> set[str]:
    return {i.sop_instance_uid for instances in found.values() for i in instances}


def test_arrivals_are_the_unprocessed_instances_of_receiving_rounds(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    for sop in ("1.1", "1.2", "1.3"):
        _store(spool, sop)
    found = spool.arrivals(10)
    (round_id,) = found
    assert _uids(found) == {"1.1", "1.2", "1.3"}
    assert _uids(spool.arrivals(10, skip={(round_id, "1.1")})) == {"1.2", "1.3"}
    assert len(_uids(spool.arrivals(2))) == 2
    spool.mark_processed(round_id, ["1.1", "1.2"])
    assert _uids(spool.arrivals(10)) == {"1.3"}
    # The round's close takes only what is left.
    claimed = spool.claim(round_id)
    assert claimed is not None and [i.sop_instance_uid for i in claimed] == ["1.3"]
    assert spool.arrivals(10) == {}  # processing: no longer receiving


def test_a_failed_close_clears_the_outbox_and_the_marks_together(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    _store(spool, "1.2")
    (round_id,) = spool.arrivals(10)
    spool.outbox(round_id).mkdir(parents=True)
    (spool.outbox(round_id) / "clean.dcm").write_bytes(b"clean")
    spool.mark_processed(round_id, ["1.1"])
    assert spool.claim(round_id) is not None
    spool.processing_failed(round_id, 1, time.time() - 1, "processing failed (OSError)")
    assert not spool.outbox(round_id).exists()
    assert _uids(spool.arrivals(10)) == {"1.1", "1.2"}


def test_arrivals_wait_out_a_failure_and_stop_at_the_last_allowed_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    (round_id,) = spool.arrivals(10)
    spool.arrivals_failed(round_id, 1, time.time() + 3600, "processing failed (OSError)")
    assert spool.arrivals(10) == {}
    assert [r.id for r in spool.retrying_rounds()] == [round_id]
    spool.arrivals_failed(round_id, 3, 0.0, "processing failed (OSError)")
    assert spool.arrivals(10, max_attempts=3) == {}
    spool.mark_processed(round_id, ["1.1"])
    assert spool.hold_receiving(round_id, "processing failed (OSError)")
    assert spool.count_in(RoundState.HELD) == 1
    assert spool.release_held(round_id)
    assert _uids(spool.arrivals(10)) == {"1.1"}  # released: processed again from the start


def test_recovery_processes_an_interrupted_close_again_from_the_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    _store(spool, "1.2")
    (round_id,) = spool.arrivals(10)
    spool.mark_processed(round_id, ["1.1", "1.2"])
    spool.outbox(round_id).mkdir(parents=True)
    assert spool.claim(round_id) == []
    spool.close()  # a crash while the round was closing
    spool = Spool(tmp_path, KEYED_HASH)
    assert not spool.outbox(round_id).exists()
    assert _uids(spool.arrivals(10)) == {"1.1", "1.2"}


def test_a_state_db_from_before_streaming_gains_the_processed_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / STATE_DB)
    db.executescript(
        "CREATE TABLE instances (round_id INTEGER NOT NULL, sop_instance_uid TEXT NOT NULL,"
        " sop_class_uid TEXT NOT NULL, transfer_syntax TEXT NOT NULL, calling_ae TEXT NOT"
        " NULL, file TEXT NOT NULL, size INTEGER NOT NULL, received REAL NOT NULL,"
        " PRIMARY KEY (round_id, sop_instance_uid));"
    )
    db.close()
    spool = Spool(tmp_path, KEYED_HASH)
    _store(spool, "1.1")
    assert _uids(spool.arrivals(10)) == {"1.1"}
