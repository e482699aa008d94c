"""Store-and-forward for QoS 1 messages: a bounded FIFO on disk (sqlite, WAL).

Messages are written before they are published and deleted once the broker acknowledged them, so
alerts survive broker outages, agent crashes (kill -9) and reboots. Durability: with WAL and
``synchronous=NORMAL`` a committed ``put_many`` survives a process crash; a power cut may lose the
last transactions but never corrupts the file.

At ``max_messages`` the OLDEST messages are dropped (newest alerts matter most during an ongoing
attack); every drop is counted in the same database and logged as a warning.

Beside the messages the database holds a small key → bytes ``state`` table that :meth:`Outbox.put_many`
writes in the SAME transaction as its messages: a consumer records what it has processed (the agent: the
``seq`` values per sensor it scored) atomically with what that processing produced, so after a crash the
two never disagree. The outbox does not interpret the values; the bound applies to messages only.

Thread safety: one connection behind one lock; the pipeline thread puts, paho's network thread acks.
Ids are never reused (AUTOINCREMENT), so a late ack can never delete a newer message.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL, updated REAL NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""


class OutboxClosedError(RuntimeError):
    """The outbox was used after close()."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One stored message; ``id`` increases with insertion order."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """A bounded, persistent FIFO of MQTT messages."""

    def __init__(self, path: str | Path, max_messages: int) -> None:
        if max_messages < 1:
            raise ValueError(f"expected max_messages >= 1, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        # private whatever the umask (alerts name internal hosts); sqlite gives -wal and -shm the file's mode
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        # isolation_level=None: autocommit, transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._depth: int = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            self._dropped: int = conn.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        if self._depth > self.max_messages:  # reopened with a smaller bound
            with self._lock:
                self._commit_trimmed(self._depth)
        log.info("outbox %s: %d pending, %d dropped so far", self.path, self._depth, self._dropped)

    # ------------------------------------------------------------------ public API

    @property
    def depth(self) -> int:
        """Messages stored and not yet acknowledged."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Messages ever dropped at the bound (persisted)."""
        return self._dropped

    def put_many(
        self, items: Iterable[tuple[str, bytes, int, bool]], *, state: Mapping[str, bytes | None] | None = None
    ) -> list[int]:
        """Store ``(topic, payload, qos, retain)`` messages and the ``state`` changes (key → bytes; ``None``
        deletes the key) in one transaction; return the messages' ids in order.

        If the batch itself is larger than the bound, the oldest of its own ids are already dropped.
        """
        rows = [_validated(item) for item in items]
        changes = [_validated_state(k, v) for k, v in (state or {}).items()]
        if not rows and not changes:
            return []
        now = time.time()
        ids: list[int] = []

        def insert(c: sqlite3.Connection) -> None:
            if rows:  # one prepared statement for all rows; AUTOINCREMENT in one write transaction: consecutive ids
                c.executemany(
                    "INSERT INTO outbox (topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?)",
                    [(*row, now) for row in rows],
                )
                last = c.execute("SELECT last_insert_rowid()").fetchone()[0]
                ids.extend(range(last - len(rows) + 1, last + 1))
            c.executemany("DELETE FROM state WHERE key = ?", [(k,) for k, v in changes if v is None])
            c.executemany(
                "INSERT INTO state (key, value, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
                [(k, v, now) for k, v in changes if v is not None],
            )

        with self._lock:
            self._commit_trimmed(self._depth + len(rows), insert)
        return ids

    def load_state(self) -> dict[str, bytes]:
        """Every stored state entry (key → bytes), as committed by :meth:`put_many`."""
        with self._lock:
            return {k: bytes(v) for k, v in self._open().execute("SELECT key, value FROM state")}

    def pending(self, limit: int, after_id: int = 0) -> list[OutboxItem]:
        """Up to ``limit`` stored messages with ``id > after_id``, oldest first."""
        if limit <= 0:
            return []
        with self._lock:
            cur = self._open().execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            )
            return [OutboxItem(i, t, bytes(p), q, bool(r)) for i, t, p, q, r in cur]

    def ack(self, ids: Iterable[int]) -> int:
        """Delete acknowledged messages; unknown ids are ignored. Returns how many were deleted."""
        params = [(int(i),) for i in ids]
        if not params:
            return 0
        with self._lock:
            with _transaction(self._open()) as c:
                deleted = c.executemany("DELETE FROM outbox WHERE id = ?", params).rowcount
            self._depth -= deleted
        return deleted

    def close(self) -> None:
        """Close the database (idempotent); later calls raise OutboxClosedError."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals (lock held)

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxClosedError(f"outbox {self.path} is closed")
        return self._conn

    def _commit_trimmed(self, depth_after: int, write: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Run ``write`` and drop the oldest messages beyond the bound, in one transaction.

        ``depth_after`` is the depth once ``write`` committed; counters change only after COMMIT.
        """
        excess = max(0, depth_after - self.max_messages)
        with _transaction(self._open()) as c:
            if write is not None:
                write(c)
            if excess:
                c.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,))
                c.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (excess,))
        self._depth = depth_after - excess
        self._dropped += excess
        if excess:
            log.warning(
                "outbox %s full (%d messages): dropped the %d oldest, %d dropped in total",
                self.path,
                self.max_messages,
                excess,
                self._dropped,
            )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on any error (including a failed COMMIT)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _validated(item: tuple[str, bytes, int, bool]) -> tuple[str, bytes, int, int]:
    topic, payload, qos, retain = item
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"expected a non-empty topic string, got {topic!r}")
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"expected payload bytes, got {type(payload).__name__}")
    if qos not in (0, 1, 2):
        raise ValueError(f"expected qos 0, 1 or 2, got {qos!r}")
    return topic, bytes(payload), int(qos), int(bool(retain))


def _validated_state(key: str, value: bytes | None) -> tuple[str, bytes | None]:
    if not isinstance(key, str) or not key:
        raise ValueError(f"expected a non-empty state key string, got {key!r}")
    if value is not None and not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"expected state bytes or None, got {type(value).__name__}")
    return key, None if value is None else bytes(value)
