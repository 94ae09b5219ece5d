"""`patrol-gateway forward`: send a store's history that InfluxDB lacks, then exit (§7, §8).

It uses the gateway's own cursors, so it is resumable (interrupted, it starts again where
InfluxDB's last yes left it) and a gateway started afterwards with `--influx` goes on from
there. Beside a running gateway with `--influx` it is harmless but useless: both send the
same points, which InfluxDB keeps once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from gateway.config.site import Site
from gateway.forward import DeliveryFailed
from gateway.influx.forward import BATCH_LINES, InfluxWriter
from gateway.influx.points import TABLES, Points, connection
from gateway.store.sqlite import SqliteStore

Progress = Callable[[int], None]


def pending(store: SqliteStore) -> int:
    """Rows of the four tables not yet in InfluxDB."""
    db = connection(store)
    total = 0
    for table in TABLES:
        total += table.waiting(db, store.cursor(table.cursor))
    store.commit()
    return total


def send_history(
    store: SqliteStore,
    site: Site,
    writer: InfluxWriter,
    progress: Progress = lambda n: None,
    attempts: int = 5,
    batch: int = BATCH_LINES,
    now: dt.datetime | None = None,
) -> int:
    """Send every row after the cursors, table by table, oldest first; returns the rows sent.

    A batch InfluxDB does not take is tried `attempts` times with a growing pause; then the
    DeliveryFailed is raised (the cursors keep what was sent: run it again to resume).
    """
    points = Points(site)
    db = connection(store)
    points.refresh_swaps(db)
    sent = 0
    for table in TABLES:
        position = store.cursor(table.cursor)
        while True:
            rows = table.fetch(db, position, batch)
            store.commit()
            if not rows:
                break
            lines = [text for row in rows if (text := points.row(table, row)) is not None]
            _write(writer, lines, attempts)
            position = int(rows[-1][0])
            store.set_cursor(table.cursor, position)
            sent += len(rows)
            progress(len(rows))
    _write(writer, points.limits(now or dt.datetime.now(dt.UTC)), attempts)
    return sent


def _write(writer: InfluxWriter, lines: list[str], attempts: int) -> None:
    pause = 1.0
    for attempt in range(1, attempts + 1):
        try:
            writer.write(lines)
            return
        except DeliveryFailed:
            if attempt == attempts:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 30.0)
