"""Writing files so that they survive a crash: the pieces every store shares.

A leaf module (stdlib only). "Durable" means the data and the directory entry are on disk
(fsync of the file, then of its folder) before the caller reports success.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make new, renamed or removed entries of `directory` durable. Raises OSError."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make the data of a file written without an fsync of its own (a `shutil.copyfile`)
    durable. Raises OSError."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_folder(directory: Path, mode: int = 0o777) -> None:
    """Create `directory` and any missing parents so that each new entry survives a power
    cut (its parent fsynced); an existing folder is left as it is. Raises OSError."""
    directory = Path(directory)
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue  # made by another process meanwhile; it fsyncs its own
        fsync_directory(folder.parent)


def create_private_file(path: Path, data: bytes | Sequence[bytes], *, sync: bool = True) -> None:
    """Create `path` with mode 0600 (FileExistsError if it exists), write `data` (one buffer,
    or several written one after another, so that a header and a large body need not be
    joined in memory first), fsync it (unless `sync` is False: the spool's `process`
    durability, where surviving the process's crash is enough).

    The mode is set exactly, whatever the umask. A write that fails removes the file it
    created, so no half-written key or instance is ever left behind. Raises OSError; the
    directory entry is the caller's to fsync (several files may share one folder fsync).
    """
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        for part in (data,) if isinstance(data, bytes | bytearray | memoryview) else data:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        Path(path).unlink(missing_ok=True)
        raise
    os.close(fd)


def create_private_folder(directory: Path) -> None:
    """Create `directory` (and parents) mode 0700 for key material; an existing folder keeps
    the mode its owner gave it. Raises OSError."""
    try:
        Path(directory).mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)  # mkdir's mode is reduced by the umask
