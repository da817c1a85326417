"""The seal that lets one fsync make a received instance durable, and the slots it is
written into.

Receiving used to cost three syncs per instance: the file, its folder entry and the
state.db row. Now an instance is written into a *slot*, an empty file made ahead of time
in `spool/slots/` whose folder entry was synced when it was made (a batch of slots shares
one folder sync). When its last byte is in, its first 128 bytes, the DICOM preamble (PS3.10
7.1 leaves it to the application; readers skip it), get a *seal*: a magic, the file's
length, the CRC-32 of every byte after the preamble and the calling AE title. One fsync of
the file makes data and seal durable, and the SCP may answer. The move into the round's
folder and the state.db row follow without a sync of their own: they survive a crash of
the process (the page cache and the WAL are the kernel's), and after a power cut the
spool's recovery finds each sealed file state.db does not know, in a slot or in a round
folder, and records it again. A seal that does not match its file (the power failed during
its fsync, so no answer was sent) marks a file never acknowledged; it is removed, as is a
file with no seal at all.

A file that does not begin with a preamble (no "DICM" at byte 128) cannot carry a seal and
takes the three-sync path.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from gateway.base.durable import fsync_directory

__all__ = ["PREAMBLE_LENGTH", "Slots", "read_seal", "seal_bytes", "sealable"]

PREAMBLE_LENGTH = 128
_MAGIC = b"DGW-SEAL"
_SEAL = struct.Struct("<8sQI16s")  # magic, file length, CRC-32 of bytes[128:], calling AE
_SLOT_SUFFIX = ".slot"
_SLOTS_PER_BATCH = 32
_READ = 1 << 20


def sealable(header: bytes) -> bool:
    """Does a file beginning with `header` have a preamble to carry the seal?"""
    return len(header) >= PREAMBLE_LENGTH + 4 and header[PREAMBLE_LENGTH:][:4] == b"DICM"


def seal_bytes(length: int, crc: int, calling_ae: str) -> bytes:
    """The 128 bytes that replace the preamble of a complete file of `length` bytes whose
    bytes after the preamble have CRC-32 `crc`."""
    ae = calling_ae.encode("ascii", "replace")[:16]
    return _SEAL.pack(_MAGIC, length, crc & 0xFFFFFFFF, ae).ljust(PREAMBLE_LENGTH, b"\0")


@dataclass(frozen=True)
class Seal:
    calling_ae: str


def read_seal(path: Path) -> Seal | None:
    """The seal of `path` if it matches the file's length and content; None for a file
    without one, cut short, or whose bytes are not those sealed. Reads the whole file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(PREAMBLE_LENGTH)
            if len(head) < _SEAL.size:
                return None
            magic, length, crc, ae = _SEAL.unpack_from(head)
            if magic != _MAGIC or os.fstat(handle.fileno()).st_size != length:
                return None
            found = 0
            while chunk := handle.read(_READ):
                found = zlib.crc32(chunk, found)
    except OSError:
        return None
    if found != crc:
        return None
    return Seal(ae.rstrip(b"\0 ").decode("ascii", "replace"))


class Slots:
    """Empty files with durable folder entries, for instances to be written into.

    Made `_SLOTS_PER_BATCH` at a time, their folder synced once per batch (when `sync`).
    The next batch is made on a thread of its own once fewer than half a batch are left, so
    a receiving association seldom waits for one: making a file can take far longer than
    writing a small instance when the file system is busy syncing. A slot taken is never
    given back: the caller moves it into a round or removes it.
    """

    def __init__(self, folder: Path, *, sync: bool) -> None:
        self.folder = folder
        self._sync = sync
        self._free: list[Path] = []
        self._lock = threading.Lock()
        self._refill: threading.Thread | None = None
        self._closed = False
        folder.mkdir(parents=True, exist_ok=True)

    def take(self) -> Path:
        """An empty slot file (mode 0600). Raises OSError (a full disk) when none is left
        and no more can be made."""
        with self._lock:
            if not self._free:
                self._free = self._make(_SLOTS_PER_BATCH)
            slot = self._free.pop()
            refill = self._refill is None and not self._closed
            if refill and len(self._free) < _SLOTS_PER_BATCH // 2:
                self._refill = threading.Thread(target=self._make_ahead, name="spool-slots",
                                                daemon=True)  # fmt: skip
                self._refill.start()
            return slot

    def forget(self) -> None:
        """Remove the slots not taken (at a clean stop: an empty slot is no instance)."""
        with self._lock:
            self._closed = True
            refill = self._refill
        if refill is not None:
            refill.join(timeout=30)
        with self._lock:
            free, self._free = self._free, []
        for path in free:
            path.unlink(missing_ok=True)

    def _make_ahead(self) -> None:
        made: list[Path] = []
        try:
            made = self._make(_SLOTS_PER_BATCH)
        except OSError:
            pass  # a full disk: `take` makes its own, or answers the error
        finally:
            with self._lock:
                self._refill = None
                if not self._closed:
                    self._free[:0], made = made, []
            for path in made:  # forgotten meanwhile
                path.unlink(missing_ok=True)

    def _make(self, count: int) -> list[Path]:
        made: list[Path] = []
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
        try:
            for _ in range(count):
                path = self.folder / f"{secrets.token_hex(8)}{_SLOT_SUFFIX}"
                os.close(os.open(path, flags, 0o600))
                made.append(path)
            if self._sync:
                fsync_directory(self.folder)
        except OSError:
            for path in made:
                path.unlink(missing_ok=True)
            raise
        return made
