"""The shared pipeline: duplicates, scan answers, refusals, and a restart that forgets nothing."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

from gateway.config import Site
from gateway.events import Message
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.store.sqlite import SqliteStore

T0 = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)  # 09:30, clear of the duty deadlines
TOPICS = Topics("estate", "zcity")


def msg(topic: str, payload: object, minutes: float = 0) -> Message:
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    return Message(f"estate/zcity/{topic}", body, T0 + dt.timedelta(minutes=minutes), qos=1)


def scan(credential: str, seq: int | None, minutes: float = 0) -> Message:
    return msg("reader/fd-1/scan", {"credential": credential, "method": "nfc", "seq": seq}, minutes)


def test_duplicate_scan_is_stored_once_and_answered_twice(zcity: Site) -> None:
    """QoS 1 redelivery: one record per (reader, seq), but every delivery is answered."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    first = pipeline.handle(scan("04A224B1C23380", 1))
    second = pipeline.handle(scan("04A224B1C23380", 1))
    assert store.count("scans") == 1
    assert pipeline.counters["duplicates"] == 1
    for outcome in (first, second):
        (answer,) = outcome.publications
        assert answer.topic == "estate/zcity/reader/fd-1/ack" and answer.qos == 1
        body = json.loads(answer.payload)
        assert body == {
            "seq": 1,
            "ok": True,
            "person": "张伟",
            "message": "前台 已签到 09:30",
            "flags": [],
        }


def test_scans_without_seq_are_all_kept(zcity: Site) -> None:
    """Without seq nothing identifies a duplicate, so nothing is dropped."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    pipeline.handle(scan("04A224B1C23380", None))
    pipeline.handle(scan("04A224B1C23380", None))
    assert store.count("scans") == 2


def test_duplicate_reading_is_stored_once(zcity: Site) -> None:
    """(equipment, seq) identifies a reading the same way."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    body = {"values": {"winding_temp_c": 70.0, "load_pct": 50.0}, "seq": 9}
    pipeline.handle(msg("equipment/tx-1/reading", body))
    pipeline.handle(msg("equipment/tx-1/reading", body))
    other = {"values": {"winding_temp_c": 99.0}, "seq": 9}  # same seq, other metrics
    assert pipeline.handle(msg("equipment/tx-1/reading", other)).transitions == []
    assert store.count("readings") == 2  # one row per metric
    assert pipeline.counters["duplicates"] == 2


def test_refusal_is_published_stored_and_counted(zcity: Site) -> None:
    """A refused message goes to gateway/rejected, into the store, and into the counts."""
    store = SqliteStore()
    pipeline = Pipeline(zcity, TOPICS, store, T0)
    (pub,) = pipeline.handle(msg("reader/nope/scan", "{}")).publications
    assert pub.topic == "estate/zcity/gateway/rejected" and pub.qos == 0 and not pub.retain
    body = json.loads(pub.payload)
    assert body["topic"] == "estate/zcity/reader/nope/scan" and "nope" in body["reason"]
    assert store.rejected_counts() == {"unknown_reader": 1}


def test_alert_publications_are_retained_then_cleared(zcity: Site) -> None:
    """An open alert is retained on alert/{id}; closing publishes an empty retained message."""
    pipeline = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    (opened,) = pipeline.handle(msg("device/gr-2/status", "offline")).publications
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
    }
    assert (record["rule"], record["subject"], record["state"]) == (
        "device.offline",
        "gr-2",
        "open",
    )
    (closed,) = pipeline.handle(msg("device/gr-2/status", "online", 5)).publications
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
    assert again.transitions == []  # still the one open alert: no second raise
    (closed,) = after.handle(msg("device/gr-2/status", "online", 3)).transitions
    assert closed.alert.id == opened.alert.id and closed.alert.state == "closed"
    (update,) = after.handle(scan("EEEE", 2, 4)).transitions
    assert update.change == "update" and update.alert.details["count"] == 2
    changes = [t["change"] for t in store.transitions()]
    assert changes == ["open", "open", "closed", "update"]


def test_acknowledging_a_non_clearing_alert_closes_it(zcity: Site) -> None:
    """scan.unknown_credential does not clear by itself; an acknowledgement closes it (§6)."""
    pipeline = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    (opened,) = pipeline.handle(scan("FFFF", 1)).transitions
    ack = pipeline.acknowledge(opened.alert.id, T0, "chen-jie", "visitor card")
    (t,) = ack.transitions
    assert t.alert.state == "closed" and t.alert.acknowledged_by == "chen-jie"
    assert ack.publications[0].payload == b""
