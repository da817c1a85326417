"""What the spool does at the service's start, after a crash or a power cut.

- Rounds interrupted while `processing` go back to `receiving` (their outbox is cleared;
  they are processed again).
- Files that were never acknowledged go: what is left in `tmp/`, slots without a valid
  seal, and unrecorded files without one in the round folders.
- Files that may have been acknowledged are recorded again: a sealed file (`spool_seal`)
  that state.db does not know, because the power failed before its unsynced move or row
  reached the disk, is moved into a receiving round of its study and recorded, synced.
- A finished round whose files were being removed (`<id>.done`) is removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread

from gateway.base.durable import fsync_directory
from gateway.stores.spool_rounds import RoundState
from gateway.stores.spool_seal import Seal, Slots, read_seal

__all__ = ["DONE_SUFFIX", "Recovery"]

log = logging.getLogger(__name__)

DONE_SUFFIX = ".done"  # a finished round's folder, renamed before its rows go
UNREADABLE = "unregistered"  # sealed files whose header could not be read: kept, named


class Recovery:
    """Mixed into `Spool`: crash recovery (run by the service's start alone)."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    _slots: Slots
    _tmp: Path
    spool_dir: Path
    outbox: Callable[[int], Path]
    uid_hash: Callable[..., str]
    _unmark_processed: Callable[..., None]
    _receiving_round: Callable[[str, float], int]

    def _recover(self) -> None:
        with self._lock:
            interrupted = [
                int(row[0])
                for row in self._db.execute(
                    "SELECT id FROM rounds WHERE state = ?", (RoundState.PROCESSING,)
                )
            ]
            try:
                self._unmark_processed(interrupted)
                self._db.execute(
                    "UPDATE rounds SET state = ?, last_received = 0 WHERE state = ?",
                    (RoundState.RECEIVING, RoundState.PROCESSING),
                )
            except sqlite3.OperationalError as exc:
                # A full disk: start anyway, so that the SCP answers 0xA700 rather than
                # nothing; the service's tick re-queues these rounds once there is room.
                log.error("recovery of %d rounds deferred: %s", len(interrupted), exc)
            recorded = {row[0] for row in self._db.execute("SELECT file FROM instances")}
        for round_id in interrupted:
            shutil.rmtree(self.outbox(round_id), ignore_errors=True)
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)
        sealed: list[tuple[Path, Seal]] = []
        for slot in self._slots.folder.iterdir():
            self._keep_if_sealed(slot, sealed)
        for folder in self.spool_dir.iterdir():
            if folder.name.endswith(DONE_SUFFIX):
                shutil.rmtree(folder, ignore_errors=True)
            elif folder.name.isdigit() and folder.is_dir():
                for file in folder.iterdir():
                    if str(file.relative_to(self.spool_dir)) not in recorded:
                        self._keep_if_sealed(file, sealed)
        for path, seal in sealed:
            self._record_again(path, seal)
        self._drop_rows_without_files()
        with self._lock:
            live = {str(row[0]) for row in self._db.execute("SELECT id FROM rounds")}
        for folder in self.spool_dir.iterdir():
            if folder.name.isdigit() and folder.name not in live and not any(folder.iterdir()):
                folder.rmdir()
        for folder in self.outbox_root.iterdir():
            if folder.name not in live:
                shutil.rmtree(folder, ignore_errors=True)
        if interrupted:
            log.info("recovered %d interrupted study rounds", len(interrupted))
        if sealed:
            log.warning("recorded again %d acknowledged instances state.db had lost", len(sealed))

    outbox_root: Path

    @staticmethod
    def _keep_if_sealed(path: Path, sealed: list[tuple[Path, Seal]]) -> None:
        seal = read_seal(path) if path.is_file() else None
        if seal is not None:
            sealed.append((path, seal))
            return
        if path.suffix != ".slot" or path.stat().st_size:
            log.warning("removing unacknowledged spool file %s", path.name)
        path.unlink(missing_ok=True)

    def _record_again(self, path: Path, seal: Seal) -> None:
        """Record a sealed file in a receiving round of its study (synced: a rare path)."""
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
            meta = ds.file_meta
            row = (
                str(meta.MediaStorageSOPInstanceUID),
                str(meta.MediaStorageSOPClassUID),
                str(meta.TransferSyntaxUID),
                seal.calling_ae,
            )
            study_uid = str(ds.StudyInstanceUID)
        except Exception as exc:  # a sealed file the SCP had read: never expected
            kept = self.spool_dir / UNREADABLE
            kept.mkdir(exist_ok=True)
            os.replace(path, kept / path.name)
            log.error("a sealed spool file is unreadable (%s); kept in %s", type(exc).__name__,
                      kept)
            return
        received = path.stat().st_mtime
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                round_id = self._receiving_round(study_uid, received)
                folder = self.spool_dir / str(round_id)
                if not folder.is_dir():
                    folder.mkdir()
                    fsync_directory(self.spool_dir)
                final = folder / f"{self.uid_hash(row[0])}.dcm"
                if path != final:
                    os.replace(path, final)
                fsync_directory(folder)
                self._db.execute(
                    "INSERT OR REPLACE INTO instances (round_id, sop_instance_uid, sop_class_uid,"
                    " transfer_syntax, calling_ae, file, size, received) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (round_id, *row, str(final.relative_to(self.spool_dir)),
                     final.stat().st_size, received),
                )  # fmt: skip
                self._db.execute(
                    "UPDATE rounds SET last_received = MAX(last_received, ?) WHERE id = ?",
                    (received, round_id),
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _drop_rows_without_files(self) -> None:
        """Rows of instances still to be processed whose file is gone: never expected (a
        file is sealed before its row exists); logged, so that no worker waits on them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT i.round_id, i.sop_instance_uid, i.file FROM instances i "
                "JOIN rounds r ON r.id = i.round_id WHERE r.state = ? AND i.processed = 0",
                (RoundState.RECEIVING,),
            ).fetchall()
            gone = [(r, uid) for r, uid, file in rows if not (self.spool_dir / file).exists()]
            if gone:
                log.error("%d spool rows had lost their files; dropped", len(gone))
                self._db.executemany(
                    "DELETE FROM instances WHERE round_id = ? AND sop_instance_uid = ?", gone
                )
