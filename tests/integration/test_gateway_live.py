"""The gateway in this process against the real Mosquitto: what devices see, what is stored.

Each test has its own topic root (so retained alerts and statuses never leak between tests),
its own data folder and its own client ids. "Everything before X is stored" is observed through
the scan answer of X: the gateway has one worker that takes messages in broker order and
publishes a batch's answers only after the batch is committed (contract §2, app.py).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from gateway.app import Gateway
from gateway.store.sqlite import SqliteStore
from tests.support.gateway import running_gateway, unique_root
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient, Received

pytestmark = pytest.mark.integration

ZHANG_WEI = "04A224B1C23380"  # nfc:04A224B1C23380 in gateway/sites/zcity.yaml
UNKNOWN_CARD = "DEADBEEF0001"
ALERT_FIELDS = {
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
    "shelved_until",
    "message",
    "details",
}


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Gateway]:
    """The gateway for site zcity under a topic root of its own, online."""
    with running_gateway(mosquitto.url, tmp_path / "data", root=unique_root()) as running:
        yield running


@pytest.fixture
def device(mosquitto: Mosquitto, gateway: Gateway) -> Iterator[MqttClient]:
    """A client playing the site's readers and sensors; it hears answers, alerts, refusals."""
    base = gateway.topics.base
    with MqttClient(mosquitto.url, f"device-{uuid.uuid4().hex[:8]}", timeout=10) as client:
        client.connect()
        client.subscribe(f"{base}/reader/+/ack", f"{base}/alert/+", f"{base}/gateway/rejected")
        yield client


def scan(credential: object = ZHANG_WEI, method: object = "nfc", **fields: object) -> bytes:
    """A scan payload (contract §3)."""
    return json.dumps({"credential": credential, "method": method, **fields}).encode()


def answer(gateway: Gateway, reader: str, seq: int) -> Callable[[Received], bool]:
    """Matches the scan answer to `(reader, seq)`."""
    topic = gateway.topics.ack(reader)
    return lambda m: m.topic == topic and m.json().get("seq") == seq


def alert_on(gateway: Gateway, rule: str, subject: str) -> Callable[[Received], bool]:
    """Matches a non-empty alert record of `rule` for `subject`."""
    prefix = gateway.topics.alert("")

    def match(message: Received) -> bool:
        if not message.topic.startswith(prefix) or not message.payload:
            return False
        record = message.json()
        return bool(record["rule"] == rule and record["subject"] == subject)

    return match


def store_of(gateway: Gateway) -> closing[SqliteStore]:
    """A second connection to the gateway's store (WAL lets it read beside the writer)."""
    return closing(SqliteStore(gateway.store_path))


def retained(mosquitto: Mosquitto, topic: str) -> list[bytes]:
    """What a client subscribing now gets as retained on `topic` (a filter may match many)."""
    with MqttClient(mosquitto.url, f"late-{uuid.uuid4().hex[:8]}") as late:
        late.connect()
        late.subscribe(topic)
        late.barrier()
        return [m.payload for m in late.received if m.retain]


def test_scan_reading_and_status_round_trip_to_the_store(
    gateway: Gateway, device: MqttClient
) -> None:
    """Prevents messages that are received and acknowledged but never stored."""
    base = gateway.topics.base
    reading = {
        "ts": "2026-11-27T09:12:00+08:00",
        "values": {"winding_temp_c": 71.5, "load_pct": 63.0},
        "seq": 88,
    }
    device.publish_many(
        [
            (f"{base}/device/tx-1/status", "online"),
            (f"{base}/device/fd-1/status", '{"state": "online"}'),
            (f"{base}/equipment/tx-1/reading", json.dumps(reading)),
            (f"{base}/reader/fd-1/scan", scan(seq=1, ts="2026-11-27T09:12:03+08:00")),
        ]
    )
    device.wait_for(answer(gateway, "fd-1", 1), what="the answer to fd-1 seq 1")

    with store_of(gateway) as store:
        assert store.scan_keys() == [("fd-1", 1)]
        assert store.count("readings") == 2  # one row per metric
        assert store.count("device_status") == 2
        assert store.rejected_counts() == {}


def test_duplicate_seq_is_stored_once(gateway: Gateway, device: MqttClient) -> None:
    """Prevents a QoS 1 redelivery or a reader's retransmission being stored and counted twice."""
    base = gateway.topics.base
    reading = json.dumps({"values": {"supply_temp_c": 7.0, "leak": False}, "seq": 5})
    device.publish_many(
        [
            (f"{base}/reader/fd-1/scan", scan(seq=7)),
            (f"{base}/equipment/chiller-1/reading", reading),
            (f"{base}/reader/fd-1/scan", scan(seq=7)),
            (f"{base}/equipment/chiller-1/reading", reading),
            (f"{base}/reader/mc-1/scan", scan(seq=7)),  # same seq, another reader: not a dup
            (f"{base}/reader/fd-1/scan", scan(seq=8)),
        ]
    )
    device.wait_for(answer(gateway, "fd-1", 8), what="the answer to fd-1 seq 8")

    with store_of(gateway) as store:
        assert sorted(store.scan_keys()) == [("fd-1", 7), ("fd-1", 8), ("mc-1", 7)]
        assert store.count("readings") == 2  # chiller-1 seq 5: two metrics, once
    assert gateway.counters["duplicates"] == 2


def test_scan_answer_names_the_person_and_echoes_seq(gateway: Gateway, device: MqttClient) -> None:
    """Prevents a reader beeping green for an unknown card, red for a known one, or not at all."""
    base = gateway.topics.base
    # Case and separators of an NFC UID are ignored (contract §3).
    device.publish(f"{base}/reader/fd-1/scan", scan("04:a2:24:b1:c2:33:80", seq=41))
    [known] = device.wait_for(answer(gateway, "fd-1", 41), timeout=2, what="answer to seq 41")
    device.publish(f"{base}/reader/fd-1/scan", scan(UNKNOWN_CARD, seq=42))
    [unknown] = device.wait_for(answer(gateway, "fd-1", 42), timeout=2, what="answer to seq 42")

    body = known.json()
    assert (body["seq"], body["ok"], body["person"], body["flags"]) == (41, True, "张伟", [])
    assert "前台" in body["message"]
    assert known.qos == 1
    body = unknown.json()
    assert (body["seq"], body["ok"]) == (42, False)
    assert not body["person"]
    assert body["message"]


def test_device_offline_raises_a_retained_alert_and_online_clears_it(
    mosquitto: Mosquitto, gateway: Gateway, device: MqttClient
) -> None:
    """Prevents an offline device going unnoticed, or its alert staying retained once back."""
    base = gateway.topics.base
    status = f"{base}/device/pr-1/status"
    device.publish(status, "offline", retain=True)  # what the reader's last will says
    [raised] = device.wait_for(alert_on(gateway, "device.offline", "pr-1"), what="the alert")

    record = raised.json()
    assert set(record) == ALERT_FIELDS
    assert raised.topic == gateway.topics.alert(record["id"])
    assert record["site"] == "zcity"
    assert (record["severity"], record["state"]) == ("warning", "open")
    assert (record["acknowledged_at"], record["acknowledged_by"], record["cleared_at"]) == (
        None,
        None,
        None,
    )
    assert record["message"]
    assert isinstance(record["details"], dict)
    raised_at = dt.datetime.fromisoformat(record["raised_at"])
    assert raised_at.utcoffset() == dt.timedelta(hours=8)  # the site's zone, with its offset
    assert abs(raised_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert retained(mosquitto, raised.topic) == [raised.payload]

    device.publish(status, '{"state": "online"}', retain=True)
    device.wait_for(
        lambda m: m.topic == raised.topic and m.payload == b"", what="the empty retained clear"
    )
    assert retained(mosquitto, raised.topic) == []
    with store_of(gateway) as store:
        assert record["id"] not in {alert.id for alert in store.open_alerts()}
        changes = [t["change"] for t in store.transitions() if t["alert_id"] == record["id"]]
    assert changes == ["open", "cleared"]


def test_unknown_credential_raises_an_alert(
    mosquitto: Mosquitto, gateway: Gateway, device: MqttClient
) -> None:
    """Prevents a card that belongs to nobody being presented without anyone hearing of it."""
    base = gateway.topics.base
    device.publish(f"{base}/reader/gw-1/scan", scan(UNKNOWN_CARD, seq=3))
    [raised] = device.wait_for(
        alert_on(gateway, "scan.unknown_credential", "gw-1"), what="the alert"
    )
    record = raised.json()
    assert set(record) == ALERT_FIELDS
    assert (record["severity"], record["state"]) == ("warning", "open")
    assert UNKNOWN_CARD in json.dumps(record, ensure_ascii=False)
    assert retained(mosquitto, raised.topic) == [raised.payload]
    with store_of(gateway) as store:
        assert store.scan_keys() == [("gw-1", 3)]  # the scan itself is kept too


# -- a flood of malformed messages ------------------------------------------------------------

MARKER = re.compile(r"#(\d+)#")


class Bad(NamedTuple):
    """One malformed message: where it goes, what it says, the reason code it is counted as."""

    suffix: str  # the topic after `{root}/{site}/`
    payload: bytes
    code: str
    stored_rows: int = 0  # reading rows it still stores (a partial reading keeps good metrics)


def reading(values: dict[str, Any], note: str, seq: int | None = None) -> bytes:
    """A reading payload (contract §3) carrying a marker."""
    body: dict[str, Any] = {"values": values, "note": note}
    if seq is not None:
        body["seq"] = seq
    return json.dumps(body).encode()


def malformed(i: int) -> Bad:
    """The `i`-th malformed message: many kinds in turn, each refused once with one reason.

    Where the payload can carry it, `#i#` marks the message, so its refusal can be told apart.
    """
    m = f"#{i}#"
    b = m.encode()
    kinds = [
        Bad("reader/fd-1/scan", b'{"credential": "04A2", "note": "' + b, "bad_json"),
        Bad("equipment/tx-1/reading", b'{"n": "%b", "values": {"load_pct": NaN}}' % b, "bad_json"),
        Bad("reader/fd-1/scan", json.dumps([m]).encode(), "bad_json"),
        Bad("reader/fd-1/scan", b'{"n": "%b", "x": ' % b + b"[" * 50_000, "bad_json"),
        Bad("reader/fd-1/scan", scan(4660, note=m), "bad_field"),
        Bad("reader/fd-1/scan", scan(seq=m), "bad_field"),
        Bad("reader/fd-1/scan", scan(seq=1.5, note=m), "bad_field"),
        Bad("reader/fd-1/scan", scan(seq=-1, note=m), "bad_field"),
        Bad("reader/fd-1/scan", scan(ts=f"yesterday {m}"), "bad_field"),
        Bad("reader/fd-1/scan", scan(ts=True, note=m), "bad_field"),
        Bad("reader/fd-1/scan", scan(ts=1e20, note=m), "bad_field"),
        Bad("reader/fd-1/scan", scan(ts=10**400, note=m), "bad_field"),  # beyond a float
        Bad("reader/fd-1/scan", scan(method="rfid", note=m), "bad_field"),
        Bad("reader/fd-1/scan", scan(method=None, note=m), "bad_field"),
        Bad("reader/fd-1/scan", scan(f"ZZ-{m}"), "bad_field"),  # an NFC UID is hex
        Bad("equipment/tx-1/reading", json.dumps({"values": [1], "n": m}).encode(), "bad_field"),
        Bad("equipment/chiller-1/reading", reading({"supply_temp_c": "cold"}, m), "bad_field"),
        Bad("equipment/tx-1/reading", reading({"load_pct": True}, m), "bad_field"),
        Bad("equipment/chiller-1/reading", reading({"leak": 2}, m), "bad_field"),
        Bad(
            "equipment/tx-1/reading", b'{"n": "%b", "values": {"load_pct": 1e400}}' % b, "bad_field"
        ),
        Bad("equipment/tx-1/reading", reading({"load_pct": 10**400}, m), "bad_field"),
        Bad("device/fd-1/status", f"maybe {m}".encode(), "bad_field"),
        Bad(f"reader/zz-{i}/scan", scan(note=m), "unknown_reader"),
        Bad(f"equipment/zz-{i}/reading", reading({"load_pct": 1.0}, m), "unknown_equipment"),
        Bad(f"device/zz-{i}/status", b"offline", "unknown_device"),
        Bad("equipment/tx-1/reading", reading({f"bogus_{i}": 1.0}, m), "unknown_metric"),
        Bad(
            "equipment/tx-1/reading",
            reading({"load_pct": 50.0, "bogus": 1.0}, m, seq=i),
            "unknown_metric",
            stored_rows=1,
        ),
        Bad("reader/fd-1/scan", scan(note=m, pad="x" * 70_000), "too_large"),
        Bad("reader/fd-1/scan", b"", "empty"),
        Bad("equipment/tx-1/reading", b"", "empty"),
        Bad("reader/fd-1/scan", b + b"\xff\xfe\x80\x00\xc3(", "not_utf8"),
        Bad("reader/fd-1/scann", scan(note=m), "bad_topic"),
        Bad("equipment/tx-1/readings", reading({"load_pct": 1.0}, m), "bad_topic"),
        Bad("device/fd-1/state", b"offline", "bad_topic"),
        Bad("reader/FD-1/scan", scan(note=m), "bad_topic"),
    ]
    return kinds[i % len(kinds)]


def refusal_key(topic: str, payload: str) -> tuple[str, str | None]:
    """What tells one refused message from another: its topic and its marker, if any."""
    found = MARKER.search(payload)
    return topic, None if found is None else found.group(1)


def test_a_flood_of_malformed_messages_is_refused_one_by_one(
    gateway: Gateway, device: MqttClient
) -> None:
    """Prevents a bad payload crashing or stalling the gateway, being dropped silently, or
    taking valid scans down with it; every refusal is published once and counted."""
    base = gateway.topics.base
    bad_count, every = 1000, 10
    outgoing: list[tuple[str, bytes]] = []
    expected: Counter[tuple[str, str | None]] = Counter()
    codes: Counter[str] = Counter()
    valid_seqs: list[int] = []
    reading_rows = 0
    for i in range(bad_count):
        if i % every == 0:
            valid_seqs.append(i)
            outgoing.append((f"{base}/reader/gr-1/scan", scan(seq=i)))
        bad = malformed(i)
        topic = f"{base}/{bad.suffix}"
        outgoing.append((topic, bad.payload))
        expected[refusal_key(topic, bad.payload[:512].decode("utf-8", errors="replace"))] += 1
        codes[bad.code] += 1
        reading_rows += bad.stored_rows
    assert len(codes) == 10  # every kind of reason is exercised

    device.publish_many(outgoing)

    def is_refusal(message: Received) -> bool:
        return message.topic == gateway.topics.rejected

    device.wait_for(is_refusal, count=bad_count, timeout=30, what="a refusal")
    device.wait_for(
        lambda m: m.topic == gateway.topics.ack("gr-1"),
        count=len(valid_seqs),
        timeout=30,
        what="an answer to a valid scan among the bad ones",
    )
    # Refusals go out in order: once this last one is back, no earlier one is still on its way.
    device.publish(f"{base}/reader/fd-1/scann", b"last #-1#")
    device.wait_for(lambda m: is_refusal(m) and b"last" in m.payload, what="the last refusal")

    refusals = [m.json() for m in device.received if is_refusal(m)][:-1]
    assert all(set(r) == {"topic", "reason", "payload"} and r["reason"] for r in refusals)
    assert Counter(refusal_key(r["topic"], r["payload"]) for r in refusals) == expected
    assert max(len(r["payload"]) for r in refusals) <= 512  # cut to 512 bytes (§2)
    answers = [m.json() for m in device.received if m.topic == gateway.topics.ack("gr-1")]
    assert sorted(a["seq"] for a in answers) == valid_seqs
    assert all(a["ok"] for a in answers)

    with store_of(gateway) as store:
        assert store.rejected_counts() == {**codes, "bad_topic": codes["bad_topic"] + 1}
        assert store.count("rejected") == bad_count + 1
        assert sorted(store.scan_keys()) == [("gr-1", s) for s in valid_seqs]
        assert store.count("readings") == reading_rows
        assert store.count("device_status") == 0

    # Still running: connected, and a new scan is answered as usual.
    assert gateway.link.connected.is_set()
    device.publish(f"{base}/reader/fd-1/scan", scan(seq=5000))
    [after] = device.wait_for(answer(gateway, "fd-1", 5000), timeout=5, what="a later answer")
    assert after.json()["ok"] is True


def test_a_batch_that_cannot_be_stored_is_retried_not_lost(
    gateway: Gateway, device: MqttClient
) -> None:
    """Prevents a failed batch (here: the store locked by another program) from being dropped:
    the broker would not redeliver it on the same connection, so the gateway must retry it."""
    locker = sqlite3.connect(gateway.store_path, timeout=1, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # a real lock: every write of the gateway now fails
        device.publish(gateway.topics.scan("fd-1"), scan(seq=71))
        time.sleep(7)  # longer than the store's busy timeout (5 s): at least one batch failed
        assert not [m for m in device.received if answer(gateway, "fd-1", 71)(m)]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    (reply,) = device.wait_for(answer(gateway, "fd-1", 71), timeout=15, what="the answer")
    assert reply.json()["ok"] is True
    with store_of(gateway) as store:
        assert store.scan_keys().count(("fd-1", 71)) == 1
