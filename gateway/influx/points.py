"""The §8 measurements: what one stored row, or one periodic snapshot, becomes in InfluxDB.

Stored rows (`scan`, `reading`, `device_status`, `alert`) are read from the store after a
cursor per table (`TABLES`); each gets its event time plus its row id modulo 1,000,000 in
nanoseconds, so a re-send is the same point and two events of one instant are two points.
The snapshots (`limit`, `patrol`, `gateway`) carry the gateway clock's time of writing.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.alerts.book import change_word
from gateway.config.site import Site
from gateway.influx.lines import Field, line, timestamp_ns
from gateway.roster import Roster, Swap
from gateway.store.sqlite import SqliteStore, StoredCommand
from gateway.trust.verify import EXCLUDING

UNKNOWN = "unknown"
Row = tuple[Any, ...]


def connection(store: SqliteStore) -> sqlite3.Connection:
    """The forwarder's own connection to the store (each forwarder opens its own)."""
    return store.connection


@dataclass(frozen=True)
class Table:
    """One store table sent to InfluxDB after its own cursor."""

    name: str  # the store's table
    cursor: str  # the cursor's name in the store's `cursors` table
    columns: str  # selected after `id`
    # When the row was stored, for the backlog's age (rule 12); None where the table has no
    # such column (a transition's `at` is its rule time, which a deadline fired after a
    # restart puts in the past): the forwarder then counts from when it first saw the row.
    age_column: str | None

    def fetch(self, db: sqlite3.Connection, after: int, limit: int) -> list[Row]:
        """Rows with an id above `after`, oldest first: (id, columns…)."""
        return db.execute(
            f"SELECT id, {self.columns} FROM {self.name} WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()

    def oldest(self, db: sqlite3.Connection, after: int) -> tuple[int, float | None] | None:
        """(id, when stored) of the oldest row after the cursor (one primary-key look-up)."""
        row = db.execute(
            f"SELECT id, {self.age_column or 'NULL'} FROM {self.name} WHERE id > ?"
            " ORDER BY id LIMIT 1",
            (after,),
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), None if row[1] is None else float(row[1])

    def waiting(self, db: sqlite3.Connection, after: int) -> int:
        """How many rows are after the cursor."""
        return int(
            db.execute(f"SELECT count(*) FROM {self.name} WHERE id > ?", (after,)).fetchone()[0]
        )


SCANS = Table(
    "scans", "influx_scans", "reader, post, seq, method, person, time, flags", "received_at"
)
READINGS = Table("readings", "influx_readings", "equipment, metric, time, value", "received_at")
STATUSES = Table("device_status", "influx_device_status", "device, state, time", "received_at")
TRANSITIONS = Table("alert_transitions", "influx_alert_transitions", "change, at, record", None)
TABLES = (SCANS, READINGS, STATUSES, TRANSITIONS)


class Points:
    """Renders rows and snapshots of one site as line protocol."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.roster = Roster(site)
        self._swaps_through = 0

    def refresh_swaps(self, db: sqlite3.Connection) -> None:
        """Learn the swaps registered since the last call (for the scans' `on_duty`)."""
        from gateway.events import SwapRegistered
        from gateway.pipeline import command_event

        rows = db.execute(
            "SELECT id, action, body, actor, submitted_at, status, at, result FROM commands"
            " WHERE id > ? AND status = 'done' AND action IN ('swap.register', 'swap.cancel')"
            " ORDER BY id",
            (self._swaps_through,),
        ).fetchall()
        for ident, action, body, actor, submitted, status, at, result in rows:
            self._swaps_through = int(ident)
            stored = StoredCommand(
                int(ident),
                action,
                json.loads(body),
                actor,
                _instant(submitted),
                status,
                None if at is None else _instant(at),
                result,
            )
            event = command_event(stored, self.site)
            if isinstance(event, SwapRegistered):
                self.roster.add(Swap.live(event))

    def row(self, table: Table, row: Row) -> str | None:
        """The point of one stored row."""
        if table is SCANS:
            return self.scan(row)
        if table is READINGS:
            return self.reading(row)
        if table is STATUSES:
            return self.status(row)
        return self.transition(row)

    def scan(self, row: Row) -> str | None:
        """`scan`: who signed where, on time or not, and whether they were on duty."""
        ident, reader, post, seq, method, person, time, flags = row
        site = self.site
        known = site.people.get(person) if person else None
        instant = _instant(time)
        manager = self.roster.manager(site.calendar.day_of(instant), instant)
        post_def = site.posts.get(post)
        tags = {
            "site": site.id,
            "post": post,
            "post_kind": str(post_def.kind) if post_def else UNKNOWN,
            "reader": reader,
            "person": person if known else UNKNOWN,
            "method": method,
            "on_duty": "true" if known and person == manager else "false",
        }
        fields: dict[str, Field] = {
            # Answered ok: false (§5): unknown, or stored but counting for no rule (trust).
            "ok": known is not None and EXCLUDING.isdisjoint(json.loads(flags)),
            "seq": -1 if seq is None else int(seq),
            "flags": ",".join(json.loads(flags)),
        }
        return line("scan", tags, fields, timestamp_ns(time, ident))

    def reading(self, row: Row) -> str | None:
        """`reading`: one metric's value (a boolean as 1.0 / 0.0)."""
        ident, equipment, metric, time, value = row
        eq = self.site.equipment.get(equipment)
        spec = self.site.metric(equipment, metric)
        tags = {
            "site": self.site.id,
            "post": eq.post if eq else UNKNOWN,
            "equipment": equipment,
            "metric": metric,
            "unit": spec.unit if spec else "",
        }
        return line("reading", tags, {"value": float(value)}, timestamp_ns(time, ident))

    def status(self, row: Row) -> str | None:
        """`device_status`: a reader or an equipment online (1) or offline (0)."""
        ident, device, state, time = row
        kind = "reader" if device in self.site.reader_post else "equipment"
        tags = {"site": self.site.id, "device": device, "kind": kind}
        online = 1 if state == "online" else 0
        return line("device_status", tags, {"online": online}, timestamp_ns(time, ident))

    def transition(self, row: Row) -> str | None:
        """`alert`: one transition of one alert, with its state after the change."""
        ident, change, at, record = row
        alert = json.loads(record)
        raised = dt.datetime.fromisoformat(alert["raised_at"]).timestamp()
        tags = {
            "site": self.site.id,
            "rule": alert["rule"],
            "severity": alert["severity"],
            "subject": str(alert["subject"]),
        }
        fields: dict[str, Field] = {
            "id": alert["id"],
            "change": change_word(change),
            "state": alert["state"],
            "open": 0 if alert["state"] == "closed" else 1,
            "age_s": max(0.0, float(at) - raised),
        }
        return line("alert", tags, fields, timestamp_ns(at, ident))

    # -- snapshots ---------------------------------------------------------------------------

    def limits(self, now: dt.datetime) -> list[str]:
        """`limit`: every metric's limits from the site file, so a panel can draw them."""
        out = []
        ns = timestamp_ns(now)
        for eq in self.site.equipment.values():
            for name, metric in eq.metrics.items():
                fields: dict[str, Field] = {}
                if metric.min is not None:
                    fields["min"] = float(metric.min)
                if metric.max is not None:
                    fields["max"] = float(metric.max)
                if metric.expect is not None:
                    fields["expect"] = 1.0 if metric.expect else 0.0
                tags = {"site": self.site.id, "equipment": eq.id, "metric": name}
                text = line("limit", tags, fields, ns)
                if text is not None:
                    out.append(text)
        return out

    def patrol(self, status: Mapping[str, Any], now: dt.datetime) -> str | None:
        """`patrol`: the duty day's patrol time, key posts and handover (from §3's status)."""
        manager = status.get("duty_manager") or {}
        keys = status.get("key_posts") or {}
        signed = len(keys.get("signed") or [])
        fields: dict[str, Field] = {
            "duty_day": str(status.get("duty_day", "")),
            "minutes": float((status.get("patrol") or {}).get("minutes", 0)),
            "key_signed": signed,
            "key_total": signed + len(keys.get("missing") or []),
            "handover_done": 1 if (status.get("handover") or {}).get("state") == "done" else 0,
        }
        tags = {"site": self.site.id, "manager": str(manager.get("id") or UNKNOWN)}
        return line("patrol", tags, fields, timestamp_ns(now))

    def gateway(
        self, counters: Mapping[str, int], backlog: int, age: float, now: dt.datetime
    ) -> str | None:
        """`gateway`: what came in and what waits for InfluxDB."""
        stored = sum(counters.get(k, 0) for k in ("scan", "reading", "devicestatus"))
        fields: dict[str, Field] = {
            "received": int(counters.get("received", 0)),
            "stored": max(0, stored - int(counters.get("duplicates", 0))),
            "rejected": int(counters.get("rejected", 0)),
            "duplicates": int(counters.get("duplicates", 0)),
            "forward_backlog": backlog,
            "forward_age_s": float(age),
        }
        return line("gateway", {"site": self.site.id}, fields, timestamp_ns(now))


def _instant(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


SiteSource = Callable[[], Site]
