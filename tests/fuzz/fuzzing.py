"""What the fuzz tests share: run sizes, a time bound per case, the tally they print, and
the planting helpers of tests/conftest.py.

CI size by default; the long run is `make fuzz` (HYPOTHESIS_PROFILE=long, FUZZ_EXAMPLES=N).
The hypothesis database is off: a CI machine keeps nothing between runs, and the tree
stays clean. A failing example is printed by hypothesis and replays from its seed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, ModuleType

from hypothesis import HealthCheck, settings


def shared_conftest() -> ModuleType:
    """tests/conftest.py, found by its path: with a conftest.py in another test folder
    (tests/faults), `import conftest` can give that one, depending on collection order."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    for module in list(sys.modules.values()):
        if Path(getattr(module, "__file__", None) or "/nonexistent").resolve() == path:
            return module
    spec = importlib.util.spec_from_file_location("shared_test_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
LONG = PROFILE == "long"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or (5000 if LONG else 40))
# The folder and network tests send fewer cases: each one costs a round trip or a process.
FOLDER_CASES = int(os.environ.get("FUZZ_FOLDER_CASES") or (EXAMPLES // 5 if LONG else 24))
NETWORK_CASES = int(os.environ.get("FUZZ_NETWORK_CASES") or (EXAMPLES // 5 if LONG else 24))
# No single malformed instance may take longer than this to be read and processed.
CASE_SECONDS = float(os.environ.get("FUZZ_CASE_SECONDS") or 20)

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,  # time is bounded per case by `bounded`, which also catches real hangs
    database=None,
    derandomize=not LONG,  # CI runs the same cases every time; the long run explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


class Hang(Exception):
    """A case ran past CASE_SECONDS."""


@contextmanager
def bounded(seconds: float = CASE_SECONDS) -> Iterator[None]:
    """Raise Hang in the main thread if the block runs longer than `seconds`."""

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds:.0f} s")

    # pytest-timeout (signal method) uses the same timer: its remaining time is put back.
    previous = signal.signal(signal.SIGALRM, expired)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    began = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            left = outer - (time.monotonic() - began)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


class Tally:
    """Outcome counts of one fuzz test, and the slowest case, for the report line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self.slowest = 0.0
        self.started = time.monotonic()

    def add(self, outcome: str, seconds: float = 0.0) -> None:
        self.counts[outcome] += 1
        self.slowest = max(self.slowest, seconds)

    def report(self) -> None:
        """Print the line (seen with `pytest -s`, as `make fuzz` runs) and append it to
        $FUZZ_REPORT when that is set."""
        print(f"\n{self.line()}", flush=True)
        target = os.environ.get("FUZZ_REPORT")
        if target:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(self.line() + "\n")

    def line(self) -> str:
        total = sum(self.counts.values())
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        return (
            f"{self.name}: {total} cases in {time.monotonic() - self.started:.1f} s "
            f"(slowest {self.slowest:.2f} s): {parts}"
        )
