"""Group commit: instances of concurrent associations share one folder fsync and one
state.db commit, and each sender is answered only once its own instance is committed."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from service_harness import spool_files

from gateway.keys.keyed_hash import KeyedHash
from gateway.stores.spool import Spool
from gateway.stores.spool_intake import SpoolWriteError

KEYED_HASH = KeyedHash(bytes(range(32)))
STUDIES = ["1.2.3.1", "1.2.3.2", "1.2.3.3"]


def store(spool: Spool, sop: str, study: str, payload: bytes) -> None:
    spool.store(
        payload,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        study_uid=study,
        transfer_syntax="1.2.840.10008.1.2.1",
        calling_ae="MODALITY",
    )


def waiting(spool: Spool, count: int) -> None:
    """Until `count` instances wait to be recorded (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    while len(spool._intake_queue) < count:
        assert time.monotonic() < deadline, f"{len(spool._intake_queue)} of {count} queued"
        time.sleep(0.005)


def test_instances_that_arrive_together_are_committed_together(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    commits: list[str] = []
    spool._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    outcomes: dict[str, BaseException | None] = {}

    def send(number: int) -> None:
        try:
            store(spool, f"1.9.{number}", STUDIES[number % 3], f"instance {number}".encode())
            outcomes[f"1.9.{number}"] = None
        except BaseException as exc:
            outcomes[f"1.9.{number}"] = exc

    with spool.held_still():  # another association's instance is being recorded
        threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        waiting(spool, 12)
        assert outcomes == {}  # nobody is answered before their instance is committed
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == {f"1.9.{n}": None for n in range(12)}
    assert len(commits) == 1  # one commit for the twelve
    due = spool.due_rounds(quiet_seconds=0)
    assert sorted((r.study_uid, r.instances) for r in due) == [(s, 4) for s in STUDIES]
    for found in due:
        claimed = spool.claim(found.id)
        assert claimed is not None
        for instance in claimed:
            number = instance.sop_instance_uid.rsplit(".", 1)[1]
            assert instance.path.read_bytes() == f"instance {number}".encode()
    spool.close()


def test_an_instance_that_cannot_be_moved_fails_alone(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    errors: dict[str, BaseException | None] = {}
    files: dict[str, Path] = {}

    def send(sop: str) -> None:
        incoming = spool.incoming(b"DICM")
        files[sop] = incoming.path
        incoming.finish()
        try:
            spool.store_file(
                incoming,
                sop_instance_uid=sop,
                sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                study_uid=STUDIES[0],
                transfer_syntax="1.2.840.10008.1.2.1",
                calling_ae="MODALITY",
            )
            errors[sop] = None
        except BaseException as exc:
            errors[sop] = exc

    with spool.held_still():
        threads = [threading.Thread(target=send, args=(sop,)) for sop in ("2.1", "2.2", "2.3")]
        for thread in threads:
            thread.start()
        waiting(spool, 3)
        files["2.2"].unlink()  # gone from tmp/ before its batch is recorded
    for thread in threads:
        thread.join(timeout=30)
    assert errors["2.1"] is None and errors["2.3"] is None
    assert isinstance(errors["2.2"], SpoolWriteError)
    (due,) = spool.due_rounds(quiet_seconds=0)
    claimed = spool.claim(due.id)
    assert claimed is not None
    assert sorted(i.sop_instance_uid for i in claimed) == ["2.1", "2.3"]
    left = spool_files(tmp_path / "spool")
    assert sorted(left) == sorted(i.path for i in claimed)  # nothing else kept
    spool.close()


def test_a_commit_that_fails_fails_every_instance_of_the_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    errors: list[BaseException | None] = []

    def send(number: int) -> None:
        try:
            store(spool, f"3.{number}", STUDIES[1], b"DICM")
            errors.append(None)
        except BaseException as exc:
            errors.append(exc)

    with spool.held_still():
        threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        waiting(spool, 4)
        # Another process holds state.db's write lock past the busy timeout: nothing of
        # the batch may be acknowledged.
        spool._db.execute("PRAGMA busy_timeout = 50")
        blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    for thread in threads:
        thread.join(timeout=30)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert len(errors) == 4 and all(isinstance(e, SpoolWriteError) for e in errors), errors
    assert spool.queue_depth() == 0
    assert spool_files(tmp_path / "spool") == []
    spool.close()


def test_process_durability_keeps_what_it_acknowledged_for_the_next_start(tmp_path: Path) -> None:
    """spool.durability: process syncs nothing while receiving; what it acknowledged is in
    the page cache and state.db's WAL, which a crash of the process does not lose."""
    spool = Spool(tmp_path, KEYED_HASH, durability="process")
    synced: list[str] = []
    spool._db.set_trace_callback(lambda sql: synced.append(sql) if "synchronous" in sql else None)
    for number in range(5):
        store(spool, f"4.{number}", STUDIES[2], f"instance {number}".encode())
    assert "PRAGMA synchronous=NORMAL" in synced
    # The next start (the crashed process's connection is simply abandoned).
    again = Spool(tmp_path, KEYED_HASH)
    (due,) = again.due_rounds(quiet_seconds=0)
    claimed = again.claim(due.id)
    assert claimed is not None
    assert sorted(i.path.read_bytes() for i in claimed) == [
        f"instance {n}".encode() for n in range(5)
    ]
    again.close()
    with pytest.raises(ValueError, match="durability"):
        Spool(tmp_path / "other", KEYED_HASH, durability="sometimes")
