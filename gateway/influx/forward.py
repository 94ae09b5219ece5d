"""Forwarders to InfluxDB (§8): one per store table, each after its own persistent cursor.

Each `TableForwarder` reads what the store committed after its cursor, oldest first, writes it
in batches of up to 5,000 lines through influxdb-client's *synchronous* write API (its batching
mode drops data once its retries run out, so it is no durability layer), and moves its cursor
only after InfluxDB said yes (HTTP 204). While InfluxDB is down, slow or refusing, the base
class backs off and tries the same rows again; the backlog waits in the store. The worker
never waits for any of this.

The snapshots (`limit` at start and every hour, `patrol` on change and every 5 minutes,
`gateway` every 60 s) are written by the alert-transition forwarder's thread between batches
from what it was handed (`offer_status`) and what it reads; a snapshot that fails waits for its
next turn (it is a sample, not a record). The readings forwarder also deletes readings older
than `--keep-readings-days` that InfluxDB already has (`gateway.influx.retention`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.site import Site
from gateway.forward import DeliveryFailed, Forwarder
from gateway.influx.points import READINGS, TABLES, TRANSITIONS, Points, Table, connection
from gateway.influx.retention import Retention
from gateway.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

BATCH_LINES = 5_000
TIMEOUT_MS = 10_000
LIMIT_EVERY = 3600.0
PATROL_EVERY = 300.0
GATEWAY_EVERY = 60.0
SNAPSHOT_RETRY = 30.0
COUNT_EVERY = 5.0  # the backlog's row count (for the `gateway` point); its age: every pass


@dataclass(frozen=True)
class InfluxSettings:
    """Where to write (§7 `--influx`, `PATROL_INFLUX_*`). A 1.8 server takes `user:password`
    as the token and `db/rp` as the bucket."""

    url: str
    token: str = ""
    org: str = "patrol"
    bucket: str = "patrol"

    @classmethod
    def from_env(cls, url: str, environ: Mapping[str, str] = os.environ) -> InfluxSettings:
        """The URL from `--influx`, the rest from the environment (defaults of §7)."""
        return cls(
            url=url,
            token=environ.get("PATROL_INFLUX_TOKEN", ""),
            org=environ.get("PATROL_INFLUX_ORG", "patrol") or "patrol",
            bucket=environ.get("PATROL_INFLUX_BUCKET", "patrol") or "patrol",
        )


class InfluxWriter:
    """influxdb-client's synchronous write API: `write(lines)` returns once InfluxDB took them
    all, or raises DeliveryFailed."""

    def __init__(self, settings: InfluxSettings, timeout_ms: int = TIMEOUT_MS) -> None:
        from gateway.extras import requires_extra

        with requires_extra("influx"):
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

        self.settings = settings
        # Typed as Any: the client's own hints are partial (untyped close(), str precisions).
        self._client: Any = InfluxDBClient(
            url=settings.url, token=settings.token, org=settings.org, timeout=timeout_ms
        )
        self._api: Any = self._client.write_api(write_options=SYNCHRONOUS)
        self.lines_written = 0

    def write(self, lines: list[str]) -> None:
        """Write the lines (nanosecond timestamps); raise DeliveryFailed unless all were taken."""
        if not lines:
            return
        try:
            self._api.write(
                bucket=self.settings.bucket,
                org=self.settings.org,
                record="\n".join(lines),
                write_precision="ns",
            )
        except Exception as exc:  # connection refused, timeout, HTTP 4xx/5xx: all a retry
            status = getattr(exc, "status", None)
            what = f"HTTP {status}" if status else type(exc).__name__
            raise DeliveryFailed(f"InfluxDB did not take {len(lines)} lines ({what})") from exc
        self.lines_written += len(lines)

    def close(self) -> None:
        """Release the HTTP connections."""
        self._api.close()
        self._client.close()


class Backlog:
    """Rows not yet in InfluxDB, per table, as last measured by each forwarder (each forwarder
    replaces only its own entries; a reader takes a snapshot of the dicts)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._oldest: dict[str, float | None] = {}

    def set_oldest(self, table: str, oldest: float | None) -> None:
        """When the oldest row waiting in `table` was stored (None: nothing waits)."""
        self._oldest[table] = oldest
        if oldest is None:
            self._counts[table] = 0

    def set_count(self, table: str, count: int) -> None:
        """How many rows wait in `table`."""
        self._counts[table] = count

    def rows(self) -> int:
        """Rows waiting, all tables (as of the last count)."""
        return sum(list(self._counts.values()))

    def oldest(self) -> float | None:
        """When the oldest waiting row was stored (epoch seconds), or None."""
        stamps = [o for o in list(self._oldest.values()) if o is not None]
        return min(stamps) if stamps else None

    def age(self, now: dt.datetime) -> float:
        """Seconds since the oldest waiting row was stored (0 with nothing waiting)."""
        oldest = self.oldest()
        return 0.0 if oldest is None else max(0.0, now.timestamp() - oldest)


class TableForwarder(Forwarder):
    """One store table to InfluxDB after its cursor (§8)."""

    batch_size = BATCH_LINES

    def __init__(
        self,
        store_path: pathlib.Path,
        table: Table,
        writer: InfluxWriter,
        site: Callable[[], Site],
        clock: Clock,
        backlog: Backlog,
    ) -> None:
        super().__init__(store_path, table.cursor)
        self.table = table
        self.writer = writer
        self.site = site
        self.clock = clock
        self.backlog = backlog
        self._points = Points(site())
        self._counted = 0.0
        self._first_seen: tuple[int, float] = (0, 0.0)  # (row id, clock time) for age_column None

    @property
    def points(self) -> Points:
        """The renderer of the current site (a reload makes a new one)."""
        site = self.site()
        if site is not self._points.site:
            self._points = Points(site)
        return self._points

    def fetch(self, store: SqliteStore, after: int, limit: int) -> list[tuple[int, Any]]:
        """Rows after the cursor, oldest first."""
        db = connection(store)
        if self.table.name == "scans":
            self.points.refresh_swaps(db)
        return [(int(row[0]), row) for row in self.table.fetch(db, after, limit)]

    def deliver(self, rows: list[Any]) -> None:
        """Write the rows' points; the base moves the cursor once this returns."""
        points = self.points
        lines = [text for row in rows if (text := points.row(self.table, row)) is not None]
        self.writer.write(lines)
        self.counters["lines"] += len(lines)

    def housekeeping(self, store: SqliteStore) -> None:
        """Measure the backlog: the oldest row's age every pass (one index look-up, so rule 12
        never sees a stale age), the row count every few seconds."""
        db = connection(store)
        oldest = self.table.oldest(db, self.position)
        stored: float | None = None
        if oldest is not None:
            ident, stored = oldest
            if stored is None:  # no stored-at column: since this forwarder first saw the row
                if self._first_seen[0] != ident:
                    self._first_seen = (ident, self.clock().timestamp())
                stored = self._first_seen[1]
        self.backlog.set_oldest(self.table.name, stored)
        now = time.monotonic()
        if now - self._counted >= COUNT_EVERY:
            self._counted = now
            self.backlog.set_count(self.table.name, self.table.waiting(db, self.position))


class ReadingsForwarder(TableForwarder):
    """Readings, and the retention of the ones InfluxDB already has."""

    def __init__(self, *args: Any, retention: Retention | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retention = retention

    def housekeeping(self, store: SqliteStore) -> None:
        """The backlog, and once an hour the retention."""
        super().housekeeping(store)
        if self.retention is not None:
            deleted = self.retention.run_if_due(store, self.position, self.clock())
            self.counters["deleted"] += deleted


class TransitionsForwarder(TableForwarder):
    """Alert transitions, and the snapshots: `limit`, `patrol`, `gateway`."""

    def __init__(
        self, *args: Any, counters: Callable[[], Mapping[str, int]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gateway_counters = counters
        self._status: Mapping[str, Any] | None = None
        self._status_new = False
        self._lock = threading.Lock()
        self._due = {"limit": 0.0, "patrol": 0.0, "gateway": time.monotonic() + GATEWAY_EVERY}

    def offer_status(self, status: Mapping[str, Any]) -> None:
        """The patrol status changed (worker thread): written as a `patrol` point soon."""
        with self._lock:
            self._status = status
            self._status_new = True
        self.wake()

    def housekeeping(self, store: SqliteStore) -> None:
        """The backlog, and whichever snapshot is due."""
        super().housekeeping(store)
        now = time.monotonic()
        with self._lock:
            status, fresh = self._status, self._status_new
        if now >= self._due["limit"]:
            self._snapshot("limit", self.points.limits(self.clock()), LIMIT_EVERY)
        if status is not None and (fresh or now >= self._due["patrol"]):
            text = self.points.patrol(status, self.clock())
            if self._snapshot("patrol", [text] if text else [], PATROL_EVERY):
                with self._lock:
                    self._status_new = self._status is not status
        if now >= self._due["gateway"]:
            at = self.clock()
            text = self.points.gateway(
                self.gateway_counters(), self.backlog.rows(), self.backlog.age(at), at
            )
            self._snapshot("gateway", [text] if text else [], GATEWAY_EVERY)

    def _snapshot(self, name: str, lines: list[str], every: float) -> bool:
        try:
            self.writer.write(lines)
        except DeliveryFailed as exc:
            self.counters[f"{name}_failures"] += 1
            log.debug("快照未写入 / %s snapshot not written: %s", name, exc)
            self._due[name] = time.monotonic() + min(every, SNAPSHOT_RETRY)
            return False
        self.counters[f"{name}_points"] += len(lines)
        self._due[name] = time.monotonic() + every
        return True


class InfluxOut:
    """Everything the gateway sends to InfluxDB: one forwarder per table, one backlog."""

    def __init__(
        self,
        store_path: pathlib.Path,
        settings: InfluxSettings,
        site: Callable[[], Site],
        clock: Clock,
        counters: Callable[[], Mapping[str, int]],
        keep_readings_days: float | None = 90.0,
    ) -> None:
        self.settings = settings
        self.backlog = Backlog()
        self.writers: list[InfluxWriter] = []
        self.forwarders: list[TableForwarder] = []
        retention = None if keep_readings_days is None else Retention(keep_readings_days)
        for table in TABLES:
            writer = InfluxWriter(settings)  # one HTTP client per thread
            self.writers.append(writer)
            args = (store_path, table, writer, site, clock, self.backlog)
            forwarder: TableForwarder
            if table is READINGS:
                forwarder = ReadingsForwarder(*args, retention=retention)
            elif table is TRANSITIONS:
                forwarder = TransitionsForwarder(*args, counters=counters)
                self.snapshots = forwarder
            else:
                forwarder = TableForwarder(*args)
            self.forwarders.append(forwarder)

    def offer_status(self, status: Mapping[str, Any]) -> None:
        """A new patrol status document (worker thread; never blocks)."""
        self.snapshots.offer_status(status)

    def age(self, now: dt.datetime) -> float:
        """Seconds the oldest row not yet in InfluxDB has waited (rule 12)."""
        return self.backlog.age(now)

    def close(self) -> None:
        """After the forwarders stopped: release the HTTP connections."""
        for writer in self.writers:
            writer.close()
