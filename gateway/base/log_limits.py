"""Warnings a peer can cause, at most one line per cause and source a minute.

A peer that reconnects thousands of times a second must not turn each refusal into a
journal line: a log flood is a denial of service of its own, and it buries the one line an
operator needs. The counters in /metrics still count every refusal; the line that does get
written says how many like it were held back since the last one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """`warning(key, message, *args)`: logged unless the same key was logged within
    `seconds`; at most `max_keys` keys are remembered (the oldest forgotten first)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        seconds: float = 60.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._seconds = seconds
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._last: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()  # when, held back

    def warning(self, key: Hashable, message: str, *args: object) -> bool:
        """Log `message % args` now, or count it for the next line; True if logged."""
        with self._lock:
            now = self._clock()
            logged_at, held = self._last.get(key, (-float("inf"), 0))
            if now - logged_at < self._seconds:
                self._last[key] = (logged_at, held + 1)
                self._last.move_to_end(key)
                return False
            self._last[key] = (now, 0)
            self._last.move_to_end(key)
            while len(self._last) > self._max_keys:
                self._last.popitem(last=False)
        if held:
            message, args = message + " (%d more like it since the last line)", (*args, held)
        self._logger.warning(message, *args)
        return True
