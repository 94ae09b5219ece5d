"""`--keep-readings-days` (§7): readings older than N days that InfluxDB already has are deleted
from the embedded store; scans, alerts and records are kept.

Only rows at or below the readings forwarder's cursor are InfluxDB's, so nothing is deleted that
InfluxDB lacks, and without `--influx` there is no forwarder and nothing is deleted. The delete
runs in the forwarder's thread once an hour, in small transactions, so the worker (the writer of
everything else) waits at most one short transaction for the lock.
"""

from __future__ import annotations

import datetime as dt
import time

from gateway.store.sqlite import SqliteStore

EVERY_SECONDS = 3600.0
CHUNK = 2_000


class Retention:
    """Deletes old readings that InfluxDB has, at most once per `every` seconds."""

    def __init__(self, keep_days: float, every: float = EVERY_SECONDS) -> None:
        if keep_days <= 0:
            raise ValueError("keep_days must be positive")
        self.keep = dt.timedelta(days=keep_days)
        self.every = every
        self._next = 0.0

    def run_if_due(self, store: SqliteStore, sent_through: int, now: dt.datetime) -> int:
        """Delete when due; returns the rows deleted."""
        if time.monotonic() < self._next:
            return 0
        self._next = time.monotonic() + self.every
        return delete_sent_readings(store, sent_through, now - self.keep)


def delete_sent_readings(store: SqliteStore, sent_through: int, before: dt.datetime) -> int:
    """Delete readings with an id up to `sent_through` (in InfluxDB) and an event time before
    `before`, a chunk per transaction; returns how many."""
    from gateway.influx.points import connection

    db = connection(store)
    cutoff = before.timestamp()
    total = 0
    while True:
        cur = db.execute(
            "DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE id <= ? AND time < ?"
            " LIMIT ?)",
            (sent_through, cutoff, CHUNK),
        )
        db.commit()
        total += cur.rowcount
        if cur.rowcount < CHUNK:
            return total
        time.sleep(0.01)  # let the worker in between chunks
