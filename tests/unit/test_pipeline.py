"""The shared pipeline: duplicates, scan answers, refusals, and a restart that forgets nothing."""

from __future__ import annotations

import datetime as dt
import gc
import json
import pathlib
import weakref

from gateway.commands import parse
from gateway.config import Site
from gateway.events import Message
from gateway.ingest.render import Renderer
from gateway.ingest.topics import Topics
from gateway.pipeline import Answer, Pipeline
from gateway.store.sqlite import SqliteStore

T0 = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)  # 09:30, clear of the duty deadlines
TOPICS = Topics("estate", "zcity")
RENDER = Renderer(TOPICS, dt.UTC)


def msg(topic: str, payload: object, minutes: float = 0) -> Message:
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    return Message(f"estate/zcity/{topic}", body, T0 + dt.timedelta(minutes=minutes), qos=1)


def scan(credential: str, seq: int | None, minutes: float = 0) -> Message:
    return msg("reader/fd-1/scan", {"credential": credential, "method": "nfc", "seq": seq}, minutes)


def test_duplicate_scan_is_stored_once_and_answered_twice(zcity: Site) -> None:
    """QoS 1 redelivery: one record per (reader, seq, credential, ts), every delivery answered."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    first = pipeline.handle(scan("04A224B1C23380", 1))
    second = pipeline.handle(scan("04A224B1C23380", 1))
    assert store.count("scans") == 1
    assert pipeline.counters["duplicates"] == 1
    for outcome in (first, second):
        (answer,) = outcome.answers
        assert answer == Answer("fd-1", 1, True, "张伟", "前台 已签到 09:30", ())
        (pub,) = [RENDER.answer(answer)]
        assert pub.topic == "estate/zcity/reader/fd-1/ack" and pub.qos == 1
        assert json.loads(pub.payload) == {
            "seq": 1,
            "ok": True,
            "person": "张伟",
            "message": "前台 已签到 09:30",
            "flags": [],
        }


def test_reused_seq_with_another_credential_is_a_new_scan(zcity: Site) -> None:
    """Issue 8 item 2: a reader that reboots counts from 1 again; its scans must be stored and
    flagged `seq_reset`, never answered "signed in" and thrown away as duplicates (§3)."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    pipeline.handle(scan("04A224B1C23380", 1))
    (answer,) = pipeline.handle(scan("04B1C2D3E4F501", 1, 5)).answers
    assert answer.ok and "seq_reset" in answer.flags
    assert store.count("scans") == 2
    assert pipeline.counters["duplicates"] == 0
    # Same credential, another ts: also new.
    stamped = {"credential": "04A224B1C23380", "method": "nfc", "seq": 1, "ts": T0.isoformat()}
    (again,) = pipeline.handle(msg("reader/fd-1/scan", stamped, 6)).answers
    assert "seq_reset" in again.flags and store.count("scans") == 3
    # The very same delivery again is a duplicate, answered as the first time.
    (dup,) = pipeline.handle(msg("reader/fd-1/scan", stamped, 7)).answers
    assert dup.flags == again.flags and store.count("scans") == 3
    assert pipeline.counters["duplicates"] == 1


def test_scans_without_seq_are_all_kept(zcity: Site) -> None:
    """Without seq nothing identifies a duplicate, so nothing is dropped."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    pipeline.handle(scan("04A224B1C23380", None))
    pipeline.handle(scan("04A224B1C23380", None))
    assert store.count("scans") == 2


def test_duplicate_reading_is_stored_once_and_a_reset_counter_is_kept(zcity: Site) -> None:
    """(equipment, seq, ts, values) identifies a reading; the same seq with other values is a
    restarted counter: stored and flagged (§3)."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    body = {"values": {"winding_temp_c": 70.0, "load_pct": 50.0}, "seq": 9}
    pipeline.handle(msg("equipment/tx-1/reading", body))
    pipeline.handle(msg("equipment/tx-1/reading", body))
    assert store.count("readings") == 2  # one row per metric
    assert pipeline.counters["duplicates"] == 1
    other = {"values": {"winding_temp_c": 99.0}, "seq": 9}  # same seq, other values
    pipeline.handle(msg("equipment/tx-1/reading", other, 1))
    assert store.count("readings") == 3
    assert pipeline.counters["flag_seq_reset"] == 1


def test_refusal_is_rendered_stored_and_counted(zcity: Site) -> None:
    """A refused message goes to gateway/rejected, into the store, and into the counts."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    (refusal,) = pipeline.handle(msg("reader/nope/scan", "{}")).refusals
    pub = RENDER.refusal(refusal)
    assert pub.topic == "estate/zcity/gateway/rejected" and pub.qos == 0 and not pub.retain
    body = json.loads(pub.payload)
    assert body["topic"] == "estate/zcity/reader/nope/scan" and "nope" in body["reason"]
    assert store.rejected_counts() == {"unknown_reader": 1}


def test_alert_publications_are_retained_then_cleared(zcity: Site) -> None:
    """An open alert is retained on alert/{id}; closing publishes an empty retained message."""
    pipeline = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    (t,) = pipeline.handle(msg("device/gr-2/status", "offline")).transitions
    opened = RENDER.alert(t.alert)
    record = json.loads(opened.payload)
    assert opened.retain and opened.topic == f"estate/zcity/alert/{record['id']}"
    assert set(record) == {
        "id",
        "site",
        "rule",
        "subject",
        "severity",
        "state",
        "raised_at",
        "acknowledged_at",
        "acknowledged_by",
        "cleared_at",
        "message",
        "details",
        "shelved_until",
    }
    assert (record["rule"], record["subject"], record["state"]) == (
        "device.offline",
        "gr-2",
        "open",
    )
    (t2,) = pipeline.handle(msg("device/gr-2/status", "online", 5)).transitions
    closed = RENDER.alert(t2.alert)
    assert closed.topic == opened.topic and closed.retain and closed.payload == b""


def test_restart_remembers_open_alerts(zcity: Site, tmp_path: pathlib.Path) -> None:
    """A gateway restarted mid-day clears the alert it raised before, under the same id."""
    path = tmp_path / "zcity.sqlite"
    store = SqliteStore(path)
    before = Pipeline(zcity, TOPICS, store, T0)
    (opened,) = before.handle(msg("device/gr-2/status", "offline")).transitions
    before.handle(scan("FFFF", 1, 1))
    store.commit()
    store.close()

    store = SqliteStore(path)
    after = Pipeline(zcity, TOPICS, store, T0)
    again = after.handle(msg("device/gr-2/status", "offline", 2))
    assert not again.transitions  # still the one open alert: no second raise
    (closed,) = after.handle(msg("device/gr-2/status", "online", 3)).transitions
    assert closed.alert.id == opened.alert.id and closed.alert.state == "closed"
    (update,) = after.handle(scan("EEEE", 2, 4)).transitions
    assert update.change == "update" and update.alert.details["count"] == 2
    changes = [t["change"] for t in store.transitions()]
    assert changes == ["open", "open", "cleared", "update"]


def test_acknowledging_a_non_clearing_alert_closes_it(zcity: Site) -> None:
    """scan.unknown_credential does not clear by itself; an acknowledgement closes it (§6)."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    (opened,) = pipeline.handle(scan("FFFF", 1)).transitions
    command = parse(
        {"action": "alert.ack", "by": "chen-jie", "id": opened.alert.id, "comment": "visitor card"},
        zcity.tz,
    )
    outcome = pipeline.command(command, T0 + dt.timedelta(minutes=1))
    assert outcome.ok, outcome.message
    (t,) = outcome.transitions
    assert t.alert.state == "closed" and t.alert.acknowledged_by == "chen-jie"
    assert t.comment == "visitor card" and RENDER.alert(t.alert).payload == b""
    (stored,) = [c for c in [store.command(outcome.command_id or 0)] if c is not None]
    assert stored.status == "done" and stored.actor == "chen-jie"
    again = pipeline.command(command, T0 + dt.timedelta(minutes=2))
    assert not again.ok and "closed" in again.message


def test_commands_refuse_unknown_people_and_alerts(zcity: Site) -> None:
    """A command by someone not in the site file, or on no such alert, is refused and says why."""
    pipeline = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    nobody = parse({"action": "alert.ack", "by": "mallory", "id": "abc"}, zcity.tz)
    outcome = pipeline.command(nobody, T0)
    assert not outcome.ok and "mallory" in outcome.message
    unknown = parse({"action": "alert.ack", "by": "chen-jie", "id": "abc"}, zcity.tz)
    outcome = pipeline.command(unknown, T0)
    assert not outcome.ok and "abc" in outcome.message


def test_shelve_ends_at_its_instant(zcity: Site) -> None:
    """A shelved alert stays open and is unshelved when the instant passes (§6)."""
    pipeline = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    (opened,) = pipeline.handle(msg("device/gr-2/status", "offline")).transitions
    until = T0 + dt.timedelta(hours=2)
    shelve = parse(
        {
            "action": "alert.shelve",
            "by": "chen-jie",
            "id": opened.alert.id,
            "until": until.isoformat(),
        },
        zcity.tz,
    )
    (t,) = pipeline.command(shelve, T0).transitions
    assert t.change == "shelved" and t.alert.state == "open" and t.alert.shelved_until == until
    changes = [(x.change, x.at) for x in pipeline.tick(until + dt.timedelta(hours=1)).transitions]
    assert ("unshelved", until) in changes
    too_long = parse(
        {
            "action": "alert.shelve",
            "by": "chen-jie",
            "id": opened.alert.id,
            "until": (T0 + dt.timedelta(hours=30)).isoformat(),
        },
        zcity.tz,
    )
    assert not pipeline.command(too_long, T0 + dt.timedelta(hours=3)).ok


def test_major_incident_raises_and_closes_on_acknowledge(zcity: Site) -> None:
    """incident.major (rule 11) comes from a command and closes only when acknowledged."""
    pipeline = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    report = parse(
        {
            "action": "incident.report",
            "by": "chen-jie",
            "title": "水管爆裂",
            "major": True,
            "id": "inc-1",
        },
        zcity.tz,
    )
    (t,) = pipeline.command(report, T0).transitions
    assert (t.alert.rule, t.alert.subject, t.alert.severity) == (
        "incident.major",
        "inc-1",
        "critical",
    )
    ack = parse(
        {"action": "alert.ack", "by": "chen-jie", "rule": "incident.major", "subject": "inc-1"},
        zcity.tz,
    )
    (closed,) = pipeline.command(ack, T0 + dt.timedelta(minutes=3)).transitions
    assert closed.alert.state == "closed"


def test_a_pipeline_is_freed_as_soon_as_it_is_dropped(zcity: Site) -> None:
    """No reference cycle: its escalation held the pipeline's own methods, so the pipeline and
    all it held (rules, alerts, the store's twin) waited for a full garbage collection, which
    took 300 ms after a replay of 100,000 lines and slowed the next replay in the process."""
    pipeline = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    pipeline.handle(scan("04A224B1C23380", 1))
    pipeline.tick(T0 + dt.timedelta(hours=30))  # deadlines fired, notifications decided
    gone = weakref.ref(pipeline)
    gc.disable()
    try:
        del pipeline
        assert gone() is None
    finally:
        gc.enable()
