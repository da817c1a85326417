"""A region a reviewer marked on an image, written as a rule in the pixel rules file.

The rule is for that device and that image size (Modality, Manufacturer, model, Rows,
Columns of the instance: device facts, not patient data), appended as YAML text so the
file's comments stay, checked by the same loader the gateway starts with before it replaces
the file, and used from the gateway's next start (the running workers keep their rules).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from pydicom.dataset import Dataset

from gateway.base.durable import fsync_directory
from gateway.pixels.rules import PixelConfigError, load_pixel_config

__all__ = ["RuleFileError", "add_pixel_rule"]

_TOP_LEVEL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):", re.M)


class RuleFileError(Exception):
    """The rule cannot be written (the message names why, never a value of the image)."""


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def rule_text(
    header: Dataset, box: tuple[int, ...], user: str, dash_column: int = 2
) -> tuple[str, str]:
    """(name, YAML lines of one item of `rules:`, its dash in `dash_column`) for `box` on
    images like `header`."""
    rows, columns = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows):
        raise RuleFileError(f"the box {list(box)} is not inside the {columns}x{rows} image")
    name = f"console-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    lines = [f"- name: {name}", f"  # marked in the web console by {_quoted(user)}",
             "  conditions:"]  # fmt: skip
    for keyword in ("Modality", "Manufacturer", "ManufacturerModelName"):
        value = str(header.get(keyword, "") or "").strip()
        if value:
            shown = value if keyword == "Modality" else f"^{re.escape(value)}$"
            lines.append(f"    {keyword}: {_quoted(shown)}")
    lines += [f"    Rows: {rows}", f"    Columns: {columns}", "  boxes:",
              f"    - [{x0}, {y0}, {x1}, {y1}]"]  # fmt: skip
    return name, "".join(" " * dash_column + line + "\n" for line in lines)


def add_pixel_rule(path: Path, header: Dataset, box: tuple[int, ...], user: str) -> str:
    """Append the rule to `path` when `rules:` is its last top-level key (so the new item
    lands in that list); the result must load, or the file is left as it was."""
    current = path.read_text(encoding="utf-8")
    items = re.search(r"^rules:[^\n]*\n(?:[ \t]*(?:#[^\n]*)?\n)*( *)- ", current, re.M)
    name, text = rule_text(header, box, user, len(items.group(1)) if items else 2)
    keys = _TOP_LEVEL.findall(current)
    if keys and keys[-1] != "rules":
        raise RuleFileError(f"{path}: 'rules' is not the file's last section; add it by hand")
    body = current if current.endswith("\n") else current + "\n"
    if not keys:
        body += "rules:\n"
    else:  # `rules: []` or `rules: null` becomes a list the item can join
        body = re.sub(r"^rules:[ \t]*(\[[ \t]*\]|null|~)[ \t]*$", "rules:", body, flags=re.M)
    body += text
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        temporary.write_text(body, encoding="utf-8")
        try:
            load_pixel_config(temporary)
        except PixelConfigError as exc:
            raise RuleFileError(f"the new rule does not load: {exc}") from None
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
        fsync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
    return name
