"""How an instance enters the spool: in one buffer (`store`), or as a file written into a
slot while it arrives (`incoming`, then `store_file`).

Either way the file is written into a slot (`spool_seal.Slots`: a file whose folder entry
is already durable), sealed and fsynced: with `spool.durability: fsync` that one sync is
all an acknowledgement waits for. Then it is renamed into its round's folder (same file
system: a rename, never a copy) and its state row committed, neither synced: a power cut
that loses them leaves a sealed file that the spool's recovery records again
(`spool_seal`). A file without a preamble to seal takes the old path: its round folder is
fsynced and its row committed with synchronous=FULL before the call returns. The syncs
that remain are shared by the instances of concurrent associations that arrive together
(group commit, `_record`). What fails leaves nothing behind: the slot is removed, and one
left by a crash unsealed is removed by the recovery at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.base.durable import fsync_directory
from gateway.stores.spool_rounds import RoundState
from gateway.stores.spool_seal import PREAMBLE_LENGTH, Slots, seal_bytes, sealable

__all__ = ["IncomingFile", "Intake", "SpoolWriteError"]

_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}
_OPEN_SLOT = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)


class SpoolWriteError(Exception):
    """The instance could not be made durable (disk full, I/O error). Nothing was kept."""

    def __init__(self, message: str, *, out_of_space: bool) -> None:
        super().__init__(message)
        self.out_of_space = out_of_space


def _write_failed(exc: OSError) -> SpoolWriteError:
    return SpoolWriteError(
        f"cannot write to the spool ({exc.strerror})", out_of_space=exc.errno in _OUT_OF_SPACE
    )


class IncomingFile:
    """One instance file (mode 0600) in a spool slot, written piece by piece as its data
    set arrives, so that the receiver never holds more than one piece; the CRC-32 of what
    follows the preamble is kept as it goes, for the seal.

    Writing never raises: the receiver must read the rest of the message before it can
    answer, so the first error (a full disk) is kept, the file removed at once and later
    pieces dropped; `finish` then raises it. Thread-safe: the association's reader writes,
    and its reactor may discard the file of a message cut off mid-transfer.
    """

    def __init__(self, path: Path, header: bytes, error: OSError | None = None) -> None:
        """`error`: no file could be made (no slot); `finish` raises it, as a write's."""
        self.path = path
        self.header = header
        self.error: OSError | None = error
        self.length = 0
        self._crc = 0
        self._lock = threading.Lock()
        self._fd: int | None = None
        if error is not None:
            return
        try:
            self._fd = os.open(path, _OPEN_SLOT)
            os.fchmod(self._fd, 0o600)  # exactly, whatever the umask
        except OSError as exc:
            self._fail(exc)
            return
        self.write(header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append `data` (dropped after an error); returns its length, as a file does."""
        with self._lock:
            if self._fd is not None:
                view = memoryview(data).cast("B")
                skip = max(0, min(len(view), PREAMBLE_LENGTH - self.length))
                self._crc = zlib.crc32(view[skip:], self._crc)
                self.length += len(view)
                try:
                    while view:
                        view = view[os.write(self._fd, view) :]
                except OSError as exc:
                    self._fail(exc)
        return len(data)

    def finish(self) -> None:
        """The last piece is in: SpoolWriteError if a write failed, the file gone then.
        The file stays open for `seal` (`Intake.store_file`)."""
        if self.error is not None:
            raise _write_failed(self.error) from self.error

    def seal(self, calling_ae: str, *, sync: bool) -> bool:
        """Seal (when the file has a preamble), fsync (when `sync`) and close the file;
        whether it was sealed. Raises OSError, the file gone then."""
        with self._lock:
            if self._fd is None:
                raise self.error or OSError(errno.EBADF, "the incoming file is closed")
            fd, self._fd = self._fd, None
            sealed = sealable(self.header)
            try:
                if sealed:
                    os.pwrite(fd, seal_bytes(self.length, self._crc, calling_ae), 0)
                if sync:
                    os.fsync(fd)
            except OSError as exc:
                self._fail(exc)
                os.close(fd)
                raise
            os.close(fd)
        return sealed

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                with contextlib.suppress(OSError):
                    os.close(fd)

    def discard(self) -> None:
        """Close and remove the file (nothing, once `store_file` has moved it)."""
        self.close()
        self.path.unlink(missing_ok=True)

    def _fail(self, exc: OSError) -> None:
        """Keep the first error, drop the file (and, from now on, what is written)."""
        if self.error is None:
            self.error = exc
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        self.path.unlink(missing_ok=True)


@dataclass(eq=False)
class _Pending:
    """An instance fsynced in tmp/, waiting for its batch to be recorded."""

    temporary: Path
    size: int
    study_uid: str
    row: tuple[str, str, str, str]
    name: str
    sealed: bool
    done: bool = False
    error: SpoolWriteError | None = None

    def fail(self, exc: OSError | sqlite3.Error) -> None:
        """Not recorded: nothing of it is kept (its temporary file goes)."""
        self.temporary.unlink(missing_ok=True)
        out_of_space = (isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE) or (
            isinstance(exc, sqlite3.Error) and "full" in str(exc)
        )
        self.error = SpoolWriteError(
            f"cannot record the instance ({type(exc).__name__})", out_of_space=out_of_space
        )
        self.error.__cause__ = exc


class Intake:
    """Mixed into `Spool`: the receiving side."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    _intake_lock: threading.Lock  # guards `_intake_queue` (taken without `_lock`)
    _intake_queue: list[_Pending]
    _sync: bool  # spool.durability "fsync"; False: "process" (no sync while receiving)
    _slots: Slots
    spool_dir: Path
    uid_hash: Callable[..., str]
    # Told after each instance is recorded (the service wakes the processing stage with it,
    # rather than have a new arrival wait for the scheduler's next look). Never raises.
    on_recorded: Callable[[], None]

    def incoming(self, header: bytes) -> IncomingFile:
        """A new file in a slot beginning with `header`, for `store_file` to keep."""
        try:
            slot = self._slots.take()
        except OSError as exc:  # answered 0xA700 once the message is read, as a write error
            return IncomingFile(self._slots.folder / "none.slot", header, exc)
        return IncomingFile(slot, header)

    def store(
        self,
        encoded: bytes | Sequence[bytes],
        *,
        sop_instance_uid: str,
        sop_class_uid: str,
        study_uid: str,
        transfer_syntax: str,
        calling_ae: str,
    ) -> None:
        """Make one received instance durable; only then may the SCP answer success.

        `encoded` may come in parts (file meta, then the dataset as received): a large
        instance is then never copied into one buffer on its way to the disk.
        """
        parts = [encoded] if isinstance(encoded, bytes) else list(encoded)
        incoming = self.incoming(bytes(parts[0]) if parts else b"")
        for part in parts[1:]:
            incoming.write(part)
        self.store_file(
            incoming,
            sop_instance_uid=sop_instance_uid,
            sop_class_uid=sop_class_uid,
            study_uid=study_uid,
            transfer_syntax=transfer_syntax,
            calling_ae=calling_ae,
        )

    def store_file(
        self,
        incoming: IncomingFile,
        *,
        sop_instance_uid: str,
        sop_class_uid: str,
        study_uid: str,
        transfer_syntax: str,
        calling_ae: str,
    ) -> None:
        """`store` for an instance file complete in its slot (`incoming`): seal and fsync
        it, move it into its round, record its row; only then may the SCP answer success.
        On SpoolWriteError the file is removed."""
        if incoming.path.parent != self._slots.folder:
            raise ValueError("store_file takes a file from the spool's slots")
        incoming.finish()
        try:
            sealed = incoming.seal(calling_ae, sync=self._sync)
        except OSError as exc:
            incoming.discard()
            raise _write_failed(exc) from exc
        row = (sop_instance_uid, sop_class_uid, transfer_syntax, calling_ae)
        self._record(incoming.path, incoming.length, study_uid, row, sealed)
        self.on_recorded()

    def _record(
        self,
        temporary: Path,
        size: int,
        study_uid: str,
        row: tuple[str, str, str, str],
        sealed: bool,
    ) -> None:
        """Rename the fsynced `temporary` into its round's folder and commit its row; the
        folder fsync and a synced commit only for a file without a seal (`spool_seal`).
        `row`: SOP Instance UID, SOP Class UID, transfer syntax, calling AE.

        Group commit: instances of concurrent associations that arrive while another
        one is being recorded wait for the lock, and the thread that gets it records them
        all: one folder fsync per round folder and one state.db commit for the batch,
        instead of one of each per instance. Each caller returns (or raises) only once its
        own instance is committed (or has failed), so acknowledging still means durable.
        """
        entry = _Pending(temporary, size, study_uid, row, f"{self.uid_hash(row[0])}.dcm", sealed)
        with self._intake_lock:
            self._intake_queue.append(entry)
        with self._lock:
            if not entry.done:
                with self._intake_lock:
                    batch, self._intake_queue[:] = list(self._intake_queue), []
                self._commit_batch(batch)
        if entry.error is not None:
            raise entry.error
        if not entry.done:  # never: every batch marks its entries; never "kept" unrecorded
            raise SpoolWriteError("the instance was not recorded", out_of_space=False)

    def _commit_batch(self, batch: list[_Pending]) -> None:
        """Record `batch` in one transaction (called under the spool's lock). An entry
        that cannot be moved fails alone (its savepoint is rolled back); a failed commit
        fails them all, and their files are removed again."""
        now = time.time()
        moved: list[tuple[_Pending, Path, bool, int]] = []  # (entry, final, replaced, round)
        committed = False
        synced = self._sync and not all(entry.sealed for entry in batch)
        try:
            try:
                if not synced:  # WAL without a sync: kept across a crash of the process
                    self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                for entry in batch:
                    entry.fail(exc)
                return
            folders: set[Path] = set()
            for entry in batch:
                self._db.execute("SAVEPOINT instance")
                final: Path | None = None
                try:
                    round_id = self._receiving_round(entry.study_uid, now)
                    folder = self.spool_dir / str(round_id)
                    if not folder.is_dir():
                        folder.mkdir()
                        if self._sync:
                            fsync_directory(self.spool_dir)
                    final = folder / entry.name
                    replaced = final.exists()
                    os.replace(entry.temporary, final)
                except (OSError, sqlite3.Error) as exc:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK TO instance")
                        self._db.execute("RELEASE instance")
                    entry.fail(exc)
                    continue
                self._db.execute("RELEASE instance")
                moved.append((entry, final, replaced, round_id))
                if not entry.sealed:
                    folders.add(folder)
            try:
                for folder in folders if self._sync else ():
                    fsync_directory(folder)
                for entry, final, _replaced, round_id in moved:
                    self._db.execute(
                        "INSERT OR REPLACE INTO instances (round_id, sop_instance_uid, "
                        "sop_class_uid, transfer_syntax, calling_ae, file, size, received) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (round_id, *entry.row, str(final.relative_to(self.spool_dir)),
                         entry.size, now),
                    )  # fmt: skip
                    self._db.execute(
                        "UPDATE rounds SET last_received = ? WHERE id = ?", (now, round_id)
                    )
                self._db.execute("COMMIT")
                committed = True
            except (OSError, sqlite3.Error) as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                for entry, final, replaced, _round_id in moved:
                    if not replaced:
                        final.unlink(missing_ok=True)
                    entry.fail(exc)
        finally:
            if not committed:  # also on a surprise: nobody is told "kept" who is not
                with contextlib.suppress(sqlite3.Error):
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                for entry, final, replaced, _round_id in moved:
                    if entry.error is None and not replaced:
                        final.unlink(missing_ok=True)
                for entry in batch:
                    if entry.error is None:
                        entry.fail(OSError(errno.EIO, "the batch was not recorded"))
            for entry in batch:
                entry.done = True
            if not synced:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA synchronous=FULL")

    def _receiving_round(self, study_uid: str, now: float) -> int:
        row = self._db.execute(
            "SELECT id FROM rounds WHERE study_uid = ? AND state = ? ORDER BY id DESC LIMIT 1",
            (study_uid, RoundState.RECEIVING),
        ).fetchone()
        if row is not None:
            return int(row[0])
        cursor = self._db.execute(
            "INSERT INTO rounds (study_uid, state, first_received, last_received) "
            "VALUES (?, ?, ?, ?)",
            (study_uid, RoundState.RECEIVING, now, now),
        )
        return int(cursor.lastrowid or 0)
