"""The figures of the status and studies pages, read from the stores (never from a stage).

Throughput comes from the audit trail's `study_round` records (what was forwarded, when),
so it survives a restart; studies in flight from the spool's state; nothing here holds
patient data (studies are named by the keyed hash the audit trail uses).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.stores.spool import Spool
from gateway.stores.spool_rounds import RoundState

__all__ = ["Bar", "InFlight", "audit_tail", "disk", "in_flight", "throughput", "throughput_svg"]

AUDIT_TAIL_BYTES = 8 << 20  # the console reads at most the last 8 MiB of the audit trail
BUCKET_SECONDS = 300  # one bar per five minutes, twelve in the hour


def audit_tail(path: Path, limit: int = AUDIT_TAIL_BYTES) -> Iterator[dict[str, Any]]:
    """The audit records of the file's last `limit` bytes, newest first."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - limit))
            data = file.read(limit)
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    if len(data) == limit and size > limit:
        lines = lines[1:]  # the first line was cut
    for line in reversed(lines):
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _epoch(record: dict[str, Any]) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(record["ts"])).timestamp()
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class Bar:
    start: float
    instances: int


def throughput(audit_path: Path, now: float | None = None) -> list[Bar]:
    """Instances forwarded per five minutes over the last hour, oldest bar first."""
    moment = time.time() if now is None else now
    start = moment - 12 * BUCKET_SECONDS
    counts = [0] * 12
    for record in audit_tail(audit_path):
        when = _epoch(record)
        if when is None or when < start:
            break
        if record.get("event") == "study_round" and when <= moment:
            index = min(11, int((when - start) // BUCKET_SECONDS))
            counts[index] += int(record.get("instances_out") or 0)
    return [Bar(start + i * BUCKET_SECONDS, n) for i, n in enumerate(counts)]


def throughput_svg(bars: list[Bar], width: int = 480, height: int = 120) -> str:
    """A small bar chart as inline SVG (numbers only; escaped by construction)."""
    top = max([b.instances for b in bars] + [1])
    step = width / len(bars)
    pad = 14  # room above the tallest bar for its figure
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + pad + 18}" width="{width}" '
        f'height="{height + pad + 18}" role="img" aria-label="instances forwarded per 5 minutes">',
        f'<line x1="0" y1="{height + pad}" x2="{width}" y2="{height + pad}" class="axis"/>',
    ]
    for i, bar in enumerate(bars):
        h = round(height * bar.instances / top)
        x = round(i * step + 2)
        label = time.strftime("%H:%M", time.localtime(bar.start))
        parts.append(
            f'<rect x="{x}" y="{height + pad - h}" width="{round(step - 4)}" height="{h}">'
            f"<title>{label}: {bar.instances} instances</title></rect>"
        )
        if bar.instances:
            parts.append(f'<text x="{x + 2}" y="{height + pad - h - 3}">{bar.instances}</text>')
        if i % 3 == 0:
            parts.append(f'<text x="{x}" y="{height + pad + 14}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Disk:
    free: int
    total: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free / self.total if self.total else 0.0


def disk(storage_dir: Path) -> Disk:
    usage = shutil.disk_usage(storage_dir)
    return Disk(usage.free, usage.total)


@dataclass(frozen=True)
class InFlight:
    round: int
    study_hash: str
    state: str
    instances: int
    attempts: int
    next_attempt: float
    since: float
    message: str


def in_flight(spool: Spool) -> list[InFlight]:
    """Every round still in the spool, by state, studies named by their keyed hash."""
    found: list[InFlight] = []
    for state in RoundState:
        for study_round in spool.rounds_in(state):
            found.append(
                InFlight(
                    study_round.id,
                    spool.uid_hash(study_round.study_uid),
                    state.value,
                    study_round.instances,
                    study_round.attempts,
                    study_round.next_attempt,
                    study_round.first_received,
                    study_round.message,
                )
            )
    return sorted(found, key=lambda r: r.round)


def recently_forwarded(audit_path: Path, limit: int = 50) -> list[dict[str, Any]]:
    """The last `limit` study rounds the audit trail records as done (pseudonymous)."""
    found = []
    for record in audit_tail(audit_path):
        if record.get("event") == "study_round":
            found.append(record)
            if len(found) >= limit:
                break
    return found


def search_audit(audit_path: Path, text: str, limit: int = 200) -> list[dict[str, Any]]:
    """The newest records mentioning `text` (a pseudonym, a study hash, an entry, a user)."""
    found = []
    needle = text.strip()
    for record in audit_tail(audit_path):
        if not needle or needle in json.dumps(record, default=str):
            found.append(record)
            if len(found) >= limit:
                break
    return found
