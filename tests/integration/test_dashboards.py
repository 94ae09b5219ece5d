"""Every panel query of every dashboard returns rows on an InfluxDB filled by the scenario (§8).

Grafana cannot be installed here: each query's InfluxQL is run as Grafana would send it, with
`$site`, `$timeFilter` and `$__interval` filled in, against a real InfluxDB 1.6 holding the
public scenario (replayed into a store, then sent by `patrol-gateway forward`'s code), plus the
`patrol` snapshots the live gateway would have written and an acknowledgement of each alert
left open at the end (the scenario has none, and the alert dashboard shows time to
acknowledge).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.generate import render
from gateway.config import load_site
from gateway.influx.backfill import send_history
from gateway.influx.forward import InfluxSettings, InfluxWriter
from gateway.influx.points import Points
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.replay import read_events, replay
from gateway.rules.status import patrol_status
from gateway.store.sqlite import SqliteStore
from tests.integration.test_influx_forward import scenario
from tests.support.influx import TOKEN, Influxd, V2Adapter

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JSON = ROOT / "dashboards" / "json"
PROVISIONING = ROOT / "dashboards" / "provisioning"


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(JSON.glob("*.json"))}


def test_committed_json_is_what_the_generator_writes() -> None:
    """dashboards/json is generated: an edit by hand (or a generator change not run) fails."""
    assert {p.name: p.read_text(encoding="utf-8") for p in JSON.glob("*.json")} == render()


def test_uids_ids_titles_and_datasource() -> None:
    """Unique dashboard uids and panel ids, a `site` variable, Chinese titles, English
    descriptions, and the provisioned datasource's uid everywhere (a dangling uid fails)."""
    source = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yaml").read_text())
    (datasource,) = source["datasources"]
    assert datasource["uid"] == "patrol-influxdb"
    assert datasource["jsonData"]["version"] == "InfluxQL"
    boards = dashboards()
    assert {b["title"] for b in boards.values()} == {"巡检合规", "机房监控", "告警"}
    assert len({b["uid"] for b in boards.values()}) == 3
    han = re.compile(r"[\u4e00-\u9fff]")
    for board in boards.values():
        assert [v["name"] for v in board["templating"]["list"]] == ["site"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for p in board["panels"]:
            assert han.search(p["title"]), p["title"]
            assert p["description"] and not han.search(p["description"])
            assert p["datasource"]["uid"] == datasource["uid"]
            assert all(t["datasource"]["uid"] == datasource["uid"] for t in p["targets"])


@pytest.fixture(scope="module")
def filled(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(database, site id, time filter) of an InfluxDB holding the replayed scenario."""
    site_file, events = scenario()
    site = load_site(site_file)
    folder = tmp_path_factory.mktemp("dash")
    store = SqliteStore(folder / f"{site.id}.sqlite")
    text = events.read_text(encoding="utf-8")
    lines = list(read_events(io.StringIO(text), site.tz))
    transitions = list(replay(site, lines, store=store))
    times = [t.at for t in transitions]
    end = max(times) + dt.timedelta(hours=1)
    open_now = {(t.alert.rule, t.alert.subject) for t in transitions if t.change == "open"} - {
        (t.alert.rule, t.alert.subject) for t in transitions if t.change in ("cleared", "closed")
    }
    manager = next(p.id for p in site.config.people if "duty_manager" in p.roles)
    acks = [
        json.dumps(
            {
                "command": {"action": "alert.ack", "rule": r, "subject": s, "by": manager},
                "received_at": end.isoformat(),
            }
        )
        for r, s in sorted(open_now)
    ]
    # A double tap: a flagged scan for the flagged-scans panel (the repository's own scenarios,
    # used where ../shared is missing, have none).
    person = next(p for p in site.config.people if p.id == manager)
    method, _, credential = person.credentials[0].partition(":")
    reader = sorted(site.reader_post)[0]
    taps = [
        json.dumps(
            {
                "topic": f"estate/{site.id}/reader/{reader}/scan",
                "payload": {"credential": credential, "method": method, "seq": 900_000 + i},
                "received_at": (end + dt.timedelta(seconds=60 + 5 * i)).isoformat(),
            }
        )
        for i in range(2)
    ]
    # The acknowledgements and the taps, replayed on the same store after the scenario.
    extra = "\n".join(acks + taps) + "\n"
    all_lines = list(read_events(io.StringIO(text + extra), site.tz))
    store.close()
    (folder / f"{site.id}.sqlite").unlink()
    store = SqliteStore(folder / f"{site.id}.sqlite")
    list(replay(site, all_lines, store=store))
    db = f"dash{uuid.uuid4().hex[:8]}"
    influxd.create_database(db)
    with V2Adapter(influxd) as adapter:
        writer = InfluxWriter(InfluxSettings(adapter.url, TOKEN, "patrol", f"{db}/autogen"))
        send_history(store, site, writer, now=end)
        points = Points(site)
        start = min(times) - dt.timedelta(hours=12)
        snapshots = []
        at = start
        while at <= end:  # what the live gateway writes every 5 minutes (here: hourly)
            pipeline = Pipeline(site, Topics("estate", site.id), store, start)
            pipeline.restore(at.isoformat())
            status = patrol_status(site, pipeline.engine, at)
            if status is not None and (text_line := points.patrol(status, at)):
                snapshots.append(text_line)
            at += dt.timedelta(hours=3)
        counters = {"received": len(lines), "scan": 1}
        snapshots.append(str(points.gateway(counters, 0, 0.0, end)))
        writer.write(snapshots)
        writer.close()
    store.close()
    window = (
        f"time >= {int((start - dt.timedelta(days=1)).timestamp())}s AND "
        f"time <= {int((end + dt.timedelta(days=1)).timestamp())}s"
    )
    return db, site.id, window


QUERIES = [
    (name, panel["title"], t["refId"], t["query"])
    for name, board in dashboards().items()
    for panel in board["panels"]
    for t in panel["targets"]
]


@pytest.mark.parametrize(("board", "title", "ref", "query"), QUERIES)
def test_every_panel_query_returns_rows(
    influxd: Influxd, filled: tuple[str, str, str], board: str, title: str, ref: str, query: str
) -> None:
    """The panel's InfluxQL, filled in as Grafana would, runs and returns rows (a typo, a
    missing measurement or a field the forwarder does not write fails)."""
    db, site, window = filled
    sql = query.replace("$timeFilter", window).replace("$__interval", "1h").replace("$site", site)
    series = influxd.query(sql, db)
    assert series and any(s.get("values") for s in series), f"{board} {title} {ref}: {sql}"


def test_site_variable_lists_the_site(influxd: Influxd, filled: tuple[str, str, str]) -> None:
    """The `site` variable's query offers the scenario's site."""
    db, site, _ = filled
    query = dashboards()["alerts.json"]["templating"]["list"][0]["query"]
    series = influxd.query(query, db)
    assert [site] == [v[1] for v in series[0]["values"]]
