"""Shows the fault tests' figures in the summary of every run, not only with `-s`."""

from __future__ import annotations

import pytest

FIGURES: list[str] = []


@pytest.fixture
def report_figures() -> list[str]:
    """Append a text block; it is printed at the end of the session."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault test figures")
        for block in FIGURES:
            terminalreporter.write_line(block)
