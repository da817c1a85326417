"""How an instance enters the spool: in one buffer (`store`), or as a file written into the
spool's tmp folder while it arrives (`incoming`, then `store_file`).

Either way the file is fsynced in `tmp/`, renamed into its round's folder (same file
system: a rename, never a copy), the folder fsynced and the state row committed (WAL,
synchronous=FULL) before the call returns; only then may the SCP answer success. The
folder fsync and the commit are shared by the instances of concurrent associations that
arrive together (group commit, `_record`). What
fails leaves nothing behind: the temporary file is removed, and one left by a crash is
removed by the spool's recovery at the next start (`tmp/` is emptied).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.base.durable import create_private_file, fsync_directory, fsync_file
from gateway.stores.spool_rounds import RoundState

__all__ = ["IncomingFile", "Intake", "SpoolWriteError"]

_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}
_CREATE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)


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
    """One instance file (mode 0600) in the spool's tmp folder, written piece by piece as
    its data set arrives, so that the receiver never holds more than one piece.

    Writing never raises: the receiver must read the rest of the message before it can
    answer, so the first error (a full disk) is kept, the file removed at once and later
    pieces dropped; `finish` then raises it. Thread-safe: the association's reader writes,
    and its reactor may discard the file of a message cut off mid-transfer.
    """

    def __init__(self, path: Path, header: bytes) -> None:
        self.path = path
        self.header = header
        self.error: OSError | None = None
        self._lock = threading.Lock()
        self._fd: int | None = None
        try:
            self._fd = os.open(path, _CREATE, 0o600)
            os.fchmod(self._fd, 0o600)  # exactly, whatever the umask
        except OSError as exc:
            self._fail(exc)
            return
        self.write(header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append `data` (dropped after an error); returns its length, as a file does."""
        with self._lock:
            if self._fd is not None:
                view = memoryview(data)
                try:
                    while view:
                        view = view[os.write(self._fd, view) :]
                except OSError as exc:
                    self._fail(exc)
        return len(data)

    def finish(self) -> None:
        """Close the file once its last piece is in; SpoolWriteError if a write (or the
        close) failed, the file gone then. The fsync is `Intake.store_file`'s."""
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    os.close(fd)
                except OSError as exc:
                    self._fail(exc)
        if self.error is not None:
            raise _write_failed(self.error) from self.error

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
    _tmp: Path
    spool_dir: Path
    uid_hash: Callable[..., str]

    def incoming(self, header: bytes) -> IncomingFile:
        """A new file in the tmp folder beginning with `header`, for `store_file` to keep."""
        return IncomingFile(self._tmp / f"{secrets.token_hex(8)}.part", header)

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
        size = len(encoded) if isinstance(encoded, bytes) else sum(len(p) for p in encoded)
        temporary = self._tmp / f"{secrets.token_hex(8)}.part"
        try:
            create_private_file(temporary, encoded, sync=self._sync)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise _write_failed(exc) from exc
        row = (sop_instance_uid, sop_class_uid, transfer_syntax, calling_ae)
        self._record(temporary, size, study_uid, row)

    def store_file(
        self,
        path: Path,
        *,
        sop_instance_uid: str,
        sop_class_uid: str,
        study_uid: str,
        transfer_syntax: str,
        calling_ae: str,
    ) -> None:
        """`store` for an instance file already complete in the tmp folder (`incoming`):
        fsync it, move it into its round, commit its row; only then may the SCP answer
        success. On SpoolWriteError the file is removed."""
        if Path(path).parent != self._tmp:
            raise ValueError("store_file takes a file in the spool's tmp folder")
        try:
            if self._sync:
                fsync_file(path)
            size = os.stat(path).st_size
        except OSError as exc:
            Path(path).unlink(missing_ok=True)
            raise _write_failed(exc) from exc
        row = (sop_instance_uid, sop_class_uid, transfer_syntax, calling_ae)
        self._record(Path(path), size, study_uid, row)

    def _record(
        self,
        temporary: Path,
        size: int,
        study_uid: str,
        row: tuple[str, str, str, str],
    ) -> None:
        """Rename the fsynced `temporary` into its round's folder, fsync that, commit.
        `row`: SOP Instance UID, SOP Class UID, transfer syntax, calling AE.

        Group commit: instances of concurrent associations that arrive while another
        one is being recorded wait for the lock, and the thread that gets it records them
        all: one folder fsync per round folder and one state.db commit for the batch,
        instead of one of each per instance. Each caller returns (or raises) only once its
        own instance is committed (or has failed), so acknowledging still means durable.
        """
        entry = _Pending(temporary, size, study_uid, row, f"{self.uid_hash(row[0])}.dcm")
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
        try:
            try:
                if not self._sync:  # WAL without a sync: kept across a crash of the process
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
            if not self._sync:
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
