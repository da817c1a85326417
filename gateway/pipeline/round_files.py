"""A study round (or a chunk of one) through a worker into its outbox.

The outbox holds the round's clean files for the main destination; a named destination's
files wait in a `to-NAME` folder in it (a rule of `routes:` that sends an instance to
several destinations links the one clean file into each folder).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.base.durable import fsync_directory
from gateway.deid.engine import DeidResult
from gateway.pipeline.batch_syncs import syncs_deferred
from gateway.pipeline.files import deidentify_file
from gateway.pipeline.output_claims import CLAIMS_DIR
from gateway.pipeline.routing import DEFAULT_DESTINATION


@dataclass(frozen=True)
class RoundResult:
    """One study round through the worker: counts and the pseudonymous study UIDs."""

    instances_in: int
    written: int
    quarantined: int
    study_uids: tuple[str, ...]
    seconds: float
    reasons: tuple[str, ...] = ()
    pixel_boxes: tuple[tuple[str, int], ...] = ()  # (source, count) over the round
    dropped: tuple[tuple[str, int], ...] = ()  # (rule, count): instances a rule dropped

    def to_json(self) -> str:
        """As state.db keeps it (counts, reason codes, pseudonymous UIDs: no patient data)."""
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RoundResult:
        data = json.loads(text)
        return cls(
            instances_in=int(data["instances_in"]),
            written=int(data["written"]),
            quarantined=int(data["quarantined"]),
            study_uids=tuple(data["study_uids"]),
            seconds=float(data["seconds"]),
            reasons=tuple(data.get("reasons", ())),
            pixel_boxes=tuple((str(k), int(v)) for k, v in data.get("pixel_boxes", ())),
            dropped=tuple((str(k), int(v)) for k, v in data.get("dropped", ())),
        )


def destination_folder(outbox: Path, destination: str) -> Path:
    """Where a round's clean files for `destination` wait: the outbox itself for the main
    destination, a `to-NAME` folder in it for a named one."""
    return outbox if destination == DEFAULT_DESTINATION else outbox / f"to-{destination}"


def _outbox_target(outbox: Path, result: DeidResult) -> Path:
    return outbox / f"{result.sop_instance_uid}.dcm"


def process_round(files: list[Path], outbox: Path) -> RoundResult:
    """De-identify a study round from the spool into its outbox (in a worker process)."""
    started = time.monotonic()
    outbox.mkdir(parents=True, exist_ok=True)
    claims = outbox / CLAIMS_DIR  # shared by the round's chunks, gone with its outbox
    with syncs_deferred():  # one journal commit for the batch's outputs
        outcomes = [
            deidentify_file(
                path,
                lambda result: _outbox_target(outbox, result),
                "gateway",
                claims,
                lambda destination: destination_folder(outbox, destination),
            )
            for path in files
        ]
    for folder in [outbox, *(f for f in outbox.glob("to-*") if f.is_dir())]:
        fsync_directory(folder)
    written = [o for o in outcomes if o.status == "written"]
    held = [o for o in outcomes if o.status == "quarantined"]
    dropped: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.status == "dropped":
            dropped[outcome.detail] = dropped.get(outcome.detail, 0) + 1
    return RoundResult(
        instances_in=len(files),
        written=len(written),
        quarantined=len(held),
        study_uids=tuple(sorted({o.study_uid for o in written})),
        seconds=time.monotonic() - started,
        reasons=tuple(o.detail.split(":")[0] for o in held),
        pixel_boxes=count_boxes(o.pixel_boxes for o in outcomes),
        dropped=tuple(sorted(dropped.items())),
    )


def count_boxes(per_file: Iterable[dict[str, int]]) -> tuple[tuple[str, int], ...]:
    totals: dict[str, int] = {}
    for counts in per_file:
        for source, count in counts.items():
            totals[source] = totals.get(source, 0) + count
    return tuple(sorted(totals.items()))
