"""The gateway's time series reach a real InfluxDB (1.6.7 behind the v2 stand-in), §8.

Each test has a database of its own (`bucket=<db>/autogen`); the outage test has a private
`influxd` it stops and starts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from gateway import payloads
from gateway.app import Gateway
from gateway.clock import ScaledClock
from gateway.config import Site, load_site
from gateway.events import Reading
from gateway.influx.forward import InfluxSettings
from gateway.influx.lines import timestamp_ns
from gateway.influx.points import TABLES, Points
from gateway.ingest.mqtt import BrokerUrl
from gateway.store.sqlite import SqliteStore
from tests.support.gateway import ZCITY, GatewayProcess, gateway_command, unique_root, wait_until
from tests.support.influx import TOKEN, Influxd, V2Adapter
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient, Received
from tests.support.scenarios import OWN

pytestmark = pytest.mark.integration

SHARED_ZCITY = Path(__file__).resolve().parents[3] / "shared" / "scenarios" / "zcity"
CARD = "04A224B1C23380"  # zhang-wei


def scenario() -> tuple[Path, Path]:
    """The public scenario's site and events, or the repository's own where ../shared is gone."""
    if (SHARED_ZCITY / "two-days.jsonl").exists():
        return SHARED_ZCITY / "site.yaml", SHARED_ZCITY / "two-days.jsonl"
    return OWN / "berlin" / "site.yaml", OWN / "berlin" / "late-swap.jsonl"


def new_db(influxd: Influxd) -> str:
    name = f"t{uuid.uuid4().hex[:10]}"
    influxd.create_database(name)
    return name


def settings(adapter: V2Adapter, db: str) -> InfluxSettings:
    return InfluxSettings(adapter.url, TOKEN, "patrol", f"{db}/autogen")


@contextmanager
def influx_gateway(
    broker: Mosquitto,
    data: Path,
    root: str,
    influx: InfluxSettings | None,
    site_file: Path = ZCITY,
) -> Iterator[Gateway]:
    """An in-process gateway writing to InfluxDB, online; stopped on exit."""
    gateway = Gateway(
        load_site(site_file), BrokerUrl.parse(broker.url), data, root=root, influx=influx
    )
    with MqttClient(broker.url) as watcher:
        watcher.connect()
        watcher.subscribe(gateway.topics.gateway_status)
        gateway.start()
        watcher.wait_for(lambda m: m.payload == b"online" and not m.retain, what="online")
    try:
        yield gateway
    finally:
        gateway.stop()


def store_rows(store: Path, table: str, columns: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(store, timeout=5)) as db:
        return db.execute(f"SELECT id, {columns} FROM {table} ORDER BY id").fetchall()


def caught_up(store: Path) -> bool:
    """Every table's InfluxDB cursor is at its newest row."""
    with closing(sqlite3.connect(store, timeout=5)) as db:
        cursors = dict(db.execute("SELECT name, position FROM cursors").fetchall())
        for table in TABLES:
            newest = db.execute(f"SELECT coalesce(max(id), 0) FROM {table.name}").fetchone()[0]
            if cursors.get(table.cursor, 0) != newest:
                return False
    return True


def times(influxd: Influxd, db: str, measurement: str, field: str) -> list[int]:
    series = influxd.query(f'SELECT "{field}" FROM "{measurement}"', db)
    return sorted(int(v[0]) for v in series[0]["values"]) if series else []


def expected_times(store: Path, table: str, column: str) -> list[int]:
    return sorted(timestamp_ns(float(t), int(i)) for i, t in store_rows(store, table, column))  # type: ignore[arg-type]


def assert_point_for_point(influxd: Influxd, db: str, store: Path) -> None:
    """InfluxDB holds exactly the store's rows: one point each, at its §8 timestamp."""
    assert times(influxd, db, "scan", "ok") == expected_times(store, "scans", "time")
    assert times(influxd, db, "reading", "value") == expected_times(store, "readings", "time")
    assert times(influxd, db, "device_status", "online") == expected_times(
        store, "device_status", "time"
    )
    assert times(influxd, db, "alert", "state") == expected_times(store, "alert_transitions", "at")


def publish_scenario(broker: Mosquitto, root: str, events: Path) -> int:
    """Every message line of a recorded scenario, under another topic root."""
    messages = []
    for text in events.read_text(encoding="utf-8").splitlines():
        line = json.loads(text)
        if "topic" not in line:
            continue  # a command line
        topic = root + "/" + line["topic"].split("/", 1)[1]
        payload = line["payload"]
        body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        messages.append((topic, body))
    with MqttClient(broker.url, timeout=30) as client:
        client.connect()
        client.publish_many(messages)
    return len(messages)


def test_scenario_live_reaches_influx_point_for_point(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    """A live gateway with --influx: InfluxDB ends up with exactly the store's scans,
    readings, statuses and alert transitions, point for point, with the §8 tags (a missing,
    doubled or mistagged point fails)."""
    site_file, events = scenario()
    site = load_site(site_file)
    db = new_db(influxd)
    root = unique_root()
    with (
        V2Adapter(influxd) as adapter,
        influx_gateway(
            mosquitto, tmp_path / "data", root, settings(adapter, db), site_file
        ) as gateway,
    ):
        sent = publish_scenario(mosquitto, root, events)
        wait_until(lambda: gateway.counters.get("received", 0), lambda n: n >= sent, 30, "stored")
        store = gateway.store_path
        wait_until(lambda: caught_up(store), bool, 30, "InfluxDB cursors at the newest rows")
    assert_point_for_point(influxd, db, store)
    scans = store_rows(store, "scans", "post, reader, person, method")
    tags = influxd.query("SELECT ok FROM scan GROUP BY *", db)
    seen = {tuple(s["tags"][k] for k in ("post", "reader", "method")) for s in tags}
    assert seen == {(p, r, m) for _, p, r, _, m in scans}
    assert all(s["tags"]["site"] == site.id for s in tags)
    assert {s["tags"]["post_kind"] for s in tags} <= {str(p.kind) for p in site.posts.values()}
    readings = influxd.query('SELECT value FROM reading GROUP BY "equipment", "metric"', db)
    assert {(s["tags"]["equipment"], s["tags"]["metric"]) for s in readings} == {
        (e, m) for _, e, m in store_rows(store, "readings", "equipment, metric")
    }
    # The limits of every metric that has any, written at start.
    limits = influxd.query('SELECT * FROM "limit" GROUP BY "equipment", "metric"', db)
    declared = {
        (e.id, name)
        for e in site.equipment.values()
        for name, m in e.metrics.items()
        if (m.min, m.max, m.expect) != (None, None, None)
    }
    assert {(s["tags"]["equipment"], s["tags"]["metric"]) for s in limits} == declared


def ack_topic(root: str, reader: str = "fd-1") -> str:
    return f"{root}/zcity/reader/{reader}/ack"


def scan_and_wait_answer(
    client: MqttClient, root: str, seq: int, ts: dt.datetime | None = None
) -> float:
    """Publish one scan and wait for its answer; returns the seconds it took."""
    begin = time.monotonic()
    ts = ts or dt.datetime.now(dt.UTC)
    client.publish(f"{root}/zcity/reader/fd-1/scan", payloads.scan(CARD, "nfc", ts=ts, seq=seq))

    def mine(m: Received) -> bool:
        return m.topic == ack_topic(root) and json.loads(m.payload).get("seq") == seq

    client.wait_for(mine, timeout=5, what=f"the answer to seq {seq}")
    return time.monotonic() - begin


def test_outage_loses_nothing_and_never_delays_answers(
    mosquitto: Mosquitto, fresh_influxd: Influxd, tmp_path: Path
) -> None:
    """influxd stopped under traffic: every scan is still answered at once; started again,
    every stored event arrives once, oldest first (a lost, doubled or reordered point, or a
    slow answer, fails)."""
    influxd = fresh_influxd
    db = new_db(influxd)
    root = unique_root()
    with (
        V2Adapter(influxd) as adapter,
        influx_gateway(mosquitto, tmp_path / "data", root, settings(adapter, db)) as gateway,
        MqttClient(mosquitto.url) as client,
    ):
        client.connect()
        client.subscribe(ack_topic(root))
        for seq in range(1, 6):
            scan_and_wait_answer(client, root, seq)
        store = gateway.store_path
        wait_until(lambda: caught_up(store), bool, 15, "the first scans in InfluxDB")
        influxd.stop()
        slowest = max(scan_and_wait_answer(client, root, seq) for seq in range(6, 46))
        assert slowest < 1.0, f"a scan answer took {slowest:.2f} s while InfluxDB was down"
        assert not caught_up(store)
        assert gateway.alerts_out.is_alive()
        passed_before = adapter.lines_passed
        influxd.start()
        wait_until(lambda: caught_up(store), bool, 30, "the backlog in InfluxDB")
    assert_point_for_point(influxd, db, store)
    # The backlog went in one batch after the outage, in the store's order (oldest first).
    ids = [i for i, _ in store_rows(store, "scans", "time")]
    assert len(ids) == 45
    assert adapter.lines_passed - passed_before >= 40
    order = [int(line.rsplit(b" ", 1)[1]) for line in adapter.passed if line.startswith(b"scan,")]
    first_seen = list(dict.fromkeys(order))
    by_id = [timestamp_ns(float(t), int(i)) for i, t in store_rows(store, "scans", "time")]  # type: ignore[arg-type]
    assert first_seen == by_id


def test_refusals_are_retried_until_taken(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    """InfluxDB answering 503 and then 400 (a v2 server refusing) holds the cursor; once it
    takes writes again everything arrives once (a cursor moved on a refusal loses points), the
    two scans of a double tap in one second as two points (§8's timestamp rule)."""
    db = new_db(influxd)
    root = unique_root()
    with (
        V2Adapter(influxd) as adapter,
        influx_gateway(mosquitto, tmp_path / "data", root, settings(adapter, db)) as gateway,
        MqttClient(mosquitto.url) as client,
    ):
        client.connect()
        client.subscribe(ack_topic(root))
        adapter.refuse = 503
        for seq in range(1, 11):
            assert scan_and_wait_answer(client, root, seq) < 1.0
        instant = dt.datetime.now(dt.UTC).replace(microsecond=0)
        for seq in (11, 12):  # a double tap: one reader, one card, one `ts`
            scan_and_wait_answer(client, root, seq, instant)
        wait_until(lambda: adapter.refused, lambda n: n >= 1, 10, "a refused write")
        adapter.refuse = 400
        refused = adapter.refused
        wait_until(lambda: adapter.refused, lambda n: n > refused, 10, "a 400")
        assert not caught_up(gateway.store_path)
        adapter.refuse = None
        wait_until(lambda: caught_up(gateway.store_path), bool, 30, "the refused rows")
        store = gateway.store_path
    assert influxd.count(db, "scan") == 12
    assert_point_for_point(influxd, db, store)


def test_kill_minus_9_while_forwarding_loses_nothing(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kill -9` of `patrol-gateway run --influx` while a backlog write is in flight: after a
    restart every row is in InfluxDB, once (a cursor saved before InfluxDB's yes loses rows)."""
    db = new_db(influxd)
    root = unique_root()
    monkeypatch.setenv("PATROL_INFLUX_TOKEN", TOKEN)
    monkeypatch.setenv("PATROL_INFLUX_BUCKET", f"{db}/autogen")
    with V2Adapter(influxd) as adapter:
        adapter.refuse = 503
        process = GatewayProcess(
            mosquitto.url, tmp_path / "data", root=root, extra_args=["--influx", adapter.url]
        )
        with process, MqttClient(mosquitto.url) as client:
            client.connect()
            client.subscribe(ack_topic(root))
            for seq in range(1, 31):
                scan_and_wait_answer(client, root, seq)
            adapter.delay = 3.0
            adapter.refuse = None
            wait_until(lambda: adapter.in_flight, lambda n: n >= 1, 20, "a write in flight")
            process.kill()
        adapter.delay = 0.0
        store = process.store_path
        with process:
            wait_until(lambda: caught_up(store), bool, 30, "the backlog after the restart")
    assert influxd.count(db, "scan") == 30
    assert_point_for_point(influxd, db, store)


def old_readings(store: Path, days: float, n: int) -> None:
    """`n` readings of tx-1 stamped `days` ago, as if received then."""
    db = SqliteStore(store)
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    for i in range(n):
        t = at + dt.timedelta(minutes=i)
        db.add_reading(Reading("tx-1", {"load_pct": float(i)}, t, t))
    db.commit()
    db.close()


def test_retention_deletes_only_readings_influx_has(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    """Without --influx nothing is deleted; with it, readings older than the kept days go once
    InfluxDB has them, newer ones and scans stay (deleting what InfluxDB lacks loses data)."""
    data = tmp_path / "data"
    store = data / "zcity.sqlite"
    data.mkdir()
    old_readings(store, 100, 20)
    old_readings(store, 1, 5)
    root = unique_root()
    with influx_gateway(mosquitto, data, root, None):
        time.sleep(1.5)
    assert len(store_rows(store, "readings", "time")) == 25
    db = new_db(influxd)
    with V2Adapter(influxd) as adapter:
        with influx_gateway(mosquitto, data, root, settings(adapter, db)):
            wait_until(lambda: caught_up(store), bool, 20, "the readings in InfluxDB")
        assert influxd.count(db, "reading") == 25
        with influx_gateway(mosquitto, data, root, settings(adapter, db)):  # runs at start
            wait_until(
                lambda: len(store_rows(store, "readings", "time")),
                lambda n: n == 5,
                10,
                "retention",
            )
    assert influxd.count(db, "reading") == 25


def test_forward_and_backup_commands(influxd: Influxd, tmp_path: Path) -> None:
    """`patrol-gateway forward` sends a replayed store's history with a progress bar and
    exits 0; run again it sends nothing more (resumable, no doubles); `backup` makes a copy
    that holds the same rows (a wrong exit status, a second copy of each point or a torn
    backup fails)."""
    site_file, events = scenario()
    data = tmp_path / "data"
    data.mkdir()
    site = load_site(site_file)
    store = data / f"{site.id}.sqlite"
    subprocess.run(
        [
            *gateway_command(),
            "replay",
            "--config",
            str(site_file),
            "--store",
            str(store),
            str(events),
        ],
        check=True,
        capture_output=True,
    )
    # The store knows its site once a gateway ran on it; a replay store is told here.
    with closing(sqlite3.connect(store)) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO meta VALUES ('site_yaml', ?)", (site_file.read_text(),)
        )
        conn.commit()
    db = new_db(influxd)
    env = {**os.environ, "PATROL_INFLUX_TOKEN": TOKEN, "PATROL_INFLUX_BUCKET": f"{db}/autogen"}
    with V2Adapter(influxd) as adapter:
        command = [*gateway_command(), "forward", "--data", str(data), "--influx", adapter.url]
        first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert first.returncode == 0, first.stderr
        assert "done" in first.stdout
        passed = adapter.lines_passed
        again = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert again.returncode == 0, again.stderr
        assert "done: 0 rows" in again.stdout
        assert adapter.lines_passed - passed == len(site_limits(site))  # only the limits
    assert_point_for_point(influxd, db, store)
    out = tmp_path / "copy.sqlite"
    backup = subprocess.run(
        [*gateway_command(), "backup", "--data", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert backup.returncode == 0, backup.stderr
    for table in ("scans", "readings", "alert_transitions", "commands"):
        assert store_rows(out, table, "*") == store_rows(store, table, "*")


def site_limits(site: Site) -> list[str]:
    return Points(site).limits(dt.datetime.now(dt.UTC))


def test_demo_writes_to_influx(influxd: Influxd, tmp_path: Path) -> None:
    """`patrol-gateway demo --influx URL` writes its scans, readings and limits to InfluxDB
    (a demo that ignores the option, or a forwarder it never starts, fails); the lag alert
    does not fire at the demo's accelerated clock."""
    db = new_db(influxd)
    env = {**os.environ, "PATROL_INFLUX_TOKEN": TOKEN, "PATROL_INFLUX_BUCKET": f"{db}/autogen"}
    with V2Adapter(influxd) as adapter:
        args = ["demo", "--port", "0", "--seconds", "5", "--speed", "30", "--data", str(tmp_path)]
        run = subprocess.run(
            [*gateway_command(), *args, "--influx", adapter.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    [store] = tmp_path.glob("*.sqlite")
    stored = len(store_rows(store, "readings", "time"))
    assert 0 < influxd.count(db, "reading") <= stored
    assert influxd.count(db, "scan") > 0
    assert influxd.count(db, "limit") > 0
    rules = {json.loads(r)["rule"] for _, r in store_rows(store, "alerts", "record")}
    assert "gateway.forward_lagging" not in rules


def test_forward_lagging_raised_and_cleared_live(
    mosquitto: Mosquitto, influxd: Influxd, tmp_path: Path
) -> None:
    """Rule 12 live: InfluxDB refusing for more than 10 (simulated) minutes raises
    gateway.forward_lagging on `influxdb`; once the backlog is sent it clears, and both
    transitions reach InfluxDB too (no alert, or one that never clears, fails)."""
    db = new_db(influxd)
    root = unique_root()
    clock = ScaledClock(dt.datetime.now(dt.UTC), 240.0, time.time())  # 10 min = 2.5 s
    with V2Adapter(influxd) as adapter:
        adapter.refuse = 503
        gateway = Gateway(
            load_site(ZCITY),
            BrokerUrl.parse(mosquitto.url),
            tmp_path / "data",
            root=root,
            clock=clock,
            grace=dt.timedelta(seconds=480),
            influx=settings(adapter, db),
        )
        gateway.start()
        try:
            with MqttClient(mosquitto.url) as client:
                client.connect()
                client.subscribe(ack_topic(root))
                scan_and_wait_answer(client, root, 1, clock())
            store = gateway.store_path

            def lagging() -> list[str]:
                rows = store_rows(store, "alert_transitions", "change, record")
                return [c for _, c, r in rows if json.loads(r)["rule"] == "gateway.forward_lagging"]

            wait_until(lagging, lambda c: c == ["open"], 20, "the lag alert")
            adapter.refuse = None
            wait_until(lagging, lambda c: c == ["open", "cleared"], 20, "the lag alert cleared")
            wait_until(lambda: caught_up(store), bool, 20, "the transitions in InfluxDB")
        finally:
            gateway.stop()
    series = influxd.query(
        'SELECT "change" FROM alert WHERE "rule" = \'gateway.forward_lagging\'', db
    )
    assert [v[1] for v in series[0]["values"]] == ["opened", "cleared"]
    assert series[0]["columns"] == ["time", "change"]
