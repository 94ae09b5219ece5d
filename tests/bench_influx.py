"""`make bench`, InfluxDB part: forwarding throughput against a bare influxdb-client write of the
same lines, and the time to drain a 30-minute backlog at the demo's rate.

Both go through the same path: the test stand-in for `/api/v2/write` (tests/support/influx.py)
in front of Debian's InfluxDB 1.6, so the ratio compares the forwarder with the bare client,
not the stand-in with a real 2.x server.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Site
from gateway.events import Reading
from gateway.influx.forward import Backlog, InfluxSettings, InfluxWriter, TableForwarder
from gateway.influx.points import READINGS, Points
from gateway.store.sqlite import SqliteStore
from tests.support.influx import TOKEN, Influxd, V2Adapter

DEMO_SPEED = 1.0  # `patrol-gateway demo` default: simulated minutes per real second
READING_EVERY = 60.0  # the simulator's reading interval, simulated seconds


@dataclass
class Forwarding:
    rows: int
    forwarder_rate: float  # lines/s through TableForwarder (store → InfluxDB)
    bare_rate: float  # lines/s of influxdb-client writing the same lines, 5,000 a batch
    demo_rate: float  # rows/s the demo stores
    drain_seconds: float  # to send a 30-minute backlog at the demo's rate


def demo_rate(site: Site) -> float:
    """Readings the demo stores per real second (one per metric each simulated minute)."""
    metrics = sum(len(eq.metrics) for eq in site.equipment.values())
    return metrics * DEMO_SPEED * 60.0 / READING_EVERY


def fill(site: Site, path: Path, rows: int) -> None:
    store = SqliteStore(path)
    eqs = [(eq.id, m) for eq in site.equipment.values() for m in eq.metrics]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    for i in range(rows):
        equipment, metric = eqs[i % len(eqs)]
        at = start + dt.timedelta(milliseconds=i)
        store.add_reading(Reading(equipment, {metric: float(i % 100)}, at, at))
    store.commit()
    store.close()


def forwarding(site: Site, folder: Path) -> Forwarding:
    """Drain a 30-minute demo backlog with the forwarder; write the same lines bare."""
    rate = demo_rate(site)
    rows = int(rate * 30 * 60)
    path = folder / f"{site.id}.sqlite"
    fill(site, path, rows)
    with Influxd() as influxd, V2Adapter(influxd) as adapter:
        influxd.create_database("fwd")
        influxd.create_database("bare")
        writer = InfluxWriter(InfluxSettings(adapter.url, TOKEN, "patrol", "fwd/autogen"))
        forwarder = TableForwarder(
            path, READINGS, writer, lambda: site, lambda: dt.datetime.now(dt.UTC), Backlog()
        )
        began = time.perf_counter()
        forwarder.start()
        while forwarder.position < rows:
            time.sleep(0.01)
        drain = time.perf_counter() - began
        forwarder.stop()
        writer.close()
        store = SqliteStore(path)
        points = Points(site)
        lines = [str(points.reading(r)) for r in READINGS.fetch(store._db, 0, rows)]
        store.close()
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        client = InfluxDBClient(url=adapter.url, token=TOKEN, org="patrol")
        api = client.write_api(write_options=SYNCHRONOUS)
        began = time.perf_counter()
        for i in range(0, len(lines), 5000):
            api.write("bare/autogen", "patrol", "\n".join(lines[i : i + 5000]), "ns")
        bare = time.perf_counter() - began
        api.close()
        client.close()
    return Forwarding(rows, rows / drain, len(lines) / bare, rate, drain)
