"""One journal commit for a batch of outputs, not one per instance.

A worker used to fsync each clean instance as it wrote it. On a journalling file system
every fsync of a new file forces a commit of the journal, and with the SCP's own sync per
received instance and a second worker doing the same, the three queued behind each other:
that, not the CPU, bounded how fast a stream of small instances went through.

Within `syncs_deferred()` (a worker's batch, `round_files.process_round`) an output is
written without its own fsync; `sync_output` keeps a duplicate of its descriptor, and the
end of the batch syncs them all (the first sync commits the journal with every file of the
batch in it; the others find little left to do) before the caller syncs the folders and
reports the batch. Until that report nothing is marked processed: after a power cut an
instance whose output was not yet synced is de-identified again into the same name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["sync_output", "syncs_deferred"]

_deferred: list[int] | None = None  # descriptors of this process's batch outputs


def sync_output(fd: int) -> None:
    """Make the file behind `fd` durable now, or at the end of the batch. Raises OSError."""
    if _deferred is None:
        os.fsync(fd)
    else:
        _deferred.append(os.dup(fd))


@contextlib.contextmanager
def syncs_deferred() -> Iterator[None]:
    """Outputs written inside are synced together when it ends (OSError from a sync is
    raised then: the batch is retried, as for a failed write)."""
    global _deferred
    if _deferred is not None:  # nested: the outer batch syncs
        yield
        return
    _deferred = []
    try:
        yield
    finally:
        descriptors, _deferred = _deferred, None
        failed: OSError | None = None
        for fd in descriptors:
            try:
                os.fsync(fd)
            except OSError as exc:
                failed = failed or exc
            finally:
                os.close(fd)
        if failed is not None:
            raise failed
