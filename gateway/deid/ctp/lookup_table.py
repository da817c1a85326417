"""CTP's lookup table (`keytype/key=value`, Java properties) and its integer table.

The lookup table is the file `deid.lookup_table` names; it is read as Java reads a
properties file (comments, `=`/`:`/space separators, `\\` escapes and continued lines), so a
table a site used with CTP means the same here. A value `@keytype/key` is an indirection to
another entry, followed at most ten times, as in CTP.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

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


class IntegerStore(Protocol):
    """A shared numbering (the `mapping.url` database): `key` is already a keyed hash."""

    def number(self, key_type: str, key: str) -> int: ...


class IntegerTable:
    """@integer: a number per distinct value and key type, in order of first sight.

    CTP keeps this table in a database beside its pipeline, so a patient keeps the number
    it was given in every later study. With `path` the table is that kind of database (an
    SQLite file in the storage folder) shared by every worker process and every run; its
    keys are `keyed(key type / value)`, a keyed hash, so the file holds no patient data.
    Without `path` (tests, a one-off check) it lives as long as the engine. `use_store`
    moves it to a database several gateways share, with the same keyed keys.
    """

    def __init__(self, path: Path | None = None, keyed: Callable[[str], str] | None = None):
        if path is not None and keyed is None:
            raise ValueError("a persistent integer table needs a keyed hash for its keys")
        self._path = path
        self._keyed = keyed
        self._values: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._store: IntegerStore | None = None

    def use_store(self, store: IntegerStore) -> None:
        """Number in `store` instead of the file (its errors are the caller's to retry)."""
        if self._keyed is None:
            raise ValueError("a shared integer table needs a keyed hash for its keys")
        self._store = store

    def get(self, key_type: str, text: str, width: int) -> str:
        key_type, text = key_type.strip(), text.strip()
        key = key_type + "/" + text
        with self._lock:
            value = self._values.get(key)
            if value is None:
                if self._store is not None and self._keyed is not None:
                    value = self._store.number(key_type, self._keyed(key))
                else:
                    value = self._stored(key_type, key) if self._path is not None else None
                if value is None:
                    value = self._last.get(key_type, 0) + 1
                    self._last[key_type] = value
                self._values[key] = value
        return f"{value:0{width}d}" if width > 0 else str(value)

    def _stored(self, key_type: str, key: str) -> int:
        """The number of `key` in the shared table, given the next free one if it has none
        (one IMMEDIATE transaction, so two workers never hand out the same number)."""
        assert self._path is not None and self._keyed is not None
        if self._db is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self._path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a number handed out stays its own
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS integers (key TEXT PRIMARY KEY, "
                "key_type TEXT NOT NULL, value INTEGER NOT NULL)"
            )
        hashed = self._keyed(key)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT value FROM integers WHERE key = ?", (hashed,)).fetchone()
            if row is None:
                (last,) = db.execute(
                    "SELECT COALESCE(MAX(value), 0) FROM integers WHERE key_type = ?",
                    (key_type,),
                ).fetchone()
                row = (last + 1,)
                db.execute("INSERT INTO integers VALUES (?, ?, ?)", (hashed, key_type, row[0]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(row[0])
