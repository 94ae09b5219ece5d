"""The store's read side: queries on a connection that never writes, answered in typed rows.

The worker (`SqliteStore`) is the only writer. Everyone who only reads (the API and its live
board, the command line's `alert list` and `health`, the reports) asks `Queries`, on a
read-only connection of their own (`Queries.open(path)`: SQLite's `mode=ro`, which never takes
the write lock and so runs beside the worker in WAL mode). Each answer is a frozen row with
real types: instants aware and in UTC (turned to the site's zone only where shown), rule ids,
severities, alert states and changes as the rules name them. Callers turn rows into their own
shapes (the API's JSON, the command line's lines, the reports' tables) at their edge.

`Queries` is not thread-safe by itself: a caller that shares one between threads holds a lock
around each call (the API's `ReadSide` does).
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
from collections.abc import Sequence
from typing import Any, Literal, cast

from gateway.alerts.book import Change
from gateway.events import DeviceState, DeviceStatus, Event, Method, Reading, Scan
from gateway.store.read.rows import (
    AlertRow,
    Bucket,
    CommandRow,
    CommandStatus,
    DeviceStateRow,
    Heartbeat,
    LatestValue,
    Marks,
    ScanRow,
    TransitionRow,
    instant,
)
from gateway.store.schema import VERSION, stored_version

AlertFilter = Literal["open", "acknowledged", "closed", "active"]  # active: not closed
# Tables whose rows `count` may count (a closed list: the name is put into the SQL).
COUNTED = frozenset(
    {"scans", "readings", "device_status", "alerts", "alert_transitions", "rejected", "commands"}
)
# Version 5 added each scan's assurance and SUN read counter; an older store's scans are
# plain UIDs without a counter (the migration's own defaults).
_ASSURANCE_SINCE = 5
# Version 2 brought the `commands` table and the columns the reads below rely on.
_OLDEST_READABLE = 2


class StoreTooOld(RuntimeError):
    """The store predates what a read-only reader can read (it cannot migrate it)."""


def connect_readonly(path: str | pathlib.Path) -> sqlite3.Connection:
    """A connection to the store at `path` that can never write (SQLite `mode=ro`)."""
    uri = pathlib.Path(path).resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")
    return db


def _opt_instant(value: float | None) -> dt.datetime | None:
    return None if value is None else instant(value)


# -- queries ---------------------------------------------------------------------------------


class Queries:
    """Every read the readers make. Over a read-only connection (`open`), or over the writer's
    own connection (`SqliteStore.reads`), which also sees what it has not committed yet."""

    _SCAN = (
        "SELECT id, reader, post, seq, credential, method, person, time, received_at, flags, {}"
        " FROM scans"
    )

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.version = stored_version(db)
        if self.version < _OLDEST_READABLE:
            raise StoreTooOld(
                f"存储版本 {self.version} 过旧 / the store has schema version {self.version}: "
                "start the gateway on it once to bring it forward"
            )
        assurance = (
            "assurance, sun_counter" if self.version >= _ASSURANCE_SINCE else ("'plain_uid', NULL")
        )
        self._scan_sql = self._SCAN.format(assurance)

    @classmethod
    def open(cls, path: str | pathlib.Path) -> Queries:
        """Read the store at `path` on a read-only connection of this reader's own."""
        db = connect_readonly(path)
        try:
            return cls(db)
        except BaseException:
            db.close()
            raise

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection (for the tokens' and the records' own reads)."""
        return self._db

    @property
    def current(self) -> bool:
        """Whether the store has this version's whole schema (an older one lacks tables)."""
        return self.version >= VERSION

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # -- meta --------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A value the gateway remembers."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def heartbeat(self) -> Heartbeat | None:
        """The running worker's last heartbeat (None: no gateway has run on this store)."""
        return Heartbeat.parse(self.meta("heartbeat"))

    def marks(self) -> Marks:
        """The newest row id of the tables the live board follows."""
        row = self._db.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM alert_transitions),"
            " (SELECT coalesce(max(id), 0) FROM scans),"
            " (SELECT coalesce(max(id), 0) FROM readings),"
            " (SELECT coalesce(max(id), 0) FROM device_status)"
        ).fetchone()
        return Marks(*map(int, row))

    def count(self, table: str) -> int:
        """Rows in one of the record tables."""
        if table not in COUNTED:
            raise ValueError(f"no table {table!r}")
        return int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def rejected_counts(self) -> dict[str, int]:
        """Refusals by reason code (kept for ever)."""
        rows = self._db.execute("SELECT code, count FROM rejected_counts")
        return {str(c): int(n) for c, n in rows}

    # -- alerts ------------------------------------------------------------------------------

    def alerts(
        self,
        state: AlertFilter | None = None,
        rule: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = None,
        oldest_first: bool = False,
    ) -> list[AlertRow]:
        """Alerts, newest raised first (or oldest first); `since`/`until` bound the time
        raised, [since, until)."""
        where: list[str] = []
        args: list[object] = []
        if state == "active":
            where.append("state != 'closed'")
        elif state is not None:
            where.append("state = ?")
            args.append(state)
        if rule is not None:
            where.append("rule = ?")
            args.append(rule)
        if since is not None:
            where.append("raised_at >= ?")
            args.append(since.timestamp())
        if until is not None:
            where.append("raised_at < ?")
            args.append(until.timestamp())
        order = "raised_at, id" if oldest_first else "raised_at DESC, id"
        rows = self._db.execute(
            f"SELECT record FROM alerts {'WHERE ' + ' AND '.join(where) if where else ''}"
            f" ORDER BY {order} LIMIT ?",
            (*args, -1 if limit is None else limit),
        )
        return [AlertRow.from_record(json.loads(r)) for (r,) in rows]

    def alert(self, ident: str) -> AlertRow | None:
        """One alert, open or closed."""
        row = self._db.execute("SELECT record FROM alerts WHERE id = ?", (ident,)).fetchone()
        return None if row is None else AlertRow.from_record(json.loads(row[0]))

    _TRANSITION = "SELECT id, alert_id, change, at, actor, comment, record FROM alert_transitions"

    def history(self, alert_id: str) -> list[TransitionRow]:
        """Every change of one alert, oldest first."""
        rows = self._db.execute(f"{self._TRANSITION} WHERE alert_id = ? ORDER BY id", (alert_id,))
        return [self._transition(r) for r in rows]

    def transitions(self, after: int = 0, limit: int | None = None) -> list[TransitionRow]:
        """Changes stored with an id above `after`, oldest first."""
        rows = self._db.execute(
            f"{self._TRANSITION} WHERE id > ? ORDER BY id LIMIT ?",
            (after, -1 if limit is None else limit),
        )
        return [self._transition(r) for r in rows]

    def last_transition_id(self) -> int:
        """The id of the newest stored change (0 when there is none)."""
        row = self._db.execute("SELECT coalesce(max(id), 0) FROM alert_transitions").fetchone()
        return int(row[0])

    @staticmethod
    def _transition(row: tuple[Any, ...]) -> TransitionRow:
        ident, alert_id, change, at, actor, comment, record = row
        return TransitionRow(
            int(ident),
            str(alert_id),
            cast(Change, change),
            instant(at),
            str(actor),
            str(comment),
            json.loads(record),
        )

    # -- scans -------------------------------------------------------------------------------

    def scans(
        self,
        since: dt.datetime,
        until: dt.datetime,
        post: str | None = None,
        person: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[ScanRow]:
        """Scans whose event time is in [since, until), oldest first (or newest first)."""
        where = ["time >= ?", "time < ?"]
        args: list[object] = [since.timestamp(), until.timestamp()]
        for clause, value in (("post = ?", post), ("person = ?", person)):
            if value is not None:
                where.append(clause)
                args.append(value)
        order = "time DESC, id DESC" if newest_first else "time, id"
        rows = self._db.execute(
            f"{self._scan_sql} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?",
            (*args, -1 if limit is None else limit),
        )
        return [self._scan(r) for r in rows]

    def scans_after(self, after: int, limit: int) -> list[ScanRow]:
        """The newest `limit` scans stored after row `after`, newest first."""
        rows = self._db.execute(
            f"{self._scan_sql} WHERE id > ? ORDER BY id DESC LIMIT ?", (after, limit)
        )
        return [self._scan(r) for r in rows]

    def scan_keys(self) -> list[tuple[str, int | None]]:
        """(reader, seq) of every stored scan, in the order stored."""
        rows = self._db.execute("SELECT reader, seq FROM scans ORDER BY id")
        return [(str(r), None if s is None else int(s)) for r, s in rows]

    @staticmethod
    def _scan(row: tuple[Any, ...]) -> ScanRow:
        ident, reader, post, seq, cred, method, person, time, rec, flags, level, counter = row
        return ScanRow(
            int(ident),
            str(reader),
            str(post),
            None if seq is None else int(seq),
            str(cred),
            cast(Method, method),
            person,
            instant(time),
            instant(rec),
            tuple(json.loads(flags)),
            str(level),
            None if counter is None else int(counter),
        )

    # -- readings and devices ----------------------------------------------------------------

    def latest_readings(
        self, equipment: str | None = None, at_or_before: dt.datetime | None = None
    ) -> list[LatestValue]:
        """The newest value of every metric (of one equipment, or all) by event time, of those
        up to `at_or_before` if given; by equipment and metric."""
        where: list[str] = []
        args: list[object] = []
        if equipment is not None:
            where.append("equipment = ?")
            args.append(equipment)
        if at_or_before is not None:
            where.append("time <= ?")
            args.append(at_or_before.timestamp())
        rows = self._db.execute(
            "SELECT equipment, metric, max(time), value, is_bool FROM readings"
            f" {'WHERE ' + ' AND '.join(where) if where else ''}"
            " GROUP BY equipment, metric ORDER BY equipment, metric",
            args,
        )
        return [
            LatestValue(str(eq), str(metric), instant(t), bool(v) if is_bool else float(v))
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
        t0 = since.timestamp()
        rows = self._db.execute(
            "SELECT CAST((time - ?) / ? AS INTEGER) AS b, min(value), avg(value), max(value),"
            " count(*) FROM readings WHERE equipment = ? AND metric = ? AND time >= ?"
            " AND time < ? GROUP BY b ORDER BY b",
            (t0, bucket_seconds, equipment, metric, t0, until.timestamp()),
        )
        return [
            Bucket(instant(t0 + b * bucket_seconds), float(lo), float(mean), float(hi), int(n))
            for b, lo, mean, hi, n in rows
        ]

    def device_states(self) -> list[DeviceStateRow]:
        """Each device's newest status, by device id."""
        rows = self._db.execute(
            "SELECT device, state, max(time) FROM device_status GROUP BY device ORDER BY device"
        )
        return [DeviceStateRow(str(d), cast(DeviceState, s), instant(t)) for d, s, t in rows]

    # -- commands ----------------------------------------------------------------------------

    _COMMAND = "SELECT id, action, body, actor, submitted_at, status, at, result FROM commands"

    def applied_commands(
        self,
        actions: Sequence[str],
        before: dt.datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[CommandRow]:
        """Commands of the given actions applied (before an instant), in the order applied
        (or newest first)."""
        marks = ",".join("?" * len(actions))
        bound = "" if before is None else " AND at < ?"
        order = "at DESC, id DESC" if newest_first else "at, id"
        return self._commands(
            f"WHERE status = 'done' AND action IN ({marks}){bound} ORDER BY {order} LIMIT ?",
            (
                *actions,
                *(() if before is None else (before.timestamp(),)),
                -1 if limit is None else limit,
            ),
        )

    def pending_commands(self) -> list[CommandRow]:
        """Commands other processes queued, oldest first."""
        return self._commands("WHERE status = 'pending' ORDER BY id", ())

    def command(self, ident: int) -> CommandRow | None:
        """One command by id."""
        found = self._commands("WHERE id = ?", (ident,))
        return found[0] if found else None

    def _commands(self, where: str, args: tuple[Any, ...]) -> list[CommandRow]:
        rows = self._db.execute(f"{self._COMMAND} {where}", args)
        return [
            CommandRow(
                int(i),
                str(a),
                json.loads(b),
                str(who),
                instant(s),
                cast(CommandStatus, st),
                _opt_instant(at),
                str(r),
            )
            for i, a, b, who, s, st, at, r in rows
        ]

    # -- the restore's replay --------------------------------------------------------------

    def events_between(
        self, since: dt.datetime, until: dt.datetime
    ) -> list[tuple[dt.datetime, Event | CommandRow]]:
        """Every stored event received in [since, until], as (received_at, event), in order,
        and the commands applied then (a restart's rules see swaps and confirmations again)."""
        t, u = since.timestamp(), until.timestamp()
        out: list[tuple[float, int, int, Event | CommandRow]] = []
        for row in self._db.execute(
            "SELECT id, reader, post, seq, credential, method, person, time, received_at, flags,"
            " sent_ts FROM scans WHERE received_at BETWEEN ? AND ?",
            (t, u),
        ):
            ident, reader, post, seq, cred, method, person, time, rec, flags, sent = row
            scan = Scan(
                reader,
                post,
                cred,
                method,
                person,
                instant(time),
                instant(rec),
                seq,
                tuple(json.loads(flags)),
                _opt_instant(sent),
            )
            out.append((rec, 0, ident, scan))
        groups: dict[tuple[str, int | None, float, float], dict[str, float | bool]] = {}
        first: dict[tuple[str, int | None, float, float], tuple[int, str]] = {}
        for ident, eq, metric, seq, time, rec, value, is_bool, flags in self._db.execute(
            "SELECT id, equipment, metric, seq, time, received_at, value, is_bool, flags"
            " FROM readings WHERE received_at BETWEEN ? AND ? ORDER BY id",
            (t, u),
        ):
            key = (eq, seq, time, rec)
            groups.setdefault(key, {})[metric] = bool(value) if is_bool else float(value)
            first.setdefault(key, (ident, flags))
        for (eq, seq, time, rec), values in groups.items():
            ident, flags = first[(eq, seq, time, rec)]
            reading = Reading(
                eq, values, instant(time), instant(rec), seq, tuple(json.loads(flags))
            )
            out.append((rec, 1, ident, reading))
        for ident, device, state, time, rec in self._db.execute(
            "SELECT id, device, state, time, received_at FROM device_status"
            " WHERE received_at BETWEEN ? AND ?",
            (t, u),
        ):
            out.append((rec, 2, ident, DeviceStatus(device, state, instant(time), instant(rec))))
        for command in self._commands(
            "WHERE status = 'done' AND at BETWEEN ? AND ? ORDER BY id", (t, u)
        ):
            assert command.at is not None
            out.append((command.at.timestamp(), 3, command.id, command))
        out.sort(key=lambda row: (row[0], row[1], row[2]))
        return [(instant(rec), event) for rec, _, _, event in out]
