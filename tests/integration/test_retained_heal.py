"""Retained state heals itself (issue 13 item 2): on a broker that lets anyone publish (the
demo's, or a misconfigured one), a foreign change of alert/{id}, patrol/status or
gateway/status is undone by the gateway at once, and counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.support.gateway import running_gateway, unique_root, wait_until
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient, Received


def test_foreign_changes_of_retained_state_are_undone(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Prevents an empty retained alert/{id} removing an open alert from every display while
    the store holds it open, a fake `offline` on gateway/status, and a forged patrol/status
    standing until the next real change."""
    root = unique_root()
    with (
        running_gateway(mosquitto.url, tmp_path, root=root) as gateway,
        MqttClient(mosquitto.url, timeout=15) as watcher,
        MqttClient(mosquitto.url) as attacker,
    ):
        topics = gateway.topics
        watcher.connect()
        watcher.subscribe(f"{topics.base}/alert/+", topics.patrol_status, topics.gateway_status)
        attacker.connect()
        attacker.publish(f"{topics.base}/equipment/tx-1/reading", b'{"values": {"load_pct": 99}}')
        (opened,) = watcher.wait_for(lambda m: "/alert/" in m.topic and bool(m.payload))
        record = opened.payload
        watcher.wait_for(lambda m: m.topic == topics.patrol_status)

        def seen_after(before: set[int], what: str, match: Callable[[Received], bool]) -> Received:
            """The first message matching `match` that was not among `before` (object ids)."""
            return watcher.wait_for(lambda m: id(m) not in before and match(m), what=what)[0]

        start = {id(m) for m in watcher.received}
        attacker.publish(opened.topic, b"", retain=True)
        healed = seen_after(
            start, "the alert put back", lambda m: m.topic == opened.topic and m.payload
        )
        assert healed.payload == record

        start = {id(m) for m in watcher.received}
        attacker.publish(topics.gateway_status, b"offline", retain=True)
        seen_after(
            start,
            "online again",
            lambda m: m.topic == topics.gateway_status and m.payload == b"online",
        )

        start = {id(m) for m in watcher.received}
        attacker.publish(topics.patrol_status, b'{"forged": true}', retain=True)
        status = seen_after(
            start,
            "the patrol status again",
            lambda m: m.topic == topics.patrol_status and b"forged" not in m.payload,
        )
        assert json.loads(status.payload)["site"] == "zcity"

        counters = wait_until(
            lambda: gateway.counters,
            lambda c: c.get("mqtt_alerts_healed", 0) >= 1 and c.get("retained_healed", 0) >= 2,
            10,
            "the heals counted",
        )
        assert counters["mqtt_alerts_healed"] == 1
    with MqttClient(mosquitto.url) as late:  # what a display connecting now is told
        late.connect()
        late.subscribe(opened.topic, topics.gateway_status)
        late.barrier()
        kept = {m.topic: m.payload for m in late.received}
    assert kept[opened.topic] == record
    assert kept[topics.gateway_status] == b"offline"  # the gateway stopped cleanly since
