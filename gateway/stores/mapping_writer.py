"""Seals pseudonym records into `storage_dir/mapping.db` (or the shared PostgreSQL at
`mapping.url`, `mapping_postgres`): the gateway writes, cannot read.

The service's workers and offline mode use this module only; opening a record is
`mapping_reader`'s, which the running gateway never imports (it has no private key to give
it anyway). Record types and the sealing format are in `mapping_records`.

Several worker processes write at once: SQLite in WAL mode with a busy timeout, one short
IMMEDIATE transaction per instance, `INSERT OR IGNORE` (a pseudonym always stands for the
same original under one site secret, so the first record is as good as any).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gateway.keys.reid_keys import public_key_fingerprint
from gateway.stores.mapping_postgres import PostgresMapping
from gateway.stores.mapping_records import (
    BUSY_TIMEOUT_MS,
    KINDS,
    SCHEMA,
    DeidIdentity,
    InstanceOriginals,
    MappingEntry,
    MappingUnavailableError,
    associated_data,
    pad,
    raw_public_key,
    record_key,
)

__all__ = ["MappingWriter"]

_REMEMBER = 100_000  # (kind, pseudonym) pairs a writer remembers as already recorded


def _seal(
    recipient: X25519PublicKey, recipient_raw: bytes, entry: MappingEntry
) -> tuple[bytes, bytes, bytes]:
    """(ephemeral public key, nonce, ciphertext) of one original."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = raw_public_key(ephemeral.public_key())
    shared = ephemeral.exchange(recipient)
    key = record_key(shared, entry.kind, entry.pseudonym, ephemeral_raw, recipient_raw)
    nonce = secrets.token_bytes(12)
    sealed = ChaCha20Poly1305(key).encrypt(
        nonce,
        pad(entry.original.encode("utf-8")),
        associated_data(entry.kind, entry.pseudonym, entry.parent),
    )
    return ephemeral_raw, nonce, sealed


def _connect(db_path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with a busy timeout."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Owner-only from the first byte; SQLite gives -wal and -shm the same mode.
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise MappingUnavailableError(
            f"cannot create mapping store {db_path}: {exc.strerror}"
        ) from None
    connection = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


def _prepare_for_writing(connection: sqlite3.Connection) -> None:
    """WAL mode and the schema, safe to run from several processes starting at once."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError:
            # Changing the journal mode can report "locked" at once, whatever the timeout.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    # FULL: a committed record survives power loss, so no instance leaves without one.
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA:
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


class MappingWriter:
    """Seals originals to the re-identification public key; it cannot open what it wrote.

    One writer per process (the connection is opened lazily and reopened after a fork).
    Pairs already recorded by this writer are remembered, so the patient, study and series
    records a study repeats on every instance cost nothing after the first.
    """

    def __init__(self, store: Path | PostgresMapping, public_key: X25519PublicKey) -> None:
        """`store`: the SQLite file, or the shared database (`mapping.url`)."""
        if not isinstance(public_key, X25519PublicKey):
            raise TypeError("MappingWriter needs an X25519 public key")
        self.shared = store if isinstance(store, PostgresMapping) else None
        self.db_path = Path(store) if self.shared is None else Path()
        self._recipient = public_key
        self._recipient_raw = raw_public_key(public_key)
        self.key_id = public_key_fingerprint(public_key)
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._recorded: set[tuple[str, str]] = set()

    def _db(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():
            # A connection inherited through fork() must not be used (SQLite docs, "How To
            # Corrupt"): drop it without closing and open our own.
            self._connection = None
            try:
                connection = _connect(self.db_path)
                _prepare_for_writing(connection)
            except sqlite3.Error as exc:
                raise MappingUnavailableError(
                    f"cannot open mapping store {self.db_path}: {exc}"
                ) from None
            self._connection = connection
            self._pid = os.getpid()
            self._recorded.clear()
        return self._connection

    def record(
        self, kind: str, pseudonym: str, original: str, *, parent: str | None = None
    ) -> bool:
        """Seal one original under (kind, pseudonym); True if this call stored it."""
        return self.record_many([MappingEntry(kind, pseudonym, original, parent)]) == 1

    def record_instance(self, originals: InstanceOriginals, identity: DeidIdentity) -> int:
        """Seal every record of one de-identified instance in one transaction.

        Call it before the instance is written anywhere it could leave from; returns how
        many records were new to this writer.
        """
        return self.record_many(originals.entries(identity))

    def record_many(self, entries: Iterable[MappingEntry]) -> int:
        """Seal the entries this writer has not recorded yet, in one durable transaction."""
        fresh: dict[tuple[str, str], MappingEntry] = {}
        for entry in entries:
            if entry.kind not in KINDS:
                raise ValueError(f"unknown mapping kind {entry.kind!r}; expected one of {KINDS}")
            if not entry.pseudonym:
                raise ValueError(f"empty pseudonym for a {entry.kind} record")
            pair = (entry.kind, entry.pseudonym)
            if pair not in self._recorded:
                fresh.setdefault(pair, entry)
        if not fresh:
            return 0
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rows = []
        for entry in fresh.values():
            ephemeral, nonce, sealed = _seal(self._recipient, self._recipient_raw, entry)
            rows.append(
                (
                    entry.kind,
                    entry.pseudonym,
                    entry.parent,
                    self.key_id,
                    ephemeral,
                    nonce,
                    sealed,
                    created,
                )
            )
        if self.shared is not None:
            self.shared.insert_records(rows)
        else:
            self._insert_sqlite(rows)
        if len(self._recorded) + len(fresh) > _REMEMBER:
            self._recorded.clear()  # only a cache: INSERT OR IGNORE keeps the store right
        self._recorded.update(fresh)
        return len(fresh)

    def _insert_sqlite(self, rows: list[tuple[object, ...]]) -> None:
        connection = self._db()
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    "INSERT OR IGNORE INTO mapping (kind, pseudonym, parent, key_id, ephemeral,"
                    " nonce, sealed, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise MappingUnavailableError(
                f"cannot write mapping store {self.db_path}: {exc}"
            ) from None

    def close(self) -> None:
        """Close this process's connection (a later record opens a new one)."""
        if self.shared is not None:
            self.shared.close()
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None

    def __enter__(self) -> MappingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
