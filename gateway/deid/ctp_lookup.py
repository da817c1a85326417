"""CTP's lookup table (`keytype/key=value`, Java properties) and its integer table.

The lookup table is the file `deid.lookup_table` names; it is read as Java reads a
properties file (comments, `=`/`:`/space separators, `\\` escapes and continued lines), so a
table a site used with CTP means the same here. A value `@keytype/key` is an indirection to
another entry, followed at most ten times, as in CTP.
"""

from __future__ import annotations

import threading
from pathlib import Path

MAX_INDIRECTS = 10


class LookupError_(Exception):
    """A key that is not in the table (CTP's message, which carries the key: not logged)."""


def parse_properties(text: str) -> dict[str, str]:
    """Java `Properties.load` of a text: later keys win."""
    out: dict[str, str] = {}
    for logical in _logical_lines(text):
        key, value = _split_entry(logical)
        out[key] = value
    return out


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending: str | None = None
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f")
        if pending is None and (not line or line[0] in "#!"):
            continue
        if pending is not None:
            line = pending + line
        if _ends_continued(line):
            pending = line[:-1]
            continue
        pending = None
        lines.append(line)
    if pending is not None:
        lines.append(pending)
    return lines


def _ends_continued(line: str) -> bool:
    backslashes = len(line) - len(line.rstrip("\\"))
    return backslashes % 2 == 1


def _split_entry(line: str) -> tuple[str, str]:
    i = 0
    key: list[str] = []
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            key.append(line[i : i + 2])
            i += 2
            continue
        if c in "=: \t\f":
            break
        key.append(c)
        i += 1
    while i < len(line) and line[i] in " \t\f":
        i += 1
    if i < len(line) and line[i] in "=:":
        i += 1
        while i < len(line) and line[i] in " \t\f":
            i += 1
    return _unescape("".join(key)), _unescape(line[i:])


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 6 <= len(text):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def load_lookup_table(path: Path) -> dict[str, str]:
    """The table at `path` (UTF-8, as CTP reads it)."""
    return parse_properties(path.read_text(encoding="utf-8"))


def lookup(table: dict[str, str] | None, key_type: str, key: str | None) -> str:
    """AnonymizerFunctions.lookup: `keytype/key`, trimmed, with `@keytype/key` indirections."""
    if table is None:
        raise LookupError_("missing lookup table")
    if not table:
        raise LookupError_("empty lookup table")
    if key is None:
        raise LookupError_("lookup key missing")
    full = key_type.strip() + "/" + key.strip()
    value = table.get(full)
    if value is None:
        raise LookupError_("missing key in lookup table")
    value = value.strip()
    left = MAX_INDIRECTS
    while value.startswith("@") and "/" in value and left > 0:
        value = table.get(value[1:].strip())  # type: ignore[assignment]
        if value is None:
            raise LookupError_("missing key in lookup table")
        value = value.strip()
        left -= 1
    if left <= 0:
        raise LookupError_(f"more than {MAX_INDIRECTS} indirects")
    return value


class IntegerTable:
    """@integer: a number per distinct value and key type, in order of first sight.

    CTP keeps this table in a database beside the pipeline; here it lives as long as the
    engine (one `anonymize` run, one service process), so numbers are consistent within a
    run but not across runs. Scripts that need stable numbers across runs use @lookup.
    """

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, key_type: str, text: str, width: int) -> str:
        key_type, text = key_type.strip(), text.strip()
        with self._lock:
            key = key_type + "/" + text
            value = self._values.get(key)
            if value is None:
                value = self._last.get(key_type, 0) + 1
                self._last[key_type] = value
                self._values[key] = value
        return f"{value:0{width}d}" if width > 0 else str(value)
