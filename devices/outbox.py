"""An on-disk store-and-forward queue for one device, with the device's persistent `seq` counter.

Every message is appended to a SQLite file (WAL, `synchronous=FULL`: a committed entry survives a
crash or a power cut) in the same transaction that takes its `seq` from the counter, so a `seq`
is never given twice, across restarts too. Entries leave the queue only when the sender says the
broker has them (`remove`), oldest first: nothing is lost and the order is kept.

The queue is bounded (`max_entries`). When it is full, `put` raises `OutboxFull` and stores
nothing: the caller must say so loudly. Old entries are never dropped to make room.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

DEFAULT_MAX_ENTRIES = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL
);
"""


class OutboxFull(RuntimeError):
    """The queue holds `max_entries` unsent messages; nothing was stored."""


@dataclass(frozen=True)
class Entry:
    """One queued message."""

    seq: int
    topic: str
    payload: bytes


class Outbox:
    """A bounded FIFO of messages in one SQLite file; thread-safe (one connection, one lock)."""

    def __init__(
        self, path: Path, *, max_entries: int = DEFAULT_MAX_ENTRIES, first_seq: int = 1
    ) -> None:
        """Open or create the queue at `path`.

        `first_seq` is the counter's start for a *new* file only; an existing file continues
        where it stopped (never below its own entries).
        """
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            with _transaction(self._db):
                self._db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', ?)",
                    (max(first_seq, 0),),
                )
                self._db.execute(
                    "UPDATE meta SET value = max(value, (SELECT ifnull(max(seq), 0) + 1 FROM"
                    " outbox)) WHERE key = 'next_seq'"
                )
            (count,) = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        except BaseException:
            self._db.close()
            raise
        self._count: int = count

    # -- writing -----------------------------------------------------------------------------

    def put(self, topic: str, build: Callable[[int], bytes]) -> int:
        """Append `build(seq)` under the next `seq` and return that `seq` (committed to disk).

        Raises `OutboxFull` when the queue is full (nothing stored, no `seq` used), or
        `sqlite3.Error` when the disk refuses the write.
        """
        with self._lock:
            if self._count >= self.max_entries:
                raise OutboxFull(f"{self._count} messages wait to be sent (max {self.max_entries})")
            with _transaction(self._db):
                (seq,) = self._db.execute(
                    "SELECT value FROM meta WHERE key = 'next_seq'"
                ).fetchone()
                self._db.execute(
                    "INSERT INTO outbox (seq, topic, payload) VALUES (?, ?, ?)",
                    (seq, topic, build(seq)),
                )
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
            self._count += 1
            return int(seq)

    def remove(self, seqs: Iterable[int]) -> None:
        """Forget entries the broker has acknowledged (one transaction)."""
        rows = [(seq,) for seq in seqs]
        if not rows:
            return
        with self._lock:
            with _transaction(self._db):
                before = self._db.total_changes
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", rows)
                removed = self._db.total_changes - before
            self._count -= removed

    # -- reading -----------------------------------------------------------------------------

    def peek(self, after: int = -1, limit: int = 10) -> list[Entry]:
        """The oldest entries with a `seq` above `after`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Entry(int(seq), str(topic), bytes(payload)) for seq, topic, payload in rows]

    @property
    def next_seq(self) -> int:
        """The `seq` the next `put` will use."""
        with self._lock:
            (value,) = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return int(value)

    def __len__(self) -> int:
        with self._lock:
            return self._count

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
