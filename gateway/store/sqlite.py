"""Every scan, reading, device status, alert transition and refusal, in one SQLite file.

One thread writes (the ingest worker); it commits a batch, and only then are the batch's
messages acknowledged to the broker. WAL lets readers (the API, reports) run beside it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import pathlib
import sqlite3
from collections.abc import Iterator
from typing import Any, Literal

import orjson

from gateway.alerts.book import Transition
from gateway.alerts.record import Alert
from gateway.events import DeviceStatus, Event, Reading, Rejection, Scan
from gateway.store.read import CommandRow, Queries, connect_readonly
from gateway.store.schema import migrate

__all__ = ["SqliteStore", "StoredCommand", "find_store", "store_file"]

# A command as the worker reads it back (pending, or applied for a restart): the query side's row.
StoredCommand = CommandRow

# Refusals kept for operators; older ones are deleted (the counts per code are kept for ever).
REJECTED_KEEP = 10_000
# The store's file under `--data`: one place knows its name.
SUFFIX = ".sqlite"


def store_file(data: pathlib.Path, site_id: str) -> pathlib.Path:
    """Where the store of site `site_id` lives under the `--data` folder."""
    return data / f"{site_id}{SUFFIX}"


def find_store(data: pathlib.Path) -> pathlib.Path:
    """The one store under `--data`; raise FileNotFoundError saying what is there instead."""
    if not data.is_dir():
        raise FileNotFoundError(
            f"目录不存在 / no such folder: {data} (give the gateway's --data folder)"
        )
    found = sorted(data.glob(f"*{SUFFIX}"))
    if len(found) != 1:
        what = (
            "no store" if not found else f"{len(found)} stores ({', '.join(f.name for f in found)})"
        )
        raise FileNotFoundError(
            f"{data} 中没有唯一的存储 / {data} holds {what}: give the --data folder of one gateway"
        )
    return found[0]


def _t(instant: dt.datetime) -> float:
    return instant.timestamp()


class SqliteStore:
    """The gateway's durable record. Not thread-safe for writing: one writer thread."""

    def __init__(self, path: str | pathlib.Path = ":memory:", readonly: bool = False) -> None:
        self.path = str(path)
        if readonly:
            # A reader beside the running gateway (demo display, notify CLI): never writes,
            # never takes the write lock. New readers use `Queries.open` instead.
            self._db = connect_readonly(self.path)
            self.reads = Queries(self._db)
            return
        if self.path != ":memory:":
            pathlib.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a process crash (kill -9) in WAL mode; only a power loss
        # can lose the last commits. FULL would make every batch wait for the disk.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        migrate(self._db)
        # The query side on this connection: the worker's own reads see its uncommitted rows.
        self.reads = Queries(self._db)
        # Highest seq stored per reader / equipment: a seq above it cannot be a redelivery or a
        # restarted counter, so the common case needs no look-up (§3).
        self._max_scan_seq: dict[str, int] = {
            str(r): int(m)
            for r, m in self._db.execute(
                "SELECT reader, max(seq) FROM scans WHERE seq IS NOT NULL GROUP BY reader"
            )
        }
        self._max_reading_seq: dict[str, int] = {
            str(e): int(m)
            for e, m in self._db.execute(
                "SELECT equipment, max(seq) FROM readings WHERE seq IS NOT NULL GROUP BY equipment"
            )
        }
        self._rejected_floor = 0

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection, for the store's own query modules (the InfluxDB
        forwarders' table readers) that run on a connection of their own."""
        return self._db

    def close(self) -> None:
        """Commit (if anything was written) and close."""
        if self._db.in_transaction:
            self._db.commit()
        self._db.close()

    def commit(self) -> None:
        """Make everything written since the last commit durable."""
        self._db.commit()

    def rollback(self) -> None:
        """Forget everything written since the last commit, and give the WAL's space back.

        After a failed commit (a full disk) the WAL may have grown with pages that will never
        be committed; truncating it frees the disk for the retry (issue 8 item 13).
        """
        self._db.rollback()
        with contextlib.suppress(sqlite3.Error):  # still failing: the next rollback tries again
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._reload_seq_marks()

    def probe(self) -> None:
        """Raise sqlite3.Error unless a write can be committed now (after a store error)."""
        self.set_meta("probe", "")
        self._db.commit()

    def _reload_seq_marks(self) -> None:
        self._max_scan_seq.clear()
        self._max_reading_seq.clear()
        for r, m in self._db.execute(
            "SELECT reader, max(seq) FROM scans WHERE seq IS NOT NULL GROUP BY reader"
        ):
            self._max_scan_seq[str(r)] = int(m)
        for e, m in self._db.execute(
            "SELECT equipment, max(seq) FROM readings WHERE seq IS NOT NULL GROUP BY equipment"
        ):
            self._max_reading_seq[str(e)] = int(m)

    # -- writes ------------------------------------------------------------------------------

    def stored_scan(self, scan: Scan) -> tuple[str, ...] | bool | None:
        """How a scan with a `seq` relates to the record (contract §3).

        The flags of the stored scan when this is a duplicate delivery (same reader, seq,
        credential and sent ts); True when the reader's counter started again (the same seq
        with another credential or ts: a new scan, flagged `seq_reset`); None otherwise.
        """
        if scan.seq is None or scan.seq > self._max_scan_seq.get(scan.reader, -1):
            return None
        rows = self._db.execute(
            "SELECT credential, sent_ts, flags FROM scans WHERE reader = ? AND seq = ?",
            (scan.reader, scan.seq),
        ).fetchall()
        if not rows:
            return None
        sent = _opt(scan.sent_ts)
        for credential, sent_ts, flags in rows:
            if credential == scan.credential and sent_ts == sent:
                return tuple(json.loads(flags))
        return True

    def add_scan(self, scan: Scan) -> int:
        """Store a scan; returns its row id."""
        cur = self._db.execute(
            "INSERT INTO scans (reader, post, seq, credential, method, person, time,"
            " received_at, flags, sent_ts, assurance, sun_counter)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                scan.reader,
                scan.post,
                scan.seq,
                scan.credential,
                scan.method,
                scan.person,
                _t(scan.time),
                _t(scan.received_at),
                _flags(scan.flags),
                _opt(scan.sent_ts),
                scan.assurance,
                scan.sun_counter,
            ),
        )
        if scan.seq is not None and scan.seq > self._max_scan_seq.get(scan.reader, -1):
            self._max_scan_seq[scan.reader] = scan.seq
        return int(cur.lastrowid or 0)

    def sun_conflict(
        self, uid: str, counter: int, time: dt.datetime
    ) -> Literal["seen", "order"] | None:
        """ "seen" if the tag's SUN read counter was accepted before; "order" if an accepted tap
        of the tag with a lower counter is later by time, or one with a higher counter earlier
        (contract §5); None otherwise (gateway/trust/verify.py `CounterHistory`)."""
        t = _t(time)
        row = self._db.execute(
            "SELECT MAX(sun_counter = ?) FROM scans WHERE credential = ? AND method = 'nfc'"
            " AND sun_counter IS NOT NULL AND (sun_counter = ? OR (sun_counter < ? AND time > ?)"
            " OR (sun_counter > ? AND time < ?))",
            (counter, uid, counter, counter, t, counter, t),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return "seen" if row[0] else "order"

    def scan_flags(self, reader: str, seq: int) -> list[tuple[str, ...]]:
        """The flags of every stored scan (reader, seq), oldest first."""
        rows = self._db.execute(
            "SELECT flags FROM scans WHERE reader = ? AND seq = ? ORDER BY id", (reader, seq)
        )
        return [tuple(json.loads(r[0])) for r in rows]

    def stored_reading(self, reading: Reading) -> bool | None:
        """True for a duplicate delivery of a stored reading (same equipment, seq, sent ts and
        values), False for a restarted counter (same seq, other ts or values), else None."""
        if reading.seq is None or reading.seq > self._max_reading_seq.get(reading.equipment, -1):
            return None
        rows = self._db.execute(
            "SELECT metric, value, is_bool, sent_ts, time FROM readings"
            " WHERE equipment = ? AND seq = ? ORDER BY id",
            (reading.equipment, reading.seq),
        ).fetchall()
        return same_reading(rows, reading)

    def add_reading(self, reading: Reading) -> None:
        """Store a reading's values (one row per metric)."""
        flags = _flags(reading.flags)
        rows = [
            (
                reading.equipment,
                metric,
                reading.seq,
                _t(reading.time),
                _t(reading.received_at),
                float(value),
                isinstance(value, bool),
                _opt(reading.sent_ts),
                flags,
            )
            for metric, value in reading.values.items()
        ]
        self._db.executemany(
            "INSERT INTO readings (equipment, metric, seq, time, received_at, value,"
            " is_bool, sent_ts, flags) VALUES (?,?,?,?,?,?,?,?,?)",
            rows,
        )
        seq = reading.seq
        if seq is not None and seq > self._max_reading_seq.get(reading.equipment, -1):
            self._max_reading_seq[reading.equipment] = seq

    def add_status(self, status: DeviceStatus) -> None:
        """Store a device status change."""
        self._db.execute(
            "INSERT INTO device_status (device, state, time, received_at) VALUES (?,?,?,?)",
            (status.device, status.state, _t(status.time), _t(status.received_at)),
        )

    def add_rejection(self, rejection: Rejection, reason: str, at: dt.datetime) -> None:
        """Count a refusal and keep it for operators (the newest `REJECTED_KEEP`)."""
        self._db.execute(
            "INSERT INTO rejected_counts VALUES (?, 1)"
            " ON CONFLICT (code) DO UPDATE SET count = count + 1",
            (rejection.code,),
        )
        cur = self._db.execute(
            "INSERT INTO rejected (at, topic, code, reason, payload) VALUES (?,?,?,?,?)",
            (_t(at), rejection.topic[:1024], rejection.code, reason, rejection.payload[:512]),
        )
        newest = int(cur.lastrowid or 0)
        if newest - self._rejected_floor > REJECTED_KEEP + REJECTED_KEEP // 10:
            self._rejected_floor = newest - REJECTED_KEEP
            self._db.execute("DELETE FROM rejected WHERE id <= ?", (self._rejected_floor,))

    def add_transition(self, transition: Transition, tz: dt.tzinfo) -> int:
        """Keep the alert's latest record and the transition itself (contract §6)."""
        alert = transition.alert
        record = self._keep_alert(alert, tz)
        cur = self._db.execute(
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
        return int(cur.lastrowid or 0)

    def _keep_alert(self, alert: Alert, tz: dt.tzinfo) -> str:
        """Write the alert's latest record; returns it as stored."""
        record = _document(alert.to_json(tz))
        self._db.execute(
            "INSERT INTO alerts (id, rule, subject, state, raised_at, record) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, record = excluded.record",
            (alert.id, alert.rule, alert.subject, alert.state, _t(alert.raised_at), record),
        )
        return record

    def add_command(
        self, action: str, body: dict[str, Any], actor: str, submitted_at: dt.datetime
    ) -> int:
        """Queue a command for the worker (from another process); returns its id."""
        cur = self._db.execute(
            "INSERT INTO commands (action, body, actor, submitted_at, status)"
            " VALUES (?,?,?,?,'pending')",
            (action, json.dumps(body, ensure_ascii=False), actor, _t(submitted_at)),
        )
        return int(cur.lastrowid or 0)

    def record_command(
        self,
        ident: int | None,
        action: str,
        body: dict[str, Any],
        actor: str,
        at: dt.datetime,
        status: str,
        result: str,
    ) -> int:
        """Record what a command did (a queued one by id, or a new one from this process)."""
        if ident is not None:
            self._db.execute(
                "UPDATE commands SET status = ?, at = ?, result = ? WHERE id = ?",
                (status, _t(at), result, ident),
            )
            return ident
        cur = self._db.execute(
            "INSERT INTO commands (action, body, actor, submitted_at, status, at, result)"
            " VALUES (?,?,?,?,?,?,?)",
            (action, json.dumps(body, ensure_ascii=False), actor, _t(at), status, _t(at), result),
        )
        return int(cur.lastrowid or 0)

    def pending_commands(self) -> list[StoredCommand]:
        """Commands other processes queued, oldest first."""
        return self.reads.pending_commands()

    def applied_commands(
        self, actions: tuple[str, ...], before: dt.datetime
    ) -> list[StoredCommand]:
        """Commands of the given actions applied before an instant, in the order applied."""
        return self.reads.applied_commands(actions, before)

    def command(self, ident: int) -> StoredCommand | None:
        """One command by id."""
        return self.reads.command(ident)

    def set_meta(self, key: str, value: str) -> None:
        """Remember a value across restarts."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def cursor(self, name: str) -> int:
        """A forwarder's position: the last row id it has delivered (0 before any)."""
        row = self._db.execute("SELECT position FROM cursors WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_cursor(self, name: str, position: int) -> None:
        """Move a forwarder's cursor and commit at once (forwarders write nothing else)."""
        self._db.execute(
            "INSERT INTO cursors VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET"
            " position = excluded.position",
            (name, position),
        )
        self._db.commit()

    # -- what the worker reads while it writes -----------------------------------------------
    # (duplicates and SUN counters are above; every other read is the query side's,
    # gateway/store/queries.py)

    def meta(self, key: str) -> str | None:
        """A remembered value."""
        return self.reads.meta(key)

    def events_between(
        self, since: dt.datetime, until: dt.datetime
    ) -> list[tuple[dt.datetime, Event | StoredCommand]]:
        """Every stored event received in [since, until], as (received_at, event), in order,
        and the commands applied then (the rules see swaps and confirmations again)."""
        return self.reads.events_between(since, until)

    def open_alerts(self) -> list[Alert]:
        """Alerts not yet closed, to rebuild the book at start-up."""
        rows = self._db.execute("SELECT record FROM alerts WHERE state != 'closed'").fetchall()
        return [Alert.from_json(json.loads(r[0])) for r in rows]

    def alert(self, ident: str) -> Alert | None:
        """One alert's latest record, open or closed (a command checks it before it applies)."""
        row = self._db.execute("SELECT record FROM alerts WHERE id = ?", (ident,)).fetchone()
        return None if row is None else Alert.from_json(json.loads(row[0]))

    # -- the query side's answers in the shapes the forwarders and the tests know ------------

    def alerts(self, open_only: bool = False, limit: int = 1000) -> list[Alert]:
        """Alerts, newest first (the MQTT forwarder republishes the open ones)."""
        rows = self.reads.alerts("active" if open_only else None, limit=limit)
        return [row.to_alert() for row in rows]

    def transitions(self, after_id: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Stored transitions with an id above `after_id`, oldest first, as dicts."""
        for t in self.reads.transitions(after_id, limit):
            yield {
                "id": t.id,
                "alert_id": t.alert_id,
                "change": t.change,
                "at": t.at,
                "actor": t.actor,
                "comment": t.comment,
                "record": t.record,
            }

    def count(self, table: str) -> int:
        """As `Queries.count`."""
        return self.reads.count(table)

    def last_transition_id(self) -> int:
        """As `Queries.last_transition_id`."""
        return self.reads.last_transition_id()

    def rejected_counts(self) -> dict[str, int]:
        """As `Queries.rejected_counts`."""
        return self.reads.rejected_counts()

    def scan_keys(self) -> list[tuple[str, int | None]]:
        """As `Queries.scan_keys`."""
        return self.reads.scan_keys()


ReadingRow = tuple[str, float, bool, float | None, float]  # metric, value, is_bool, sent_ts, time


def same_reading(rows: list[ReadingRow], reading: Reading) -> bool | None:
    """`stored_reading` over the rows stored with the reading's (equipment, seq), in order."""
    if not rows:
        return None
    sent = _opt(reading.sent_ts)
    groups: dict[tuple[float | None, float], dict[str, float | bool]] = {}
    for metric, value, is_bool, sent_ts, time in rows:
        groups.setdefault((sent_ts, time), {})[metric] = bool(value) if is_bool else value
    wanted = {m: (v if isinstance(v, bool) else float(v)) for m, v in reading.values.items()}
    return any(k[0] == sent and values == wanted for k, values in groups.items())


_FLAGS_JSON: dict[tuple[str, ...], str] = {(): "[]"}


def _flags(flags: tuple[str, ...]) -> str:
    """A scan's or reading's flags as stored; the few combinations there are, encoded once."""
    text = _FLAGS_JSON.get(flags)
    if text is None:
        text = json.dumps(list(flags))
        if len(_FLAGS_JSON) < 256:
            _FLAGS_JSON[flags] = text
    return text


def _document(body: dict[str, Any]) -> str:
    """A stored JSON document (read back with `json.loads`, never shown as it is): orjson's,
    several times faster; the standard library's for what orjson refuses (huge integers)."""
    try:
        return orjson.dumps(body).decode()
    except orjson.JSONEncodeError:
        return json.dumps(body, ensure_ascii=False)


def _opt(instant: dt.datetime | None) -> float | None:
    return None if instant is None else instant.timestamp()
