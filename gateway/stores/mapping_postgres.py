"""The sealed mapping and the CTP @integer table in a shared PostgreSQL (`mapping.url`).

Several gateways (and every worker process of each) write one database, so that
`reidentify` finds a study whole whichever gateway de-identified its instances, and a CTP
`@integer` number is given once across all of them. What is stored is what the SQLite
files hold: sealed records (only the re-identification private key opens them) and
keyed hashes with their numbers, never an original in clear.

This module is the SQL that differs from SQLite and the connection: opened lazily in the
process that uses it, never carried across a fork (libpq connections are not fork-safe),
reopened once when the server dropped it. Every failure is a MappingUnavailableError that
names `mapping.url` without its password, so the instance waits in the spool.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import psycopg

from gateway.stores.mapping_records import MappingError, MappingUnavailableError

__all__ = ["SCHEMA_VERSION", "DatabaseUnavailableError", "PostgresMapping", "shown_url"]

T = TypeVar("T")

# Advisory lock keys (pg_advisory_xact_lock): one for the schema, one space for integers.
_SCHEMA_LOCK = 0x6D617070  # "mapp"
_INTEGER_LOCKS = 0x696E7473  # "ints", with hashtext(key type) as the second key
_CONNECT_TIMEOUT_SECONDS = 10
_STATEMENT_TIMEOUT_MS = 60_000  # bounds every wait, a lock held by another gateway too

# version -> statements; a version is applied once, in order, under the schema lock.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
CREATE TABLE mapping (
    kind      TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    parent    TEXT,
    key_id    TEXT NOT NULL,
    ephemeral BYTEA NOT NULL,
    nonce     BYTEA NOT NULL,
    sealed    BYTEA NOT NULL,
    created   TEXT NOT NULL,
    PRIMARY KEY (kind, pseudonym)
)""",
            "CREATE INDEX mapping_by_parent ON mapping (parent, kind)",
            # key: the site's keyed hash of `key type/value`; a number once per key type.
            """
CREATE TABLE ctp_integers (
    key      TEXT PRIMARY KEY,
    key_type TEXT NOT NULL,
    value    BIGINT NOT NULL,
    UNIQUE (key_type, value)
)""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

# Connections a forked child inherited: kept referenced so that garbage collection never
# runs PQfinish on them, which would end the parent's session on the shared socket.
_INHERITED: list[psycopg.Connection[Any]] = []
# Every store of this process, so that a forked child gets new locks (a thread of the
# parent may have held one at the fork, and no thread of the child would release it).
_STORES: weakref.WeakSet[PostgresMapping] = weakref.WeakSet()


@cache
def _psycopg() -> Any:
    """psycopg 3, imported on first use: a gateway without `mapping.url` never loads it
    (11 MiB in each of its processes, which the workers' forks would all carry). None:
    the `postgres` extra is not installed."""
    try:
        import psycopg
        import psycopg.conninfo
    except ImportError:
        return None
    return psycopg


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def shown_url(url: str) -> str:
    """`mapping.url` as it may be printed and logged: no password, no query parameters."""
    try:
        parts = _psycopg().conninfo.conninfo_to_dict(url)
    except _psycopg().Error:
        return "postgresql://(unparseable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class DatabaseUnavailableError(MappingUnavailableError):
    """The shared database cannot be used now: the instance waits in the spool.

    Its text is its `strerror` too, so that the service's log of a failed round (which
    shows only an OSError's type and strerror, after the worker process pickled it) says
    what is wrong; it names `mapping.url` without the password, never a value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.strerror = message


class PostgresMapping:
    """One process's link to the shared database at `mapping.url`.

    `writing`: the schema is created or migrated on first connection; otherwise (the
    re-identification reader) the session is read-only and the schema must be there.
    """

    def __init__(self, url: str, *, writing: bool = True) -> None:
        if _psycopg() is None:
            raise MappingError(
                "mapping.url needs psycopg 3, which is not installed: install the `postgres`"
                " extra (pip install 'dicom-gateway[postgres]')"
            )
        self.shown = shown_url(url)
        try:
            self._password = str(_psycopg().conninfo.conninfo_to_dict(url).get("password") or "")
        except _psycopg().Error as exc:
            raise MappingError(
                f"mapping.url is not a PostgreSQL URL ({type(exc).__name__})"
            ) from None
        self._url = url
        self._writing = writing
        self._connection: psycopg.Connection[Any] | None = None
        self._pid = 0
        self._lock = threading.Lock()
        _STORES.add(self)

    def __repr__(self) -> str:
        return f"PostgresMapping({self.shown})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to a spawned worker) without its connection or lock."""
        state = dict(self.__dict__)
        state.update(_connection=None, _pid=0, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        _STORES.add(self)

    # -- connection ---------------------------------------------------------------------------

    def _problem(self, doing: str, exc: BaseException) -> MappingUnavailableError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return DatabaseUnavailableError(f"mapping.url ({self.shown}): cannot {doing}: {text}")

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is not None and self._pid != os.getpid():
            _INHERITED.append(self._connection)  # the parent's: never used, never closed
            self._connection = None
        if self._connection is None or self._connection.closed:
            try:
                connection = _psycopg().connect(
                    self._url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_SECONDS
                )
            except _psycopg().Error as exc:
                raise self._problem("connect", exc) from None
            try:
                connection.execute(f"SET statement_timeout = {_STATEMENT_TIMEOUT_MS}")
                if self._writing:
                    self._migrate(connection)
                else:
                    connection.execute("SET default_transaction_read_only = on")
            except BaseException:
                connection.close()
                raise
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        """Bring the schema to SCHEMA_VERSION; two gateways starting at once take turns."""
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                    " applied TIMESTAMPTZ NOT NULL DEFAULT now())"
                )
                row = connection.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_version"
                ).fetchone()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:  # kept in the spool until this one is upgraded
                    raise DatabaseUnavailableError(
                        f"mapping.url ({self.shown}): the database's schema is version "
                        f"{current}, newer than this gateway's ({SCHEMA_VERSION}): upgrade it"
                    )
                for version, statements in MIGRATIONS:
                    if version > current:
                        for statement in statements:
                            connection.execute(statement)
                        connection.execute(
                            "INSERT INTO schema_version (version) VALUES (%s)", (version,)
                        )
        except _psycopg().Error as exc:
            raise self._problem("create or migrate the schema", exc) from None

    def _run(self, doing: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`work` on this process's connection; once more on a new one if the server had
        dropped the old (a restart), since every piece of work here is safe to repeat."""
        with self._lock:
            for attempt in (1, 2):
                reused = self._connection is not None and self._pid == os.getpid()
                connection = self._connect()
                try:
                    return work(connection)
                except _psycopg().OperationalError as exc:
                    connection.close()
                    self._connection = None
                    if attempt == 2 or not reused:
                        raise self._problem(doing, exc) from None
                except _psycopg().Error as exc:
                    raise self._problem(doing, exc) from None
        raise AssertionError("unreachable")

    def prepare(self) -> None:
        """Connect (and, writing, create or migrate the schema) now: start-up checks."""
        self._run("connect", lambda connection: None)

    def close(self) -> None:
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    # -- the sealed mapping -------------------------------------------------------------------

    def insert_records(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of (kind, pseudonym, parent, key_id, ephemeral, nonce, sealed, created),
        committed together; a (kind, pseudonym) another writer stored first is left as is."""

        def insert(connection: psycopg.Connection[Any]) -> None:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO mapping (kind, pseudonym, parent, key_id, ephemeral, nonce,"
                    " sealed, created) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (kind, pseudonym) DO NOTHING",
                    rows,
                )

        self._run("write the mapping", insert)

    def select_records(self, where: str, params: Sequence[str]) -> list[tuple[Any, ...]]:
        """The reader's query (SQLite `?` placeholders) against the shared table."""
        sql = (
            "SELECT kind, pseudonym, parent, key_id, ephemeral, nonce, sealed FROM mapping "
            f"WHERE {where.replace('?', '%s')} ORDER BY pseudonym"
        )
        return self._run(
            "read the mapping", lambda connection: connection.execute(sql, params).fetchall()
        )

    # -- the CTP @integer table ---------------------------------------------------------------

    def number(self, key_type: str, key: str) -> int:
        """The number of `key` (a keyed hash) among `key_type`'s, given the next free one if
        it has none. An advisory lock per key type makes the gateways take turns, and the
        table's UNIQUE (key_type, value) refuses a number twice whatever happens."""

        def numbered(connection: psycopg.Connection[Any]) -> int:
            select = "SELECT value FROM ctp_integers WHERE key = %s"
            row = connection.execute(select, (key,)).fetchone()
            if row is not None:
                return int(row[0])
            with connection.transaction():
                connection.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_INTEGER_LOCKS, key_type)
                )
                row = connection.execute(select, (key,)).fetchone()
                if row is None:
                    row = connection.execute(
                        "INSERT INTO ctp_integers (key, key_type, value) SELECT %s, %s,"
                        " COALESCE(MAX(value), 0) + 1 FROM ctp_integers WHERE key_type = %s"
                        " RETURNING value",
                        (key, key_type, key_type),
                    ).fetchone()
                assert row is not None
                return int(row[0])

        return self._run("number a CTP @integer value", numbered)
