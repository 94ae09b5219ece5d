"""The API's read side: the store's query side (`gateway/store/read`), turned into the API's
JSON shapes at this edge.

`Queries` answers in typed rows on a read-only connection (the worker holds the only writing
one; WAL lets this one read beside it). Here those rows become what the API and the live board
send: instants in the site's zone, names of posts and people beside their ids, the stored alert
documents as published (§6). One lock serialises the requests that share the connection.
"""

from __future__ import annotations

import datetime as dt
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
from gateway.store.read import AlertFilter, CommandRow, DeviceStateRow, Marks, Queries, ScanRow
from gateway.timeutil import iso

SWAP_ACTIONS = ("swap.register", "swap.cancel")
FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


class ReadSide:
    """Every read the API and the live board make, on a read-only connection of their own."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.queries = Queries.open(path)
        self.lock = threading.Lock()

    @property
    def connection(self) -> sqlite3.Connection:
        """The read-only connection, for the records' reads (hold `lock` around them)."""
        return self.queries.connection

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.queries.close()

    # -- tokens --------------------------------------------------------------------------------

    def token(self, token: str) -> TokenRow | None:
        """The row of a presented token."""
        with self.lock:
            return find_token(self.connection, token)

    def token_by_id(self, ident: str) -> TokenRow | None:
        """A token's row by id (sessions name it)."""
        with self.lock:
            return token_by_id(self.connection, ident)

    # -- marks: what the live board has seen ---------------------------------------------------

    def marks(self) -> Marks:
        """The newest row id of each table the board follows."""
        with self.lock:
            return self.queries.marks()

    # -- alerts --------------------------------------------------------------------------------

    def alerts(
        self,
        state: AlertFilter | None = None,
        rule: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Alert records, newest first; `state` is open, acknowledged, closed or active
        (not closed); `since`/`until` bound the time raised."""
        with self.lock:
            rows = self.queries.alerts(state, rule, since, until, limit)
        return [row.record for row in rows]

    def alert(self, ident: str) -> dict[str, Any] | None:
        """One alert's latest record, or None."""
        with self.lock:
            row = self.queries.alert(ident)
        return None if row is None else row.record

    def alert_history(self, ident: str, tz: dt.tzinfo) -> list[dict[str, Any]]:
        """Every transition of one alert, oldest first."""
        with self.lock:
            rows = self.queries.history(ident)
        return [
            {"change": t.change, "at": iso(t.at, tz), "actor": t.actor, "comment": t.comment}
            for t in rows
        ]

    def transitions_after(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """(id, {change, actor, record}) of transitions with an id above `after`."""
        with self.lock:
            rows = self.queries.transitions(after, limit)
        return [(t.id, {"change": t.change, "actor": t.actor, "record": t.record}) for t in rows]

    # -- scans ---------------------------------------------------------------------------------

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
        with self.lock:
            rows = self.queries.scans(since, until, post, person, limit, newest_first=True)
        return [scan_json(site, r) for r in rows]

    def scans_after(self, site: Site, after: int, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` scans stored after row `after`, newest first."""
        with self.lock:
            rows = self.queries.scans_after(after, limit)
        return [scan_json(site, r) for r in rows]

    def recent_scans(self, site: Site, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` scans stored."""
        return self.scans_after(site, 0, limit)

    # -- plant room and devices ----------------------------------------------------------------

    def plant(self, site: Site) -> list[dict[str, Any]]:
        """Every equipment of the site with each metric's newest value, limits, out-of-range."""
        with self.lock:
            latest = {(v.equipment, v.metric): v for v in self.queries.latest_readings()}
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
            buckets = self.queries.reading_series(equipment, metric, since, until, bucket_seconds)
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
        with self.lock:
            last = {row.device: row for row in self.queries.device_states()}
        out = []
        for reader, post in sorted(site.reader_post.items()):
            out.append(_device(site, reader, "reader", post.name, last.get(reader)))
        for eq in site.equipment.values():
            out.append(_device(site, eq.id, "equipment", eq.name, last.get(eq.id)))
        return out

    # -- commands: swaps, incidents, handovers -------------------------------------------------

    def commands(self, actions: tuple[str, ...], limit: int = 500) -> list[CommandRow]:
        """Applied commands of some actions, newest first."""
        with self.lock:
            return self.queries.applied_commands(actions, limit=limit, newest_first=True)

    def roster(self, site: Site, now: dt.datetime) -> Roster:
        """The weekly roster with every swap registered so far."""
        roster = Roster(site)
        with self.lock:
            stored = self.queries.applied_commands(SWAP_ACTIONS, FAR_FUTURE)
        for row in stored:
            event = command_event(row, site)
            if isinstance(event, SwapRegistered) and event.time <= now:
                roster.add(Swap.live(event))
        return roster

    def meta(self, key: str) -> str | None:
        """A value the gateway remembers (the heartbeat)."""
        with self.lock:
            return self.queries.meta(key)


def scan_json(site: Site, scan: ScanRow) -> dict[str, Any]:
    """A scan as the API and the board show it."""
    who = site.people.get(scan.person) if scan.person else None
    where = site.posts.get(scan.post)
    return {
        "id": scan.id,
        "reader": scan.reader,
        "post": scan.post,
        "post_name": where.name if where else scan.post,
        "person": scan.person,
        "person_name": who.name if who else None,
        "method": scan.method,
        "time": iso(scan.time, site.tz),
        "received_at": iso(scan.received_at, site.tz),
        "flags": list(scan.flags),
        "assurance": scan.assurance,  # plain_uid, signed_qr or sun (issue 13)
    }


def _device(
    site: Site, ident: str, kind: str, name: str, last: DeviceStateRow | None
) -> dict[str, Any]:
    return {
        "device": ident,
        "kind": kind,
        "name": name,
        "state": None if last is None else last.state,
        "since": None if last is None else iso(last.since, site.tz),
    }
