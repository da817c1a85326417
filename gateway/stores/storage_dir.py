"""The storage folder: owner-only, because what it holds is identified.

The spool, the quarantine, state.db (with its WAL) and the sealed mapping hold original
UIDs, calling AE titles and whole identified instances. The command sets umask 0077, so
everything created under the folder is its owner's alone; a folder that already exists
open to others (made by an earlier version, or by hand under umask 022) is tightened to
0700 with a warning when we own it, and refused when we do not (we could not fix it).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["StorageOpenToOthersError", "open_storage_dir"]


class StorageOpenToOthersError(PermissionError):
    """The storage folder is open to other users and is not ours to close."""


def open_storage_dir(path: Path) -> Path:
    """Create `path` (and parents) mode 0700, or make an existing one 0700. Returns it.

    Only the folder itself needs closing: nothing below a 0700 folder can be reached by
    another user, whatever its own mode. Raises StorageOpenToOthersError or OSError.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    status = path.stat()
    mode = stat.S_IMODE(status.st_mode)
    if mode & 0o077 == 0:
        return path
    if status.st_uid != os.geteuid():
        reason = (
            f"storage folder {path} is open to other users (mode {mode:04o}) and owned by "
            f"uid {status.st_uid}, not by this user: chmod 700 it"
        )
        raise StorageOpenToOthersError(errno.EACCES, reason, str(path))
    os.chmod(path, 0o700)
    log.warning("storage folder %s was open to other users (mode %04o): now 0700", path, mode)
    return path
