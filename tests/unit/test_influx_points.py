"""Line protocol, the §8 timestamps, rule 12, retention and the resumable `forward` (no server)."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
import threading
from contextlib import closing

import pytest

from gateway.config import Site
from gateway.events import Reading, Scan
from gateway.forward import DeliveryFailed
from gateway.influx.backfill import pending, send_history
from gateway.influx.forward import InfluxWriter
from gateway.influx.lines import line, timestamp_ns
from gateway.influx.live import LAG_SECONDS, forward_lagging
from gateway.influx.points import SCANS, Points
from gateway.influx.retention import delete_sent_readings
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.store.sqlite import SqliteStore

T0 = dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)


def test_line_protocol_escapes_sorts_and_types() -> None:
    """Tags sorted and escaped, empty tags left out, ints with `i`, strings quoted, a non-finite
    float dropped (InfluxDB refuses the whole batch for any of these done wrong)."""
    text = line(
        "scan",
        {"site": "z city", "post": "a,b=c", "unit": ""},
        {"ok": True, "seq": -1, "flags": 'x"y', "v": float("nan"), "f": 1.5},
        7,
    )
    assert text == 'scan,post=a\\,b\\=c,site=z\\ city f=1.5,flags="x\\"y",ok=true,seq=-1i 7'
    assert line("x", {}, {"v": float("inf")}, 1) is None


def test_two_events_of_one_instant_are_two_points_and_a_resend_is_the_same() -> None:
    """§8: the row id modulo 1,000,000 in ns keeps a double tap apart, and the same row gives
    the same timestamp every time (a float rounding drift would double a point)."""
    t = 1795615200.123
    assert timestamp_ns(t, 41) != timestamp_ns(t, 42)
    assert timestamp_ns(t, 41) == timestamp_ns(t, 41) == 1795615200123000041
    assert timestamp_ns(t, 1_000_041) == timestamp_ns(t, 41)


def store_with_scans(zcity: Site, path: pathlib.Path, n: int) -> SqliteStore:
    store = SqliteStore(path)
    for i in range(n):
        at = T0 + dt.timedelta(seconds=i // 2)  # pairs in one second: double taps
        store.add_scan(Scan("fd-1", "front-desk", "04A224B1C23380", "nfc", "zhang-wei", at, at, i))
    store.commit()
    return store


def test_scan_point_carries_the_section_8_tags(zcity: Site, tmp_path: pathlib.Path) -> None:
    """A known person's scan: ok, seq, on_duty from the roster, post kind (a wrong tag fails)."""
    store = store_with_scans(zcity, tmp_path / "s.sqlite", 1)
    db = store._db
    (row,) = SCANS.fetch(db, 0, 10)
    text = Points(zcity).scan(row)
    assert text is not None
    head, fields, _ = text.split(" ")
    tags = dict(kv.split("=") for kv in head.split(",")[1:])
    manager = zcity.rostered_manager(zcity.calendar.day_of(T0))
    assert tags == {
        "method": "nfc",
        "on_duty": "true" if manager == "zhang-wei" else "false",
        "person": "zhang-wei",
        "post": "front-desk",
        "post_kind": "front_desk",
        "reader": "fd-1",
        "site": "zcity",
    }
    assert fields == 'flags="",ok=true,seq=0i'


class FakeWriter:
    """Takes `fail_after` batches, then refuses (InfluxDB went away)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.lines: list[str] = []
        self.batches = 0

    def write(self, lines: list[str]) -> None:
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise DeliveryFailed("refused")
        self.batches += 1
        self.lines += lines


def test_forward_history_is_resumable(zcity: Site, tmp_path: pathlib.Path) -> None:
    """`forward` interrupted after two batches keeps what InfluxDB took, and a second run
    sends the rest, each row once (a cursor that moves early loses rows, one that never moves
    re-sends everything)."""
    store = store_with_scans(zcity, tmp_path / "s.sqlite", 25)
    broken = FakeWriter(fail_after=2)
    with pytest.raises(DeliveryFailed):
        send_history(store, zcity, broken, attempts=1, batch=10)  # type: ignore[arg-type]
    assert len(broken.lines) == 20
    assert pending(store) == 5
    working = FakeWriter()
    sent = send_history(store, zcity, working, attempts=1, batch=10)  # type: ignore[arg-type]
    assert sent == 5
    scans = [x for x in broken.lines + working.lines if x.startswith("scan,")]
    assert len(scans) == len(set(scans)) == 25
    assert len({x.rsplit(" ", 1)[1] for x in scans}) == 25  # double taps: 25 timestamps
    assert pending(store) == 0


def test_retention_deletes_only_old_readings_influx_has(
    zcity: Site, tmp_path: pathlib.Path
) -> None:
    """Readings older than the cut AND at or below the cursor go; a new one, or an old one
    InfluxDB lacks, stays (deleting an unsent reading loses it for good)."""
    store = SqliteStore(tmp_path / "s.sqlite")
    old, new = T0 - dt.timedelta(days=100), T0
    for at in (old, old, new, old):  # ids 1..4 (one metric each)
        store.add_reading(Reading("tx-1", {"load_pct": 50.0}, at, at))
    store.commit()
    deleted = delete_sent_readings(store, sent_through=3, before=T0 - dt.timedelta(days=90))
    assert deleted == 2
    with closing(sqlite3.connect(tmp_path / "s.sqlite")) as db:
        assert [r[0] for r in db.execute("SELECT id FROM readings ORDER BY id")] == [3, 4]


def test_rule_12_raises_after_10_minutes_and_clears_when_sent(
    zcity: Site, tmp_path: pathlib.Path
) -> None:
    """gateway.forward_lagging: warning on `influxdb` once the oldest unsent row waited over
    10 minutes, stored; cleared when the backlog is sent (no alert, or one that never clears,
    fails)."""
    store = SqliteStore(tmp_path / "s.sqlite")
    pipeline = Pipeline(zcity, Topics("estate", zcity.id), store, T0, live=True)
    assert forward_lagging(pipeline, LAG_SECONDS - 1, T0) == []
    (raised,) = forward_lagging(pipeline, LAG_SECONDS + 5, T0)
    assert (raised.change, raised.alert.rule, raised.alert.subject) == (
        "open",
        "gateway.forward_lagging",
        "influxdb",
    )
    assert raised.alert.severity == "warning"
    assert forward_lagging(pipeline, LAG_SECONDS + 60, T0) == []  # still open, not again
    (cleared,) = forward_lagging(pipeline, 0.0, T0 + dt.timedelta(minutes=15))
    assert cleared.change == "cleared"
    store.commit()
    changes = [t["change"] for t in store.transitions()]
    assert changes == ["open", "cleared"]


def test_status_tap_hands_on_the_patrol_status() -> None:
    """The worker's patrol status reaches the `patrol` point and still goes to MQTT."""
    from gateway.influx.live import StatusTap
    from gateway.ingest.memory import MemoryLink

    inner = MemoryLink()
    seen: list[object] = []
    tap = StatusTap(inner, "e/z/patrol/status", seen.append)
    tap.publish("e/z/patrol/status", json.dumps({"duty_day": "2026-11-27"}).encode(), 1, True)
    tap.publish("e/z/reader/x/ack", b"{}", 1, False)
    assert seen == [{"duty_day": "2026-11-27"}]
    assert inner.topics() == ["e/z/patrol/status", "e/z/reader/x/ack"]


def test_backup_while_writing_is_a_consistent_store(tmp_path: pathlib.Path) -> None:
    """`backup` beside a writer: the copy passes integrity_check and opens as a store (a
    plain file copy of a WAL store can be torn)."""
    from gateway.cli_backup import backup_store

    path = tmp_path / "s.sqlite"
    store = SqliteStore(path)
    stop = threading.Event()

    def write() -> None:
        writer = SqliteStore(path)
        i = 0
        while not stop.is_set():
            at = T0 + dt.timedelta(seconds=i)
            writer.add_reading(Reading("tx-1", {"load_pct": float(i)}, at, at))
            writer.commit()
            i += 1
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        for _ in range(3):
            size = backup_store(path, tmp_path / "copy.sqlite")
            assert size > 0
    finally:
        stop.set()
        thread.join()
    store.close()
    with closing(sqlite3.connect(tmp_path / "copy.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM readings").fetchone()[0] > 0
    SqliteStore(tmp_path / "copy.sqlite").close()
    assert not (tmp_path / "copy.sqlite.partial").exists()


def test_writer_is_the_synchronous_api() -> None:
    """The forwarder writes through influxdb-client's synchronous API (its batching mode drops
    data after its retries, §8 wants the cursor to move only on InfluxDB's yes)."""
    from gateway.influx.forward import InfluxSettings

    writer = InfluxWriter(InfluxSettings("http://127.0.0.1:9"))
    try:
        assert type(writer._api._write_options.write_type).__name__ == "WriteType"
        assert writer._api._write_options.write_type.name == "synchronous"
        with pytest.raises(DeliveryFailed):
            writer.write(["x v=1 1"])  # nothing listens on port 9: refused, raised
    finally:
        writer.close()
