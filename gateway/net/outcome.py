"""What a forward attempt ends in: OK, RETRY or FAIL, with counts and no patient data.

Three outcomes, like CTP's export stages (STYLE.md): OK (all stored), RETRY (the
destination's trouble: no connection, rejected, aborted, timed out, out of resources, disk
full; the study is sent again later) and FAIL (the study's trouble: an instance the peer
refuses to understand, or a file we cannot read; resending cannot help).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum


class ForwardOutcome(Enum):
    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class ForwardResult:
    """What happened to a study. `message` holds counts and status codes, no patient data."""

    outcome: ForwardOutcome
    sent: int
    failed: int
    message: str


@dataclass
class Tally:
    """Running counts over one study; FAIL outranks RETRY (resending cannot fix it)."""

    total: int
    sent: int = 0
    warnings: int = 0
    failed: int = 0
    retry_reason: str = ""
    problems: Counter[str] = field(default_factory=Counter)

    def fail(self, reason: str, count: int = 1) -> None:
        self.failed += count
        self.problems[reason] += count

    def result(self, destination: str) -> ForwardResult:
        text = f"sent {self.sent} of {self.total} instance(s) to {destination}"
        if self.warnings:
            text += f" ({self.warnings} with a warning status)"
        if self.problems:
            text += "; failed: " + ", ".join(f"{n} x {why}" for why, n in self.problems.items())
        if self.failed:
            outcome = ForwardOutcome.FAIL
        elif self.retry_reason:
            outcome = ForwardOutcome.RETRY
        else:
            outcome = ForwardOutcome.OK
        if self.retry_reason:
            text += f"; stopped: {self.retry_reason}"
        return ForwardResult(outcome, self.sent, self.failed, text)
