"""One sync per received instance (stores/spool_seal.py): the seal, and what the recovery does
with what a power cut leaves.

A power cut cannot be made here; its effects can. After one, an acknowledged instance's
file is durable (it was fsynced with its seal) but its move into the round's folder and its
state.db row, written without a sync, may be lost: the tests put the spool in each of those
states and open it again, as the service's start does.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import CTImageStorage
from service_harness import spool_files

from gateway.base import durable
from gateway.keys.keyed_hash import KeyedHash
from gateway.net.dicom_header import file_meta
from gateway.pipeline.files import encode as encode_file
from gateway.stores import spool_intake, spool_seal
from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import RoundState
from gateway.stores.spool_seal import read_seal

KEYED_HASH = KeyedHash(bytes(range(32)))
STUDY = "1.2.826.0.1.3680043.8.498.1"


def _instance(sop: str, study: str = STUDY) -> tuple[bytes, bytes]:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = CTImageStorage, sop, study
    ds.Modality, ds.PatientName = "CT", "Doe^Jane"
    data = encode(ds, False, True)
    assert data is not None
    return file_meta(str(CTImageStorage), sop, str(ExplicitVRLittleEndian)), data


def _receive(spool: Spool, sop: str, calling_ae: str = "CT_SCANNER") -> Path:
    """As the SCP does: the data set written into a slot as it arrives, then stored."""
    meta, data = _instance(sop)
    incoming = spool.incoming(meta)
    incoming.write(data[:7])
    incoming.write(memoryview(data)[7:])
    spool.store_file(
        incoming,
        sop_instance_uid=sop,
        sop_class_uid=str(CTImageStorage),
        study_uid=STUDY,
        transfer_syntax=str(ExplicitVRLittleEndian),
        calling_ae=calling_ae,
    )
    return spool.spool_dir / _rows(spool.storage_dir)[sop][1]


def _rows(storage: Path) -> dict[str, tuple[int, str, str]]:
    """SOP Instance UID -> (round, file, calling AE), read as a fresh process would."""
    with sqlite3.connect(storage / "state.db") as db:
        rows = db.execute("SELECT sop_instance_uid, round_id, file, calling_ae FROM instances")
        return {uid: (round_id, file, ae) for uid, round_id, file, ae in rows}


def _forget_rows(storage: Path, *sops: str) -> None:
    """What a power cut does to rows committed without a sync."""
    with sqlite3.connect(storage / "state.db") as db:
        db.executemany("DELETE FROM instances WHERE sop_instance_uid = ?", [(s,) for s in sops])


def test_a_received_instance_is_sealed_and_costs_one_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _receive(spool, "1.2.3.1")  # the first takes a batch of slots (one folder sync)
    syncs: list[str] = []
    real_fsync, real_folder_sync = os.fsync, durable.fsync_directory

    def counted_fsync(fd: int) -> None:
        syncs.append("file")
        real_fsync(fd)

    def counted_folder_sync(folder: Path) -> None:
        syncs.append(f"folder {folder.name}")
        real_folder_sync(folder)

    monkeypatch.setattr(os, "fsync", counted_fsync)
    monkeypatch.setattr(spool_intake, "fsync_directory", counted_folder_sync)
    monkeypatch.setattr(spool_seal, "fsync_directory", counted_folder_sync)
    path = _receive(spool, "1.2.3.2")

    assert syncs == ["file"]
    seal = read_seal(path)
    assert seal is not None and seal.calling_ae == "CT_SCANNER"
    meta, data = _instance("1.2.3.2")
    assert path.read_bytes()[128:] == (meta + data)[128:]  # as received, behind the seal
    assert dcmread(path).SOPInstanceUID == "1.2.3.2"  # still an ordinary DICOM file
    spool.close()


@pytest.mark.parametrize("where", ["slot", "round folder"])
def test_an_acknowledged_instance_whose_row_a_power_cut_lost_is_recorded_again(
    tmp_path: Path, where: str
) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    kept = _receive(spool, "1.2.3.1")
    lost = _receive(spool, "1.2.3.2", calling_ae="US_ROOM_2")
    content = lost.read_bytes()
    spool.close()
    _forget_rows(tmp_path, "1.2.3.2")
    if where == "slot":  # the unsynced rename was lost too
        os.replace(lost, tmp_path / "spool" / "slots" / "0123456789abcdef.slot")

    again = Spool(tmp_path, KEYED_HASH)

    rows = _rows(tmp_path)
    assert sorted(rows) == ["1.2.3.1", "1.2.3.2"]
    assert rows["1.2.3.2"][0] == rows["1.2.3.1"][0]  # the study's receiving round
    assert rows["1.2.3.2"][2] == "US_ROOM_2"  # the calling AE, from the seal
    (due,) = again.due_rounds(quiet_seconds=0)
    assert due.study_uid == STUDY and due.state is RoundState.RECEIVING
    claimed = again.claim(due.id) or []
    assert sorted(i.sop_instance_uid for i in claimed) == ["1.2.3.1", "1.2.3.2"]
    by_uid = {i.sop_instance_uid: i for i in claimed}
    assert by_uid["1.2.3.2"].path.read_bytes() == content
    assert by_uid["1.2.3.1"].path == kept
    assert by_uid["1.2.3.2"].transfer_syntax == str(ExplicitVRLittleEndian)
    assert sorted(spool_files(tmp_path / "spool")) == sorted(i.path for i in claimed)
    again.close()


def test_a_file_whose_seal_does_not_match_was_never_acknowledged_and_goes(
    tmp_path: Path,
) -> None:
    """The power failed during its fsync: seal on disk, a page of data not. No answer had
    been sent, so the file goes, as does a slot written but never sealed."""
    spool = Spool(tmp_path, KEYED_HASH)
    torn = _receive(spool, "1.2.3.1")
    unsealed = spool.incoming(_instance("1.2.3.9")[0])
    unsealed.write(b"half a data set")
    spool.close()
    _forget_rows(tmp_path, "1.2.3.1")
    with open(torn, "r+b") as handle:
        handle.seek(200)
        handle.write(b"\0\0\0\0")

    again = Spool(tmp_path, KEYED_HASH)

    assert _rows(tmp_path) == {}
    assert spool_files(tmp_path / "spool") == []
    again.close()


def test_a_finished_round_is_never_recorded_again(tmp_path: Path) -> None:
    """finish() renames the round's folder before its rows go: a crash between the two
    leaves `<round>.done`, which the recovery removes; its sealed files are not instances
    to send again."""
    spool = Spool(tmp_path, KEYED_HASH)
    _receive(spool, "1.2.3.1")
    (due,) = spool.due_rounds(quiet_seconds=0)
    folder = spool.spool_dir / str(due.id)
    spool.close()
    folder.rename(folder.with_name(f"{due.id}.done"))
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("DELETE FROM instances")
        db.execute("DELETE FROM rounds")

    again = Spool(tmp_path, KEYED_HASH)

    assert _rows(tmp_path) == {}
    assert again.due_rounds(quiet_seconds=0) == []
    assert not any(p.name.endswith(".done") for p in again.spool_dir.iterdir())
    again.close()


def test_a_file_without_a_preamble_takes_the_synced_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    syncs: list[str] = []
    real_folder_sync = durable.fsync_directory
    monkeypatch.setattr(
        spool_intake,
        "fsync_directory",
        lambda folder: (syncs.append(folder.name), real_folder_sync(folder)),
    )
    spool.store(
        b"no preamble here",
        sop_instance_uid="1.2.3.1",
        sop_class_uid=str(CTImageStorage),
        study_uid=STUDY,
        transfer_syntax=str(ExplicitVRLittleEndian),
        calling_ae="OLD",
    )
    (due,) = spool.due_rounds(quiet_seconds=0)
    assert str(due.id) in syncs  # its round folder was synced: no seal to recover it by
    (stored,) = spool.claim(due.id) or []
    assert stored.path.read_bytes() == b"no preamble here"
    spool.close()


def test_free_slots_go_at_a_clean_stop(tmp_path: Path) -> None:
    spool = Spool(tmp_path, KEYED_HASH)
    _receive(spool, "1.2.3.1")
    assert len(list((tmp_path / "spool" / "slots").iterdir())) > 1
    spool.close()
    assert list((tmp_path / "spool" / "slots").iterdir()) == []


def test_slots_are_made_ahead_on_a_thread_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the very first batch is made by a taker: below half a batch left, the next is
    made on the `spool-slots` thread while the free ones are taken."""
    makers: list[str] = []
    real_make = spool_seal.Slots._make

    def recorded(self: spool_seal.Slots, count: int) -> list[Path]:
        makers.append(threading.current_thread().name)
        return real_make(self, count)

    monkeypatch.setattr(spool_seal.Slots, "_make", recorded)
    slots = spool_seal.Slots(tmp_path / "slots", sync=True)
    taken = set()
    for _ in range(3):
        for _ in range(spool_seal._SLOTS_PER_BATCH // 2 + 1):
            taken.add(slots.take())
        refill = slots._refill
        if refill is not None:
            refill.join(timeout=10)
    assert makers[0] == threading.current_thread().name
    assert makers[1:] and set(makers[1:]) == {"spool-slots"}
    assert len(taken) == 3 * (spool_seal._SLOTS_PER_BATCH // 2 + 1)  # never one twice
    free = set((tmp_path / "slots").iterdir()) - taken
    assert len(free) >= spool_seal._SLOTS_PER_BATCH // 2
    slots.forget()
    assert set((tmp_path / "slots").iterdir()) == taken


def test_slots_made_ahead_while_stopping_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch still being made when the spool stops is removed when it is done, and the
    stop waits for it: no empty slot is left behind."""
    slots = spool_seal.Slots(tmp_path / "slots", sync=True)
    taken = {slots.take()}  # the first batch, made here
    go_on = threading.Event()
    real_make = spool_seal.Slots._make

    def slow(self: spool_seal.Slots, count: int) -> list[Path]:
        assert go_on.wait(10)
        return real_make(self, count)

    monkeypatch.setattr(spool_seal.Slots, "_make", slow)
    for _ in range(spool_seal._SLOTS_PER_BATCH // 2):
        taken.add(slots.take())
    assert slots._refill is not None
    stopping = threading.Thread(target=slots.forget)
    stopping.start()
    stopping.join(timeout=0.2)
    assert stopping.is_alive()  # waits for the batch being made
    go_on.set()
    stopping.join(timeout=10)
    assert not stopping.is_alive()
    assert set((tmp_path / "slots").iterdir()) == taken  # the callers' to move or remove


def test_no_preamble_of_an_input_reaches_an_output(tmp_path: Path) -> None:
    """An input's preamble (the spool's seal, or the TIFF header of a dual-format file,
    PS3.10 7.5, which can name the patient) is never copied into a de-identified file."""
    spool = Spool(tmp_path, KEYED_HASH)
    path = _receive(spool, "1.2.3.1")
    ds = dcmread(path)
    assert ds.preamble is not None and ds.preamble.startswith(b"DGW-SEAL")
    ds.preamble = b"II*\0 Doe^Jane".ljust(128, b"\0")
    assert encode_file(ds)[:128] == bytes(128)
    spool.close()


def test_uids_of_the_sealed_file_name_it(tmp_path: Path) -> None:
    """The file a recovered instance gets is the name the SCP would have given it."""
    spool = Spool(tmp_path, KEYED_HASH)
    sop = generate_uid()
    path = _receive(spool, sop)
    spool.close()
    _forget_rows(tmp_path, sop)
    Spool(tmp_path, KEYED_HASH).close()
    assert _rows(tmp_path)[sop][1] == str(path.relative_to(tmp_path / "spool"))


def test_no_slot_to_be_had_is_a_write_error_answered_out_of_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (or no inode left) when a batch of slots is made: the instance is
    refused as for a failed write, after its message is read, and nothing is kept."""
    spool = Spool(tmp_path, KEYED_HASH)

    def no_room(self: spool_seal.Slots, count: int) -> list[Path]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_seal.Slots, "_make", no_room)
    incoming = spool.incoming(_instance("1.2.3.1")[0])
    assert incoming.write(b"the rest of the data set") == 24  # read on, never raising
    with pytest.raises(spool_intake.SpoolWriteError) as refused:
        spool.store_file(
            incoming,
            sop_instance_uid="1.2.3.1",
            sop_class_uid=str(CTImageStorage),
            study_uid=STUDY,
            transfer_syntax=str(ExplicitVRLittleEndian),
            calling_ae="CT",
        )
    assert refused.value.out_of_space
    assert spool.queue_depth() == 0
    assert spool_files(tmp_path / "spool") == []
    spool.close()
