"""The CI-sized crash campaign: a SIGKILL of the running gateway aimed at each phase
(receive, de-identify, forward, database write), and two more under `spool.durability:
process` at the phases it changes (crash_campaign.py).

`make faults N=200` runs the long form and prints the same figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from crash_campaign import run_campaign
from service_harness import STORESCP, STORESCU

from gateway.service.forwarding import FORWARD_THREADS

pytestmark = [
    pytest.mark.skipif(None in (STORESCU, STORESCP), reason="DCMTK storescu/storescp missing"),
    pytest.mark.timeout(240),
]


def test_a_kill_in_each_phase_loses_nothing_acknowledged_sends_nothing_unclean_leaves_no_orphan(
    tmp_path: Path, report_figures: list[str]
) -> None:
    figures = run_campaign(tmp_path, kills=4, seed=8)
    report_figures.append(figures.table())
    assert figures.problems == []
    assert figures.lost == 0 and figures.unclean == 0
    assert figures.acknowledged >= 40, "the workload was too small to mean anything"
    # A kill while forwarding may leave, per forwarding thread, the one instance the archive
    # stored in the moment before the gateway recorded it (see spool.py): never more.
    assert figures.duplicates <= FORWARD_THREADS * sum(figures.kills.values())


def test_without_syncs_while_receiving_a_kill_still_loses_nothing_acknowledged(
    tmp_path: Path, report_figures: list[str]
) -> None:
    """spool.durability: process promises to survive the gateway's crash too."""
    # Without syncs only receiving and the state rows differ: a kill at each.
    figures = run_campaign(
        tmp_path, kills=2, seed=9, durability="process", first=("receive", "db-write")
    )
    report_figures.append(figures.table())
    assert figures.problems == []
    assert figures.lost == 0 and figures.unclean == 0
    assert figures.acknowledged >= 20, "the workload was too small to mean anything"
    assert figures.duplicates <= FORWARD_THREADS * sum(figures.kills.values())
