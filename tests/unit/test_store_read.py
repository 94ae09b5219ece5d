"""The store's query side (gateway/store/read): typed rows read on a read-only connection from a
real SQLite file that the real writer (`SqliteStore`) filled."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
from collections.abc import Iterator

import pytest

from gateway.alerts.book import AlertBook
from gateway.config.models import Severity
from gateway.events import DeviceStatus, Reading, Rejection, Scan
from gateway.rules.base import RuleId
from gateway.store.read import (
    AlertRow,
    Heartbeat,
    Marks,
    Queries,
    StoreTooOld,
    connect_readonly,
)
from gateway.store.schema import MIGRATIONS, VERSION
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import iso

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=SHANGHAI)  # instants given in the site's zone


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def scan(
    seq: int,
    minutes: float,
    post: str = "front-desk",
    person: str | None = "li-na",
    flags: tuple[str, ...] = (),
) -> Scan:
    return Scan(
        "fd-1", post, "04B1C2D3E4F501", "nfc", person, at(minutes), at(minutes + 1), seq, flags
    )


@pytest.fixture
def path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "zcity.sqlite"


@pytest.fixture
def writer(path: pathlib.Path) -> Iterator[SqliteStore]:
    store = SqliteStore(path)
    yield store
    store.close()


@pytest.fixture
def reads(path: pathlib.Path, writer: SqliteStore) -> Iterator[Queries]:
    queries = Queries.open(path)
    yield queries
    queries.close()


def test_an_empty_store_answers_nothing_rather_than_failing(reads: Queries) -> None:
    """A page or `alert list` on a gateway that has stored nothing yet must show an empty board,
    not an error."""
    assert reads.alerts() == [] and reads.alert("x") is None
    assert reads.transitions() == [] and reads.history("x") == []
    assert reads.last_transition_id() == 0
    assert reads.scans(at(-60), at(60)) == [] and reads.scans_after(0, 10) == []
    assert reads.latest_readings() == [] and reads.device_states() == []
    assert reads.reading_series("tx-1", "load_pct", at(0), at(60), 60) == []
    assert reads.applied_commands(("swap.register",)) == [] and reads.pending_commands() == []
    assert reads.command(1) is None
    assert reads.heartbeat() is None and reads.meta("nothing") is None
    assert reads.marks() == Marks(0, 0, 0, 0)
    assert reads.count("scans") == 0 and reads.rejected_counts() == {} and reads.scan_keys() == []
    assert reads.events_between(at(-60), at(60)) == []


def test_the_reader_cannot_write_and_sees_only_what_the_writer_committed(
    writer: SqliteStore, reads: Queries
) -> None:
    """Readers run beside the single writer: one that could write (or see a batch before its
    commit) would break acknowledge-after-commit."""
    writer.add_scan(scan(1, 0))
    assert reads.count("scans") == 0
    writer.commit()
    assert reads.count("scans") == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reads.connection.execute("INSERT INTO meta VALUES ('k', 'v')")
    ro = connect_readonly(writer.path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.execute("DELETE FROM scans")
    ro.close()


def test_alert_rows_carry_enums_utc_instants_and_the_stored_document(
    writer: SqliteStore, reads: Queries
) -> None:
    """Callers compare rule ids and severities with the enums and render instants in the site's
    zone; the API sends the stored §6 document as published, so it must come back unchanged."""
    book = AlertBook("zcity")
    opened = book.raise_(RuleId.duty_absent, "2026-11-27", Severity.critical, at(0), "缺勤", {})
    writer.add_transition(opened, SHANGHAI)
    acked = book.acknowledge(opened.alert.id, at(30), "chen-jie", "在路上")
    assert acked is not None
    writer.add_transition(acked, SHANGHAI)
    writer.commit()
    (row,) = reads.alerts()
    assert isinstance(row, AlertRow)
    assert row.rule is RuleId.duty_absent and row.severity is Severity.critical
    assert row.state == "acknowledged" and row.acknowledged_by == "chen-jie"
    assert row.raised_at == at(0) and row.raised_at.utcoffset() == dt.timedelta(0)
    assert row.acknowledged_at == at(30) and row.acknowledged_at.tzinfo == dt.UTC
    assert row.to_acknowledge == dt.timedelta(minutes=30)
    assert row.cleared_at is None and row.shelved_until is None
    assert row.record == acked.alert.to_json(SHANGHAI)
    assert iso(row.raised_at, SHANGHAI) == row.record["raised_at"] == "2026-11-27T09:00:00+08:00"
    assert row.to_alert() == acked.alert
    assert reads.alert(row.id) == row


def test_an_alert_of_a_rule_this_version_does_not_know_is_read_as_its_string(
    writer: SqliteStore, reads: Queries
) -> None:
    """A store written by another version may hold rules this one lacks: reading must not fail
    on them (the board would go blank), and the id must stay what was stored."""
    raised = AlertBook("zcity").raise_("old.rule", "x", Severity.info, at(0), "m")
    writer.add_transition(raised, SHANGHAI)
    writer.commit()
    (row,) = reads.alerts()
    assert row.rule == "old.rule" and not isinstance(row.rule, RuleId)


def test_alerts_newest_first_and_their_filters(writer: SqliteStore, reads: Queries) -> None:
    """The API's and `alert list`'s order (newest raised first, the reports' oldest first) and
    each filter: state (active = not closed), rule, raised in [since, until), limit."""
    book = AlertBook("zcity")
    ids = {}
    for n, (rule, minutes) in enumerate(
        [(RuleId.device_offline, 0), (RuleId.round_missed, 10), (RuleId.device_offline, 20)]
    ):
        t = book.raise_(rule, f"s{n}", Severity.warning, at(minutes), "m")
        writer.add_transition(t, SHANGHAI)
        ids[minutes] = t.alert.id
    cleared = book.clear(RuleId.device_offline, "s0", at(25))
    assert cleared is not None
    writer.add_transition(cleared, SHANGHAI)
    writer.commit()
    assert [a.id for a in reads.alerts()] == [ids[20], ids[10], ids[0]]
    assert [a.id for a in reads.alerts(oldest_first=True)] == [ids[0], ids[10], ids[20]]
    assert [a.id for a in reads.alerts("active")] == [ids[20], ids[10]]
    assert [a.id for a in reads.alerts("closed")] == [ids[0]]
    assert [a.id for a in reads.alerts("open")] == [ids[20], ids[10]]
    assert [a.id for a in reads.alerts(rule="device.offline")] == [ids[20], ids[0]]
    assert [a.id for a in reads.alerts(since=at(10), until=at(20))] == [ids[10]]
    assert [a.id for a in reads.alerts(limit=1)] == [ids[20]]


def test_transitions_in_order_with_the_alert_after_each_change(
    writer: SqliteStore, reads: Queries
) -> None:
    """The live board and the history show each change with the alert as it was right after it,
    oldest first, and the board asks only for those after the last one it saw."""
    book = AlertBook("zcity")
    opened = book.raise_(RuleId.device_offline, "gr-2", Severity.warning, at(0), "离线")
    first = writer.add_transition(opened, SHANGHAI)
    said = book.comment(opened.alert.id, at(5), "he-ping", "去看看")
    cleared = book.clear(RuleId.device_offline, "gr-2", at(9))
    assert said is not None and cleared is not None
    writer.add_transition(said, SHANGHAI)
    last = writer.add_transition(cleared, SHANGHAI)
    writer.commit()
    history = reads.history(opened.alert.id)
    assert [(t.change, t.at, t.actor, t.comment) for t in history] == [
        ("open", at(0), "gateway", ""),
        ("commented", at(5), "he-ping", "去看看"),
        ("cleared", at(9), "gateway", ""),
    ]
    assert all(t.at.tzinfo == dt.UTC for t in history)
    assert [t.alert.state for t in history] == ["open", "open", "closed"]
    assert [t.id for t in reads.transitions(first)] == [first + 1, last]
    assert [t.change for t in reads.transitions(0, limit=1)] == ["open"]
    assert reads.last_transition_id() == last


def test_scan_rows_their_window_order_and_filters(writer: SqliteStore, reads: Queries) -> None:
    """Scans are chosen by event time in [since, until): the history newest first (ties by the
    later row), the reports oldest first; flags come back as stored and say whether the rules
    counted the scan."""
    writer.add_scan(scan(1, 0))
    writer.add_scan(scan(2, 10, post="garage", person=None))
    writer.add_scan(scan(3, 10, flags=("backdated",)))
    writer.add_scan(scan(4, 20))
    writer.commit()
    window = reads.scans(at(0), at(20))
    assert [s.seq for s in window] == [1, 2, 3]
    assert [s.seq for s in reads.scans(at(0), at(21), newest_first=True)] == [4, 3, 2, 1]
    assert [s.seq for s in reads.scans(at(0), at(60), post="garage")] == [2]
    assert [s.seq for s in reads.scans(at(0), at(60), person="li-na", limit=2)] == [1, 3]
    first = window[0]
    assert (first.reader, first.post, first.person, first.method) == (
        "fd-1",
        "front-desk",
        "li-na",
        "nfc",
    )
    assert first.time == at(0) and first.received_at == at(1)
    assert first.time.tzinfo == dt.UTC
    assert first.assurance == "plain_uid" and first.sun_counter is None
    assert window[2].flags == ("backdated",) and not window[2].counts and first.counts
    assert [s.seq for s in reads.scans_after(1, 2)] == [4, 3]
    assert reads.scan_keys() == [("fd-1", 1), ("fd-1", 2), ("fd-1", 3), ("fd-1", 4)]


def test_readings_latest_values_keep_booleans_and_the_series_buckets(
    writer: SqliteStore, reads: Queries
) -> None:
    """A boolean metric (a leak) must come back as a boolean, not 1.0; the newest value is by
    event time, and up to an instant for a round's record (the reports)."""
    writer.add_reading(Reading("tx-1", {"load_pct": 60.0}, at(0), at(0)))
    writer.add_reading(Reading("tx-1", {"load_pct": 70.0}, at(10), at(10)))
    writer.add_reading(Reading("chiller-1", {"leak": True}, at(5), at(5)))
    writer.commit()
    latest = reads.latest_readings()
    assert [(v.equipment, v.metric, v.value) for v in latest] == [
        ("chiller-1", "leak", True),
        ("tx-1", "load_pct", 70.0),
    ]
    assert latest[0].value is True and latest[1].time == at(10)
    (then,) = reads.latest_readings("tx-1", at_or_before=at(9))
    assert (then.value, then.time) == (60.0, at(0))
    (bucket,) = reads.reading_series("tx-1", "load_pct", at(0), at(20), 1200)
    assert (bucket.start, bucket.min, bucket.mean, bucket.max, bucket.count) == (
        at(0),
        60.0,
        65.0,
        70.0,
        2,
    )


def test_device_states_are_the_newest_by_the_devices_own_time(
    writer: SqliteStore, reads: Queries
) -> None:
    """A status buffered and delivered late must not hide the newer one."""
    writer.add_status(DeviceStatus("gr-2", "offline", at(10), at(10)))
    writer.add_status(DeviceStatus("gr-2", "online", at(5), at(12)))
    writer.add_status(DeviceStatus("fd-1", "online", at(0), at(0)))
    writer.commit()
    assert [(d.device, d.state, d.since) for d in reads.device_states()] == [
        ("fd-1", "online", at(0)),
        ("gr-2", "offline", at(10)),
    ]


def test_commands_pending_applied_in_order_and_their_outcome(
    writer: SqliteStore, reads: Queries
) -> None:
    """The roster and the records fold applied commands in the order applied, before an
    instant; the API lists them newest first; a pending one has no time applied yet."""
    swap = {"date": "2026-11-30", "manager": "wang-fang"}
    queued = writer.add_command("swap.register", swap, "zhang-wei", at(0))
    writer.record_command(queued, "swap.register", swap, "zhang-wei", at(20), "done", "{}")
    writer.record_command(None, "incident.report", {"title": "t"}, "guo-jun", at(10), "done", "x")
    late = {"date": "2026-12-01"}
    writer.record_command(None, "swap.cancel", late, "li-na", at(30), "refused", "太晚 / late")
    pending = writer.add_command("swap.cancel", {"date": "2026-11-30"}, "li-na", at(40))
    writer.commit()
    (waiting,) = reads.pending_commands()
    assert waiting.id == pending and waiting.status == "pending" and waiting.at is None
    with pytest.raises(ValueError, match="not applied"):
        waiting.applied_at  # noqa: B018
    actions = ("swap.register", "swap.cancel", "incident.report")
    assert [c.action for c in reads.applied_commands(actions)] == [
        "incident.report",
        "swap.register",
    ]
    assert [c.action for c in reads.applied_commands(actions, before=at(20))] == ["incident.report"]
    newest = reads.applied_commands(actions, limit=1, newest_first=True)
    assert [c.action for c in newest] == ["swap.register"]
    (row,) = newest
    assert row.body == swap and row.actor == "zhang-wei"
    assert row.submitted_at == at(0) and row.applied_at == at(20) and row.at == at(20)
    assert row.outcome == {}
    stored = reads.command(queued + 1)
    assert stored is not None and stored.outcome == {"message": "x"}


def test_heartbeat_marks_counts_and_meta(writer: SqliteStore, reads: Queries) -> None:
    """`health` and the API read the worker's heartbeat; a damaged one reads as none instead
    of failing the health check."""
    beat = {"pid": 42, "at": 1_700_000_000.5, "connected": True, "reload": None}
    writer.set_meta("heartbeat", json.dumps({**beat, "notify_failing": {"ntfy://x": "503"}}))
    writer.add_scan(scan(1, 0))
    writer.add_reading(Reading("tx-1", {"load_pct": 60.0, "winding_temp_c": 50.0}, at(0), at(0)))
    writer.add_rejection(
        Rejection("bad_json", "not JSON", "estate/zcity/x", b"{"), "坏 / bad", at(0)
    )
    writer.commit()
    got = reads.heartbeat()
    assert got == Heartbeat(
        at=dt.datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=dt.UTC),
        pid=42,
        connected=True,
        reload=None,
        notify_failing={"ntfy://x": "503"},
    )
    assert reads.marks() == Marks(transitions=0, scans=1, readings=2, devices=0)
    assert reads.count("readings") == 2 and reads.rejected_counts() == {"bad_json": 1}
    with pytest.raises(ValueError):
        reads.count("tokens; DROP TABLE scans")
    assert Heartbeat.parse("{not json") is None and Heartbeat.parse("[1]") is None
    odd = Heartbeat.parse('{"at": "soon", "pid": true, "connected": 1}')
    assert odd == Heartbeat(None, 0, None, None, {})


def test_the_restart_reads_back_events_and_commands_in_received_order(
    writer: SqliteStore, reads: Queries
) -> None:
    """A restart runs the stored record through the rules again: the order and the values
    (booleans included) must be what was received."""
    writer.add_reading(Reading("chiller-1", {"leak": True, "supply_temp_c": 7.0}, at(2), at(2)))
    writer.add_scan(scan(1, 0))  # received at 1
    writer.add_status(DeviceStatus("gr-2", "offline", at(3), at(3)))
    writer.record_command(None, "swap.register", {"date": "2026-11-30"}, "li-na", at(4), "done", "")
    writer.commit()
    events = reads.events_between(at(0), at(10))
    assert [when for when, _ in events] == [at(1), at(2), at(3), at(4)]
    kinds = [type(e).__name__ for _, e in events]
    assert kinds == ["Scan", "Reading", "DeviceStatus", "CommandRow"]
    reading = events[1][1]
    assert isinstance(reading, Reading) and reading.values == {"leak": True, "supply_temp_c": 7.0}


def _store_at(path: pathlib.Path, version: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    for n, migration in enumerate(MIGRATIONS[:version], start=1):
        migration(db)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(n),))
    return db


def test_a_store_of_an_older_version_is_read_without_migrating_it(tmp_path: pathlib.Path) -> None:
    """A reader cannot migrate: on a version-4 store (before each scan's assurance level) it
    must read the scans as plain UIDs and leave the file as it was."""
    path = tmp_path / "old.sqlite"
    db = _store_at(path, 4)
    db.execute(
        "INSERT INTO scans (reader, post, seq, credential, method, person, time, received_at)"
        " VALUES ('fd-1', 'front-desk', 1, 'C', 'qr', NULL, ?, ?)",
        (at(0).timestamp(), at(0).timestamp()),
    )
    db.close()
    reads = Queries.open(path)
    assert reads.version == 4 and not reads.current
    (row,) = reads.scans(at(0), at(1))
    assert (row.assurance, row.sun_counter, row.method, row.person) == (
        "plain_uid",
        None,
        "qr",
        None,
    )
    reads.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("4",)
    db.close()
    assert VERSION > 4


def test_a_store_too_old_to_read_says_so(tmp_path: pathlib.Path) -> None:
    """Before version 2 there is no commands table: a reader must say what to do, not fail
    later with `no such table`."""
    path = tmp_path / "v1.sqlite"
    _store_at(path, 1).close()
    with pytest.raises(StoreTooOld, match="start the gateway on it once"):
        Queries.open(path)
