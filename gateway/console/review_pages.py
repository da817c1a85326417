"""The review of one quarantined instance: pictures, header diff, release, purge, and a
marked region turned into a pixel rule.

Originals hold patient data; that is the point of review. So the pictures, the header diff
and every action are for reviewers (viewers get 403), each look at an original and each
action is audited with the user's name, and nothing derived from an original is logged.
Release and purge are the functions `dicom-gateway quarantine` calls.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, abort, current_app, g, redirect, render_template, request
from pydicom import dcmread

from gateway.console.accounts import Role
from gateway.console.pages import console_context, held_rounds
from gateway.console.pictures import BOX_COLOURS, THUMBNAIL_SIDE, frame_count, render_png
from gateway.console.preview import cache_folder, forget, header_diff, preview
from gateway.console.rules_file import RuleFileError, add_pixel_rule
from gateway.console.security import require
from gateway.stores import quarantine

__all__ = ["register_review_pages"]

log = logging.getLogger(__name__)

_ENTRY = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,80}")


def _audit(event: str, **fields: Any) -> None:
    current_app.extensions["audit_action"](event, **fields)


def _entry(entry_id: str) -> quarantine.QuarantineEntry:
    if not _ENTRY.fullmatch(entry_id):
        abort(404)
    for entry in quarantine.entries(console_context().storage_dir):
        if entry.id == entry_id:
            return entry
    abort(404)


def _window() -> tuple[float, float] | None:
    try:
        centre, width = float(request.args["wc"]), float(request.args["ww"])
    except (KeyError, ValueError):
        return None
    return (centre, width) if width > 0 else None


def _diff(original: Any, cleaned: Any) -> list[Any]:
    if cleaned is None:
        return []
    return header_diff(original, dcmread(cleaned, force=True, stop_before_pixels=True))


def register_review_pages(app: Flask) -> None:
    @app.get("/quarantine/<entry_id>")
    @require(Role.VIEWER)
    def instance(entry_id: str) -> Any:
        context = console_context()
        if entry_id.startswith("round-"):
            rows = [r for r in held_rounds(context) if r["id"] == entry_id]
            if not rows:
                abort(404)
            return render_template("round.html", row=rows[0])
        entry = _entry(entry_id)
        reviewer = g.account.role >= Role.REVIEWER
        page: dict[str, Any] = {"entry": entry, "reviewer": reviewer}
        if reviewer:
            _audit("console_view_original", entry=entry.id, view="page")
            original_path = entry.path / quarantine.ORIGINAL_NAME
            folder = cache_folder(context.console_folder, entry.id)
            with context.preview_lock:
                result = preview(original_path, folder, context.settings)
            original = dcmread(original_path, force=True, stop_before_pixels=True)
            frames = frame_count(original)
            frame = min(max(request.args.get("frame", 0, type=int), 0), frames - 1)
            page.update(
                frame=frame,
                frames=frames,
                problem=result.problem,
                has_pixels=bool(original.get("Rows")) and bool(original.get("Columns")),
                has_cleaned=result.cleaned is not None,
                boxes=[b for b in result.boxes if b.frame is None or b.frame == frame],
                colours=BOX_COLOURS,
                diff=_diff(original, result.cleaned),
                window=request.query_string.decode("ascii", "replace"),
                device={
                    "modality": str(original.get("Modality", "")),
                    "manufacturer": str(original.get("Manufacturer", "")),
                    "model": str(original.get("ManufacturerModelName", "")),
                    "rows": int(original.get("Rows") or 0),
                    "columns": int(original.get("Columns") or 0),
                },
                rules_file=context.pixel_rules,
            )
        return render_template("instance.html", **page)

    @app.get("/quarantine/<entry_id>/<which>.png")
    @require(Role.REVIEWER)
    def picture(entry_id: str, which: str) -> Any:
        if which not in ("original", "cleaned"):
            abort(404)
        context = console_context()
        entry = _entry(entry_id)
        folder = cache_folder(context.console_folder, entry.id)
        with context.preview_lock:
            result = preview(entry.path / quarantine.ORIGINAL_NAME, folder, context.settings)
        frame = request.args.get("frame", 0, type=int)
        if which == "original":
            _audit("console_view_original", entry=entry.id, view="picture", frame=frame)
            source = entry.path / quarantine.ORIGINAL_NAME
        elif result.cleaned is None:
            abort(404)
        else:
            source = result.cleaned
        try:
            data = render_png(source, folder, which, frame, result.boxes, _window())
        except IndexError:
            abort(404)
        except Exception as exc:
            log.info("console: frame not shown (%s)", type(exc).__name__)
            abort(422)
        return Response(data, mimetype="image/png")

    @app.get("/quarantine/<entry_id>/thumbnail.png")
    @require(Role.REVIEWER)
    def thumbnail(entry_id: str) -> Any:
        """The original's first frame, small, for the quarantine list (no boxes, no preview:
        no engine runs for a list)."""
        context = console_context()
        entry = _entry(entry_id)
        folder = cache_folder(context.console_folder, entry.id)
        _audit("console_view_original", entry=entry.id, view="thumbnail")
        try:
            data = render_png(entry.path / quarantine.ORIGINAL_NAME, folder, "thumbnail", 0, [],
                              side=THUMBNAIL_SIDE)  # fmt: skip
        except Exception as exc:
            log.info("console: thumbnail not shown (%s)", type(exc).__name__)
            abort(404)
        return Response(data, mimetype="image/png")

    @app.post("/quarantine/<entry_id>/release")
    @require(Role.REVIEWER)
    def release(entry_id: str) -> Any:
        context = console_context()
        spool = context.spool
        if entry_id.startswith("round-") and entry_id[6:].isdigit():
            number = int(entry_id[6:])
            if not (spool.release(number) or spool.release_held(number)):
                abort(404)
        else:
            entry = _entry(entry_id)
            try:
                quarantine.release(context.storage_dir, entry.id, spool)
            except KeyError:
                abort(404)
            except ValueError:
                _audit("console_release_failed", entry=entry.id)
                return render_template(
                    "error.html", code=422, why="the original is not a readable instance"
                ), 422
            forget(context.console_folder, entry.id)
        _audit("console_release", entry=entry_id)
        return redirect("/quarantine?done=released")

    @app.post("/quarantine/<entry_id>/purge")
    @require(Role.REVIEWER)
    def purge(entry_id: str) -> Any:
        context = console_context()
        entry = _entry(entry_id)
        try:
            quarantine.remove(context.storage_dir, entry.id)
        except KeyError:
            abort(404)
        forget(context.console_folder, entry.id)
        _audit("console_purge", entry=entry.id)
        return redirect("/quarantine?done=purged")

    @app.post("/quarantine/<entry_id>/rule")
    @require(Role.REVIEWER)
    def rule(entry_id: str) -> Any:
        context = console_context()
        entry = _entry(entry_id)
        if context.pixel_rules is None:
            abort(409)
        try:
            box = tuple(int(request.form[k]) for k in ("x0", "y0", "x1", "y1"))
        except (KeyError, ValueError):
            abort(400)
        if request.form.get("confirm") != "yes":
            return render_template(
                "error.html", code=400, why="tick the confirmation to write the rule"
            ), 400
        header = dcmread(entry.path / quarantine.ORIGINAL_NAME, force=True,
                         stop_before_pixels=True)  # fmt: skip
        try:
            name = add_pixel_rule(context.pixel_rules, header, box, g.account.name)
        except RuleFileError as exc:
            return render_template("error.html", code=409, why=str(exc)), 409
        _audit("console_pixel_rule", entry=entry.id, rule=name, box=list(box))
        return render_template("rule_added.html", name=name, path=context.pixel_rules,
                               entry=entry)  # fmt: skip
