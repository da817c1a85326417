"""Associations kept open between the sends of one study round to one destination.

A study is forwarded while it still arrives, a few instances at a time: opening a new
association for each batch costs a TCP (and TLS) handshake and an A-ASSOCIATE exchange
every time. The forwarding SCU gives its association back here after a batch; the next
batch of the same round takes it again if it is still established and its accepted
presentation contexts cover what is to be sent. A kept association is released when its
round ends (`release`), when it has been idle for `idle_seconds` (`release_idle`, asked by
the scheduler), or at shutdown (`close`), and whenever a new association to the same
destination is being opened (`opening`): an archive that takes one association at a time
(DCMTK storescp without --fork, many small archives) would otherwise hold the next study
back until the kept one went idle.

One user at a time: `take` removes the association from here, `give_back` returns it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.uid import UID

if TYPE_CHECKING:
    from pynetdicom.association import Association

log = logging.getLogger(__name__)

IDLE_SECONDS = 5.0  # well under the idle timeouts archives use (Orthanc: 30 s)


@dataclass
class Kept:
    assoc: Association
    accepted: frozenset[tuple[UID, UID]]  # (SOP class, transfer syntax) accepted
    last_used: float


class KeptAssociations:
    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._kept: dict[Hashable, Kept] = {}
        self._opening = 0  # users opening a new association right now
        self.opened = 0  # associations opened by users of this pool (for tests and logs)
        self.reused = 0

    def take(self, key: Hashable) -> Kept | None:
        """The association kept for `key`, if it is still established; now the caller's."""
        with self._lock:
            kept = self._kept.pop(key, None)
        if kept is None:
            return None
        if not kept.assoc.is_established:
            release_kept(kept)
            return None
        return kept

    def give_back(self, key: Hashable, kept: Kept) -> None:
        """Keep `kept` for the next batch of `key` (the one kept before, if any, goes);
        released instead while another association to this destination is being opened."""
        kept.last_used = time.monotonic()
        with self._lock:
            previous = self._kept.pop(key, None)
            keeping = self._opening == 0
            if keeping:
                self._kept[key] = kept
        if previous is not None and previous is not kept:
            release_kept(previous)
        if not keeping:
            release_kept(kept)

    @contextmanager
    def opening(self, key: Hashable) -> Iterator[None]:
        """Around opening a new association for `key`: the ones kept for other rounds are
        released now, and those given back meanwhile are not kept."""
        with self._lock:
            self._opening += 1
            others = [self._kept.pop(k) for k in list(self._kept) if k != key]
        for kept in others:
            release_kept(kept)
        try:
            yield
        finally:
            with self._lock:
                self._opening -= 1

    def release(self, key: Hashable) -> None:
        """`key`'s round has ended: its association is released."""
        with self._lock:
            kept = self._kept.pop(key, None)
        if kept is not None:
            release_kept(kept)

    def release_idle(self, now: float | None = None) -> int:
        """Release the associations unused for `idle_seconds`; how many."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            idle = [k for k, v in self._kept.items() if moment - v.last_used >= self.idle_seconds]
            gone = [self._kept.pop(k) for k in idle]
        for kept in gone:
            release_kept(kept)
        return len(gone)

    def close(self) -> None:
        with self._lock:
            gone, self._kept = list(self._kept.values()), {}
        for kept in gone:
            release_kept(kept)

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)


def release_kept(kept: Kept) -> None:
    """A-RELEASE, or an abort when the peer no longer answers; never raises."""
    try:
        if kept.assoc.is_established:
            kept.assoc.release()
    except Exception as exc:  # the peer went away meanwhile
        log.debug("releasing a kept association failed (%s)", type(exc).__name__)
        try:
            kept.assoc.abort()
        except Exception:
            log.debug("aborting a kept association failed", exc_info=True)
