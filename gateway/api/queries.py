"""The API's read side: queries on a read-only connection to the store, as plain JSON shapes.

The worker holds the only writing connection; this one never takes the write lock (WAL lets it
read beside the worker). One lock serialises the requests that share it.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
import threading
from typing import Any

from gateway.api.tokens import TokenRow, find_token, token_by_id
from gateway.config.site import Site
from gateway.events import SwapRegistered
from gateway.pipeline import command_event
from gateway.roster import Roster, Swap
from gateway.rules.equipment import is_out
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import iso

SWAP_ACTIONS = ("swap.register", "swap.cancel")
FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def _instant(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


class ReadSide:
    """Every read the API and the live board make, on read-only connections of their own."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.store = SqliteStore(path, readonly=True)
        uri = path.resolve().as_uri() + "?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")
        self.lock = threading.Lock()

    def close(self) -> None:
        """Close both connections."""
        with self.lock:
            self._db.close()
            self.store.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self._db.execute(sql, args).fetchall()

    # -- tokens --------------------------------------------------------------------------------

    def token(self, token: str) -> TokenRow | None:
        """The row of a presented token."""
        with self.lock:
            return find_token(self._db, token)

    def token_by_id(self, ident: str) -> TokenRow | None:
        """A token's row by id (sessions name it)."""
        with self.lock:
            return token_by_id(self._db, ident)

    # -- marks: what the live board has seen ---------------------------------------------------

    def marks(self) -> dict[str, int]:
        """The newest row id of each table the board follows."""
        (row,) = self._rows(
            "SELECT (SELECT coalesce(max(id), 0) FROM alert_transitions),"
            " (SELECT coalesce(max(id), 0) FROM scans),"
            " (SELECT coalesce(max(id), 0) FROM readings),"
            " (SELECT coalesce(max(id), 0) FROM device_status)"
        )
        names = ("transitions", "scans", "readings", "devices")
        return dict(zip(names, map(int, row), strict=True))

    # -- alerts --------------------------------------------------------------------------------

    def alerts(
        self,
        state: str | None = None,
        rule: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Alert records, newest first; `state` is open, acknowledged, closed or active
        (not closed); `since`/`until` bound the time raised."""
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
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(
            f"SELECT record FROM alerts {clause} ORDER BY raised_at DESC, id LIMIT ?",
            (*args, limit),
        )
        return [json.loads(r[0]) for r in rows]

    def alert(self, ident: str) -> dict[str, Any] | None:
        """One alert's latest record, or None."""
        rows = self._rows("SELECT record FROM alerts WHERE id = ?", (ident,))
        return json.loads(rows[0][0]) if rows else None

    def alert_history(self, ident: str, tz: dt.tzinfo) -> list[dict[str, Any]]:
        """Every transition of one alert, oldest first."""
        rows = self._rows(
            "SELECT change, at, actor, comment FROM alert_transitions WHERE alert_id = ?"
            " ORDER BY id",
            (ident,),
        )
        return [
            {"change": c, "at": iso(_instant(at), tz), "actor": a, "comment": m}
            for c, at, a, m in rows
        ]

    def transitions_after(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """(id, {change, at, actor, record}) of transitions with an id above `after`."""
        rows = self._rows(
            "SELECT id, change, actor, record FROM alert_transitions WHERE id > ?"
            " ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [(int(i), {"change": c, "actor": a, "record": json.loads(r)}) for i, c, a, r in rows]

    # -- scans ---------------------------------------------------------------------------------

    _SCAN = (
        "SELECT id, reader, post, person, method, time, received_at, flags, assurance FROM scans"
    )

    def scans(
        self,
        site: Site,
        since: dt.datetime,
        until: dt.datetime,
        post: str | None = None,
        person: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Scans whose event time is in [since, until), newest first."""
        where = ["time >= ?", "time < ?"]
        args: list[object] = [since.timestamp(), until.timestamp()]
        if post is not None:
            where.append("post = ?")
            args.append(post)
        if person is not None:
            where.append("person = ?")
            args.append(person)
        rows = self._rows(
            f"{self._SCAN} WHERE {' AND '.join(where)} ORDER BY time DESC, id DESC LIMIT ?",
            (*args, limit),
        )
        return [self._scan(site, r) for r in rows]

    def scans_after(self, site: Site, after: int, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` scans stored after row `after`, newest first."""
        rows = self._rows(f"{self._SCAN} WHERE id > ? ORDER BY id DESC LIMIT ?", (after, limit))
        return [self._scan(site, r) for r in rows]

    def recent_scans(self, site: Site, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` scans stored."""
        return self.scans_after(site, 0, limit)

    @staticmethod
    def _scan(site: Site, row: tuple[Any, ...]) -> dict[str, Any]:
        ident, reader, post, person, method, time, received, flags, assurance = row
        who = site.people.get(person) if person else None
        where = site.posts.get(post)
        return {
            "id": int(ident),
            "reader": reader,
            "post": post,
            "post_name": where.name if where else post,
            "person": person,
            "person_name": who.name if who else None,
            "method": method,
            "time": iso(_instant(time), site.tz),
            "received_at": iso(_instant(received), site.tz),
            "flags": json.loads(flags),
            "assurance": assurance,  # plain_uid, signed_qr or sun (issue 13)
        }

    # -- plant room and devices ----------------------------------------------------------------

    def plant(self, site: Site) -> list[dict[str, Any]]:
        """Every equipment of the site with each metric's newest value, limits, out-of-range."""
        with self.lock:
            latest = {(v.equipment, v.metric): v for v in self.store.latest_readings()}
        out = []
        for eq in site.equipment.values():
            metrics = []
            for name, metric in eq.metrics.items():
                value = latest.get((eq.id, name))
                metrics.append(
                    {
                        "metric": name,
                        "unit": metric.unit,
                        "min": metric.min,
                        "max": metric.max,
                        "expect": metric.expect,
                        "value": None if value is None else value.value,
                        "at": None if value is None else iso(value.time, site.tz),
                        "out": value is not None and is_out(metric, value.value),
                    }
                )
            post = site.posts[eq.post]
            out.append(
                {
                    "equipment": eq.id,
                    "name": eq.name,
                    "post": eq.post,
                    "post_name": post.name,
                    "metrics": metrics,
                }
            )
        return out

    def series(
        self,
        equipment: str,
        metric: str,
        since: dt.datetime,
        until: dt.datetime,
        bucket_seconds: float,
        tz: dt.tzinfo,
    ) -> list[dict[str, Any]]:
        """One metric bucketed (min/mean/max) in [since, until)."""
        with self.lock:
            buckets = self.store.reading_series(equipment, metric, since, until, bucket_seconds)
        return [
            {
                "start": iso(b.start, tz),
                "min": b.min,
                "mean": b.mean,
                "max": b.max,
                "count": b.count,
            }
            for b in buckets
        ]

    def devices(self, site: Site) -> list[dict[str, Any]]:
        """Every reader and equipment of the site with its last status (None: never heard)."""
        rows = self._rows(
            "SELECT device, state, max(time) FROM device_status GROUP BY device",
        )
        last = {str(d): (str(s), float(t)) for d, s, t in rows}
        out = []
        for reader, post in sorted(site.reader_post.items()):
            out.append(self._device(site, reader, "reader", post.name, last.get(reader)))
        for eq in site.equipment.values():
            out.append(self._device(site, eq.id, "equipment", eq.name, last.get(eq.id)))
        return out

    @staticmethod
    def _device(
        site: Site, ident: str, kind: str, name: str, last: tuple[str, float] | None
    ) -> dict[str, Any]:
        return {
            "device": ident,
            "kind": kind,
            "name": name,
            "state": None if last is None else last[0],
            "since": None if last is None else iso(_instant(last[1]), site.tz),
        }

    # -- commands: swaps, incidents, handovers -------------------------------------------------

    def commands(self, actions: tuple[str, ...], limit: int = 500) -> list[dict[str, Any]]:
        """Applied commands of some actions, newest first: body, actor, time applied."""
        marks = ",".join("?" * len(actions))
        rows = self._rows(
            f"SELECT id, action, body, actor, at, result FROM commands WHERE status = 'done'"
            f" AND action IN ({marks}) ORDER BY at DESC, id DESC LIMIT ?",
            (*actions, limit),
        )
        return [
            {
                "id": int(i),
                "action": a,
                "body": json.loads(b),
                "actor": who,
                "at": _instant(at),
                "result": json.loads(r) if r.startswith("{") else {"message": r},
            }
            for i, a, b, who, at, r in rows
        ]

    def roster(self, site: Site, now: dt.datetime) -> Roster:
        """The weekly roster with every swap registered so far."""
        roster = Roster(site)
        with self.lock:
            stored = self.store.applied_commands(SWAP_ACTIONS, FAR_FUTURE)
        for row in stored:
            event = command_event(row, site)
            if isinstance(event, SwapRegistered) and event.time <= now:
                roster.add(Swap.live(event))
        return roster

    def meta(self, key: str) -> str | None:
        """A value the gateway remembers (the heartbeat)."""
        with self.lock:
            return self.store.meta(key)
