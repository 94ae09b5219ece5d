"""The command line's read commands (`alert list`, `health`) on the store's read-only query
side: they show the store as it is and change nothing in it."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import sqlite3

from typer.testing import CliRunner

from gateway.alerts.book import AlertBook
from gateway.cli import app
from gateway.config.models import Severity
from gateway.rules.base import RuleId
from gateway.store.schema import MIGRATIONS, VERSION
from gateway.store.sqlite import SqliteStore

ZCITY = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "sites" / "zcity.yaml"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 11, 27, 9, 5, tzinfo=SHANGHAI)


def _written(path: pathlib.Path) -> str:
    """A store with the site file and one acknowledged alert, through the real writer."""
    store = SqliteStore(path)
    store.set_meta("site_yaml", ZCITY.read_text(encoding="utf-8"))
    book = AlertBook("zcity")
    raised = book.raise_(RuleId.device_offline, "gr-2", Severity.warning, T0, "车库读卡器离线")
    store.add_transition(raised, SHANGHAI)
    acked = book.acknowledge(raised.alert.id, T0 + dt.timedelta(minutes=3), "li-na")
    assert acked is not None
    store.add_transition(acked, SHANGHAI)
    store.close()
    return raised.alert.id


def test_alert_list_prints_one_line_per_alert_in_the_sites_time(tmp_path: pathlib.Path) -> None:
    """The line `alert list` prints is what duty managers read and scripts cut: it must not
    change when the rows it comes from became typed (enums, UTC instants)."""
    ident = _written(tmp_path / "zcity.sqlite")
    result = CliRunner().invoke(app, ["alert", "list", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{ident}  2026-11-27 09:05  acknowledged warning  device.offline gr-2 (li-na)  "
        "车库读卡器离线\n"
    )
    result = CliRunner().invoke(app, ["alert", "list", "--open", "--data", str(tmp_path)])
    assert result.stdout.startswith(ident)


def test_alert_list_reads_an_older_store_without_bringing_it_forward(
    tmp_path: pathlib.Path,
) -> None:
    """A read command on a copy of an older gateway's store (a backup, a store a newer version
    has not run on yet) must not migrate it: that is the writer's job, at its start."""
    path = tmp_path / "zcity.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for n, migration in enumerate(MIGRATIONS[:5], start=1):
        migration(db)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(n),))
    db.execute("INSERT INTO meta VALUES ('site_yaml', ?)", (ZCITY.read_text(encoding="utf-8"),))
    record = AlertBook("zcity").raise_(RuleId.round_missed, "power-room", Severity.warning, T0, "m")
    document = json.dumps(record.alert.to_json(SHANGHAI), ensure_ascii=False)
    db.execute(
        "INSERT INTO alerts VALUES (?, 'round.missed', 'power-room', 'open', ?, ?)",
        (record.alert.id, T0.timestamp(), document),
    )
    db.close()
    result = CliRunner().invoke(app, ["alert", "list", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "round.missed power-room" in result.stdout
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("5",)
    db.close()
    assert VERSION > 5


def test_health_with_a_damaged_heartbeat_says_no_gateway_ran(tmp_path: pathlib.Path) -> None:
    """A heartbeat that is not one (a half-restored store) must give the health check's answer
    and exit status, not a traceback."""
    store = SqliteStore(tmp_path / "zcity.sqlite")
    store.set_meta("heartbeat", "{not json")
    store.close()
    result = CliRunner().invoke(app, ["health", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "no gateway has run on this store" in result.output


def test_health_of_a_running_connected_gateway_lists_failing_notify_channels(
    tmp_path: pathlib.Path,
) -> None:
    """`health` is what a supervisor runs: exit 0 for a fresh heartbeat of a live process,
    and each failing channel named, in order."""
    store = SqliteStore(tmp_path / "zcity.sqlite")
    beat = {
        "pid": os.getpid(),
        "at": dt.datetime.now(dt.UTC).timestamp(),
        "connected": True,
        "reload": None,
        "notify_failing": {"ntfy://b": "503", "mailto://a": "refused"},
    }
    store.set_meta("heartbeat", json.dumps(beat))
    store.close()
    result = CliRunner().invoke(app, ["health", "--data", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("网关运行中 / running (pid ")
    assert lines[1:] == [
        "通知渠道发送失败 / notify channel failing: mailto://a: refused",
        "通知渠道发送失败 / notify channel failing: ntfy://b: 503",
    ]
