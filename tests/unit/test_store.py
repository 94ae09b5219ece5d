"""The embedded store: WAL, idempotent inserts, and the readings query path."""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3

import pytest

from gateway.events import Reading
from gateway.store.schema import VERSION
from gateway.store.sqlite import SqliteStore

T0 = dt.datetime(2026, 11, 27, 0, 0, tzinfo=dt.UTC)


def reading(minute: float, seq: int | None = None, **values: float | bool) -> Reading:
    t = T0 + dt.timedelta(minutes=minute)
    return Reading("tx-1", dict(values), t, t, seq)


def test_wal_mode_and_schema(tmp_path: pathlib.Path) -> None:
    """The store is in WAL mode so readers never block the ingest writer."""
    store = SqliteStore(tmp_path / "s.sqlite")
    store.close()
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(VERSION),
        )


def test_uncommitted_writes_are_not_visible_to_another_connection(tmp_path: pathlib.Path) -> None:
    """Acknowledge-after-commit relies on commit being the moment data is durable and shared."""
    store = SqliteStore(tmp_path / "s.sqlite")
    other = SqliteStore(tmp_path / "s.sqlite")
    store.add_reading(reading(0, 1, load_pct=50.0))
    assert other.count("readings") == 0
    store.commit()
    assert other.count("readings") == 1
    store.close()
    other.close()


def test_latest_value_per_metric() -> None:
    """Latest by event time, not by arrival: a late reading does not hide a newer one."""
    store = SqliteStore()
    store.add_reading(reading(10, load_pct=70.0, winding_temp_c=60.0))
    store.add_reading(reading(20, load_pct=75.0))
    store.add_reading(reading(5, load_pct=99.0))  # buffered by the meter, arrives late
    store.add_reading(Reading("chiller-1", {"leak": True}, T0, T0))
    latest = {(v.equipment, v.metric): (v.time, v.value) for v in store.reads.latest_readings()}
    assert latest[("tx-1", "load_pct")] == (T0 + dt.timedelta(minutes=20), 75.0)
    assert latest[("tx-1", "winding_temp_c")] == (T0 + dt.timedelta(minutes=10), 60.0)
    assert latest[("chiller-1", "leak")] == (T0, True)
    assert {v.metric for v in store.reads.latest_readings("tx-1")} == {"load_pct", "winding_temp_c"}


def test_series_downsampled_into_buckets() -> None:
    """min/mean/max per bucket, empty buckets left out, the end excluded."""
    store = SqliteStore()
    for minute, value in [(0, 10.0), (4, 20.0), (5, 30.0), (14, 50.0), (15, 99.0)]:
        store.add_reading(reading(minute, load_pct=value))
    buckets = store.reads.reading_series(
        "tx-1", "load_pct", T0, T0 + dt.timedelta(minutes=15), bucket_seconds=300
    )
    assert [(b.start, b.min, b.mean, b.max, b.count) for b in buckets] == [
        (T0, 10.0, 15.0, 20.0, 2),
        (T0 + dt.timedelta(minutes=5), 30.0, 30.0, 30.0, 1),
        (T0 + dt.timedelta(minutes=10), 50.0, 50.0, 50.0, 1),
    ]


def test_read_only_view_beside_the_writer(tmp_path: pathlib.Path) -> None:
    """A display's read-only store sees committed rows and can never write or lock."""
    path = tmp_path / "s.sqlite"
    writer = SqliteStore(path)
    view = SqliteStore(path, readonly=True)
    writer.add_reading(reading(0, 1, load_pct=50.0))
    writer.commit()
    assert [v.value for v in view.reads.latest_readings()] == [50.0]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        view.add_reading(reading(1, 2, load_pct=51.0))
    view.close()
    writer.close()
