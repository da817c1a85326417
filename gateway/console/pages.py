"""The pages every role sees (status, studies, the quarantine list) and the audit trail.

Pseudonymous data only: studies are named by the keyed hash of their UID (the audit
trail's `study_hash`) or their pseudonymous UIDs, quarantine entries by their id, reason
and stage.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, render_template, request
from markupsafe import Markup

from gateway.console.accounts import Role
from gateway.console.security import require
from gateway.console.status import (
    disk,
    in_flight,
    recently_forwarded,
    search_audit,
    throughput,
    throughput_svg,
)
from gateway.deid.review import TABLE_E1_1_EDITION, review
from gateway.stores import quarantine
from gateway.stores.spool_rounds import RoundState

if TYPE_CHECKING:
    from gateway.console.app import ConsoleContext

__all__ = ["console_context", "register_pages"]

MAX_ROWS = 500  # of the quarantine list, newest first (filters narrow it)


def console_context() -> ConsoleContext:
    return current_app.extensions["console"]  # type: ignore[no-any-return]


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else ""


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def held_rounds(context: ConsoleContext) -> list[dict[str, Any]]:
    """Studies held whole: failed forwarding, or processing that failed too often."""
    spool = context.spool
    rows = []
    for state, stage in ((RoundState.FAILED, "forward"), (RoundState.HELD, "process")):
        for study_round in spool.rounds_in(state):
            rows.append({
                "id": f"round-{study_round.id}", "kind": "study", "stage": stage,
                "reason": state.value, "message": study_round.message,
                "created": study_round.first_received, "instances": study_round.instances,
            })  # fmt: skip
    return rows


def register_pages(app: Flask) -> None:
    app.jinja_env.filters["when"] = _when
    app.jinja_env.filters["size"] = _size

    @app.get("/")
    @require(Role.VIEWER)
    def status() -> Any:
        context = console_context()
        spool = context.spool
        audit_path = context.audit.path
        space = disk(context.storage_dir)
        retrying = [r for r in spool.rounds_in(RoundState.FORWARDING) if r.attempts > 0]
        bars = throughput(audit_path)
        return render_template(
            "status.html",
            healthy=_safe(context.healthy, False),
            listening=context.listening,
            queue_depth=spool.queue_depth(),
            chart=Markup(throughput_svg(bars)),  # numbers only (status.py)
            forwarded_hour=sum(b.instances for b in bars),
            destinations=context.destinations,
            retrying=len(retrying),
            retry_rows=[
                (r.id, spool.uid_hash(r.study_uid), r.attempts, r.next_attempt, r.message)
                for r in retrying[:20]
            ],
            next_retry=spool.next_retry_in(),
            failed=spool.count_in(RoundState.FAILED),
            held=spool.count_in(RoundState.HELD),
            disk=space,
            quarantined=len(quarantine.entries(context.storage_dir)),
        )

    @app.get("/studies")
    @require(Role.VIEWER)
    def studies() -> Any:
        context = console_context()
        return render_template(
            "studies.html",
            rounds=in_flight(context.spool),
            done=recently_forwarded(context.audit.path),
        )

    @app.get("/quarantine")
    @require(Role.VIEWER)
    def quarantine_list() -> Any:
        context = console_context()
        rows = [
            {"id": e.id, "kind": "instance", "stage": e.stage, "reason": e.reason,
             "message": e.message, "created": e.created, "instances": 1}
            for e in reversed(quarantine.entries(context.storage_dir))
        ] + held_rounds(context)  # fmt: skip
        reasons = sorted({r["reason"] for r in rows})
        stages = sorted({r["stage"] for r in rows})
        reason, stage = request.args.get("reason", ""), request.args.get("stage", "")
        shown = [
            r for r in rows if (not reason or r["reason"] == reason)
            and (not stage or r["stage"] == stage)
        ]  # fmt: skip
        return render_template(
            "quarantine.html", rows=shown[:MAX_ROWS], total=len(rows), reasons=reasons,
            stages=stages,
            reason=reason, stage=stage,
        )  # fmt: skip

    @app.get("/profile")
    @require(Role.VIEWER)
    def profile_review() -> Any:
        """The running profiles' weakenings of the Basic Profile (`profile review`'s table)."""
        settings = console_context().settings
        reviews = [review(p) for p in (settings.profile, *settings.route_profiles)]
        return render_template("profile.html", reviews=reviews, edition=TABLE_E1_1_EDITION)

    @app.get("/audit")
    @require(Role.ADMIN)
    def audit() -> Any:
        context = console_context()
        text = request.args.get("q", "")[:200]
        records = search_audit(context.audit.path, text)
        return render_template("audit.html", records=records, q=text)


def _safe(probe: Any, default: Any) -> Any:
    try:
        return probe()
    except Exception:
        return default
