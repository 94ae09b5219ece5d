"""Every scan, reading, device status, alert transition and refusal, in one SQLite file.

One thread writes (the ingest worker); it commits a batch, and only then are the batch's
messages acknowledged to the broker. WAL lets readers (the API, reports) run beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.alerts.book import Transition
from gateway.alerts.record import Alert
from gateway.events import DeviceStatus, Event, Reading, Rejection, Scan, SwapRegistered

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scans (
    id INTEGER PRIMARY KEY,
    reader TEXT NOT NULL, post TEXT NOT NULL, seq INTEGER,
    credential TEXT NOT NULL, method TEXT NOT NULL, person TEXT,
    time REAL NOT NULL, received_at REAL NOT NULL, flags TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX IF NOT EXISTS scans_reader_seq ON scans (reader, seq) WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS scans_time ON scans (time);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    equipment TEXT NOT NULL, metric TEXT NOT NULL, seq INTEGER,
    time REAL NOT NULL, received_at REAL NOT NULL, value REAL NOT NULL, is_bool INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS readings_seq ON readings (equipment, seq, metric)
    WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS readings_metric_time ON readings (equipment, metric, time);
CREATE TABLE IF NOT EXISTS device_status (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, state TEXT NOT NULL,
    time REAL NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL,
    raised_at REAL NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE TABLE IF NOT EXISTS alert_transitions (
    id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, change TEXT NOT NULL, at REAL NOT NULL,
    actor TEXT NOT NULL, comment TEXT NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS swaps (
    id INTEGER PRIMARY KEY, date TEXT NOT NULL, manager TEXT NOT NULL,
    registered_at REAL NOT NULL, source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected_counts (code TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, topic TEXT NOT NULL, code TEXT NOT NULL,
    reason TEXT NOT NULL, payload BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class LatestValue:
    """The newest value of one metric."""

    equipment: str
    metric: str
    time: dt.datetime
    value: float | bool


@dataclass(frozen=True)
class Bucket:
    """One downsampled interval of a metric (booleans count as 0/1)."""

    start: dt.datetime
    min: float
    mean: float
    max: float
    count: int


def _t(instant: dt.datetime) -> float:
    return instant.timestamp()


def _instant(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


class SqliteStore:
    """The gateway's durable record. Not thread-safe for writing: one writer thread."""

    def __init__(self, path: str | pathlib.Path = ":memory:", readonly: bool = False) -> None:
        self.path = str(path)
        if readonly:
            # A reader beside the running gateway (demo display, reports): never writes,
            # never takes the write lock.
            uri = pathlib.Path(self.path).resolve().as_uri() + "?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            return
        if self.path != ":memory:":
            pathlib.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a process crash (kill -9) in WAL mode; only a power loss
        # can lose the last commits. FULL would make every batch wait for the disk.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self._db.commit()

    def close(self) -> None:
        """Commit (if anything was written) and close."""
        if self._db.in_transaction:
            self._db.commit()
        self._db.close()

    def commit(self) -> None:
        """Make everything written since the last commit durable."""
        self._db.commit()

    def rollback(self) -> None:
        """Forget everything written since the last commit."""
        self._db.rollback()

    # -- writes ------------------------------------------------------------------------------

    def add_scan(self, scan: Scan) -> bool:
        """Store a scan; False when (reader, seq) was already stored (a duplicate delivery)."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO scans (reader, post, seq, credential, method, person, time,"
            " received_at, flags) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                scan.reader,
                scan.post,
                scan.seq,
                scan.credential,
                scan.method,
                scan.person,
                _t(scan.time),
                _t(scan.received_at),
                json.dumps(list(scan.flags)),
            ),
        )
        return cur.rowcount == 1

    def scan_flags(self, reader: str, seq: int | None) -> tuple[str, ...] | None:
        """The flags of the stored scan (reader, seq), or None if there is none (or no seq)."""
        if seq is None:
            return None
        row = self._db.execute(
            "SELECT flags FROM scans WHERE reader = ? AND seq = ?", (reader, seq)
        ).fetchone()
        return None if row is None else tuple(json.loads(row[0]))

    def add_reading(self, reading: Reading) -> bool:
        """Store a reading's values; False when (equipment, seq) was already stored."""
        if (
            reading.seq is not None
            and self._db.execute(
                "SELECT 1 FROM readings WHERE equipment = ? AND seq = ? LIMIT 1",
                (reading.equipment, reading.seq),
            ).fetchone()
        ):
            return False  # a redelivery, even if it carries other metrics than the first time
        rows = [
            (
                reading.equipment,
                metric,
                reading.seq,
                _t(reading.time),
                _t(reading.received_at),
                float(value),
                isinstance(value, bool),
            )
            for metric, value in reading.values.items()
        ]
        before = self._db.total_changes
        self._db.executemany(
            "INSERT OR IGNORE INTO readings (equipment, metric, seq, time, received_at, value,"
            " is_bool) VALUES (?,?,?,?,?,?,?)",
            rows,
        )
        return self._db.total_changes > before

    def add_status(self, status: DeviceStatus) -> None:
        """Store a device status change."""
        self._db.execute(
            "INSERT INTO device_status (device, state, time, received_at) VALUES (?,?,?,?)",
            (status.device, status.state, _t(status.time), _t(status.received_at)),
        )

    def add_rejection(self, rejection: Rejection, reason: str, at: dt.datetime) -> None:
        """Count a refusal and keep it for operators."""
        self._db.execute(
            "INSERT INTO rejected_counts VALUES (?, 1)"
            " ON CONFLICT (code) DO UPDATE SET count = count + 1",
            (rejection.code,),
        )
        self._db.execute(
            "INSERT INTO rejected (at, topic, code, reason, payload) VALUES (?,?,?,?,?)",
            (_t(at), rejection.topic[:1024], rejection.code, reason, rejection.payload),
        )

    def add_transition(self, transition: Transition, tz: dt.tzinfo) -> None:
        """Keep the alert's latest record and the transition itself (contract §6)."""
        alert = transition.alert
        record = json.dumps(alert.to_json(tz), ensure_ascii=False)
        self._db.execute(
            "INSERT INTO alerts (id, rule, subject, state, raised_at, record) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, record = excluded.record",
            (alert.id, alert.rule, alert.subject, alert.state, _t(alert.raised_at), record),
        )
        self._db.execute(
            "INSERT INTO alert_transitions (alert_id, change, at, actor, comment, record)"
            " VALUES (?,?,?,?,?,?)",
            (
                alert.id,
                transition.change,
                _t(transition.at),
                transition.actor,
                transition.comment,
                record,
            ),
        )

    def add_swap(self, date: dt.date, manager: str, registered_at: dt.datetime) -> int:
        """Register a roster swap (command line or API); returns its id."""
        cur = self._db.execute(
            "INSERT INTO swaps (date, manager, registered_at, source) VALUES (?,?,?,'live')",
            (date.isoformat(), manager, _t(registered_at)),
        )
        return int(cur.lastrowid or 0)

    def swaps_after(self, last_id: int) -> list[tuple[int, SwapRegistered]]:
        """Swaps registered with an id above `last_id`, oldest first."""
        rows = self._db.execute(
            "SELECT id, date, manager, registered_at FROM swaps WHERE id > ? ORDER BY id",
            (last_id,),
        ).fetchall()
        return [
            (int(i), SwapRegistered(dt.date.fromisoformat(d), str(m), _instant(r)))
            for i, d, m, r in rows
        ]

    def add_outbox(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Keep a publication until the broker has it (committed with what caused it)."""
        cur = self._db.execute(
            "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?,?,?,?)",
            (topic, payload, qos, retain),
        )
        return int(cur.lastrowid or 0)

    def outbox(self) -> list[tuple[int, str, bytes, int, bool]]:
        """Publications not yet confirmed by the broker, oldest first."""
        rows = self._db.execute("SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id")
        return [(int(i), str(t), bytes(p), int(q), bool(r)) for i, t, p, q, r in rows]

    def outbox_done(self, ids: list[int]) -> None:
        """The broker confirmed these publications."""
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def set_meta(self, key: str, value: str) -> None:
        """Remember a value across restarts."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- reads -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A remembered value."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def events_between(
        self, since: dt.datetime, until: dt.datetime, swaps_through: int
    ) -> list[tuple[dt.datetime, Event]]:
        """Every stored event received in [since, until], as (received_at, event), in order;
        of the swaps, those with an id up to `swaps_through` (the ones the rules have seen)."""
        t, u = _t(since), _t(until)
        out: list[tuple[float, int, int, Event]] = []
        for row in self._db.execute(
            "SELECT id, reader, post, seq, credential, method, person, time, received_at, flags"
            " FROM scans WHERE received_at BETWEEN ? AND ?",
            (t, u),
        ):
            ident, reader, post, seq, cred, method, person, time, rec, flags = row
            scan = Scan(
                reader,
                post,
                cred,
                method,
                person,
                _instant(time),
                _instant(rec),
                seq,
                tuple(json.loads(flags)),
            )
            out.append((rec, 0, ident, scan))
        groups: dict[tuple[str, int | None, float, float], dict[str, float | bool]] = {}
        first: dict[tuple[str, int | None, float, float], int] = {}
        for ident, eq, metric, seq, time, rec, value, is_bool in self._db.execute(
            "SELECT id, equipment, metric, seq, time, received_at, value, is_bool FROM readings"
            " WHERE received_at BETWEEN ? AND ? ORDER BY id",
            (t, u),
        ):
            key = (eq, seq, time, rec)
            groups.setdefault(key, {})[metric] = bool(value) if is_bool else float(value)
            first.setdefault(key, ident)
        for (eq, seq, time, rec), values in groups.items():
            reading = Reading(eq, values, _instant(time), _instant(rec), seq)
            out.append((rec, 1, first[(eq, seq, time, rec)], reading))
        for ident, device, state, time, rec in self._db.execute(
            "SELECT id, device, state, time, received_at FROM device_status"
            " WHERE received_at BETWEEN ? AND ?",
            (t, u),
        ):
            out.append((rec, 2, ident, DeviceStatus(device, state, _instant(time), _instant(rec))))
        for ident, day, manager, rec in self._db.execute(
            "SELECT id, date, manager, registered_at FROM swaps"
            " WHERE registered_at BETWEEN ? AND ? AND id <= ?",
            (t, u, swaps_through),
        ):
            swap = SwapRegistered(dt.date.fromisoformat(day), manager, _instant(rec))
            out.append((rec, 3, ident, swap))
        out.sort(key=lambda row: (row[0], row[1], row[2]))
        return [(_instant(rec), event) for rec, _, _, event in out]

    def latest_readings(self, equipment: str | None = None) -> list[LatestValue]:
        """The newest value of every metric (of one equipment, or all), by event time."""
        where, args = ("WHERE equipment = ?", (equipment,)) if equipment else ("", ())
        rows = self._db.execute(
            "SELECT equipment, metric, max(time), value, is_bool FROM readings"
            f" {where} GROUP BY equipment, metric ORDER BY equipment, metric",
            args,
        ).fetchall()
        return [
            LatestValue(eq, metric, _instant(t), bool(v) if is_bool else float(v))
            for eq, metric, t, v, is_bool in rows
        ]

    def reading_series(
        self,
        equipment: str,
        metric: str,
        since: dt.datetime,
        until: dt.datetime,
        bucket_seconds: float,
    ) -> list[Bucket]:
        """Values of one metric in [since, until), downsampled into buckets (min/mean/max)."""
        if bucket_seconds <= 0:
            raise ValueError("bucket_seconds must be positive")
        t0 = _t(since)
        rows = self._db.execute(
            "SELECT CAST((time - ?) / ? AS INTEGER) AS b, min(value), avg(value), max(value),"
            " count(*) FROM readings WHERE equipment = ? AND metric = ? AND time >= ?"
            " AND time < ? GROUP BY b ORDER BY b",
            (t0, bucket_seconds, equipment, metric, t0, _t(until)),
        ).fetchall()
        return [
            Bucket(_instant(t0 + b * bucket_seconds), float(lo), float(mean), float(hi), int(n))
            for b, lo, mean, hi, n in rows
        ]

    def open_alerts(self) -> list[Alert]:
        """Alerts not yet closed, to rebuild the book at start-up."""
        rows = self._db.execute("SELECT record FROM alerts WHERE state != 'closed'").fetchall()
        return [Alert.from_json(json.loads(r[0])) for r in rows]

    def transitions(self, after_id: int = 0) -> Iterator[dict[str, Any]]:
        """Stored transitions with an id above `after_id`, oldest first, as dicts."""
        cur = self._db.execute(
            "SELECT id, alert_id, change, at, actor, comment, record FROM alert_transitions"
            " WHERE id > ? ORDER BY id",
            (after_id,),
        )
        for ident, alert_id, change, at, actor, comment, record in cur:
            yield {
                "id": ident,
                "alert_id": alert_id,
                "change": change,
                "at": dt.datetime.fromtimestamp(at, dt.UTC),
                "actor": actor,
                "comment": comment,
                "record": json.loads(record),
            }

    def count(self, table: str) -> int:
        """Rows in one of the record tables."""
        if table not in {
            "scans",
            "readings",
            "device_status",
            "alerts",
            "alert_transitions",
            "rejected",
        }:
            raise ValueError(f"no table {table!r}")
        return int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def last_transition_id(self) -> int:
        """The id of the newest stored transition (0 when there is none)."""
        row = self._db.execute("SELECT coalesce(max(id), 0) FROM alert_transitions").fetchone()
        return int(row[0])

    def rejected_counts(self) -> dict[str, int]:
        """Refusals by reason code."""
        return {
            str(c): int(n) for c, n in self._db.execute("SELECT code, count FROM rejected_counts")
        }

    def scan_keys(self) -> list[tuple[str, int | None]]:
        """(reader, seq) of every stored scan, in insertion order."""
        return [
            (str(r), s) for r, s in self._db.execute("SELECT reader, seq FROM scans ORDER BY id")
        ]
