"""The run report (JSON): counts, and per study only keyed hashes and counts.

`study_hash` is the same keyed hash of the Study Instance UID as the gateway's audit
records carry (`study_round` events), so a study can be followed from the report into the
audit trail. What happened after the gateway received a study (forwarded, quarantined)
the report learns from that audit trail (`storage_dir/audit.jsonl`, the service's own
durable record): the `study_round` records of the run's studies written since the run
began. A study's round closes `study.quiet_seconds` after its last instance, so the counts
are those at the time of the report; running the same pull again (everything is done, it
fetches nothing) writes the report again with the later counts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.pull.run_state import RunState

__all__ = ["GatewaySide", "build_report", "gateway_side"]


@dataclass(frozen=True)
class GatewaySide:
    studies_closed: int  # studies with at least one study_round record
    forwarded: int  # instances the gateway sent on (instances_out of forwarded rounds)
    quarantined: int
    failed_rounds: int


def _parse(ts: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(ts)
    except (TypeError, ValueError):
        return None


def gateway_side(audit: Path, study_hashes: Iterable[str], since: str) -> GatewaySide:
    """Sums over the audit's `study_round` records of these studies since `since`."""
    wanted = set(study_hashes)
    start = _parse(since)
    closed: set[str] = set()
    forwarded = quarantined = failed = 0
    try:
        lines = audit.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut off by a crash
        if not isinstance(record, dict) or record.get("event") != "study_round":
            continue
        if record.get("study_hash") not in wanted:
            continue
        when = _parse(str(record.get("ts", "")))
        if start is not None and (when is None or when < start):
            continue
        closed.add(str(record["study_hash"]))
        if record.get("result") == "forwarded":
            forwarded += int(record.get("instances_out") or 0)
        elif record.get("result") == "failed":
            failed += 1
        quarantined += int(record.get("instances_quarantined") or 0)
    return GatewaySide(len(closed), forwarded, quarantined, failed)


def build_report(
    state: RunState,
    *,
    started: str,
    dry_run: bool,
    retrieve: str,
    request_kind: str,
    requested: int,
    matched: int,
    not_found: list[str],
    study_hashes: list[str],
    audit: Path,
) -> dict[str, Any]:
    studies = [
        {
            "study_hash": key,
            "status": state.study(key).status,
            "modalities": state.study(key).modalities,
            "instances_expected": state.study(key).expected,
            "instances_retrieved": state.study(key).retrieved,
            "instances_failed": state.study(key).failed,
        }
        for key in study_hashes
    ]
    expected = sum(s["instances_expected"] or 0 for s in studies)
    counts: dict[str, Any] = {
        "requested": requested,
        "found": matched,
        "not_found": len(not_found),
        "studies_found": len(studies),
        "studies_retrieved": sum(s["status"] == "complete" for s in studies),
        "studies_failed": sum(s["status"] in ("failed", "partial") for s in studies),
        "instances_expected": expected,
        "instances_retrieved": sum(s["instances_retrieved"] for s in studies),
        "instances_failed": sum(s["instances_failed"] for s in studies),
    }
    report: dict[str, Any] = {
        "run_id": state.run_id,
        "run_began": state.created,
        "started": started,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dry_run": dry_run,
        "retrieve": retrieve,
        "key": request_kind,
        "counts": counts,
        "not_found": not_found,  # positions in the request ("row 7", "argument 2")
        "studies": studies,
    }
    if not dry_run:
        side = gateway_side(audit, study_hashes, state.created)
        report["gateway"] = {
            "audit": str(audit),
            "studies_closed": side.studies_closed,
            "instances_forwarded": side.forwarded,
            "instances_quarantined": side.quarantined,
            "rounds_not_forwarded": side.failed_rounds,
            "note": "from the audit's study_round records so far; a study closes "
            "study.quiet_seconds after its last instance (run the pull again to refresh)",
        }
    return report
