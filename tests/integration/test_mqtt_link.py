"""The gateway's MQTT link while the broker is away (ingest/mqtt.py)."""

from __future__ import annotations

import datetime as dt
import queue
import time

from gateway.events import Message
from gateway.ingest.mqtt import BrokerUrl, MqttLink
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient


def test_publication_made_while_disconnected_is_confirmed_after_reconnect(
    fresh_mosquitto: Mosquitto,
) -> None:
    """paho leaves rc=NO_CONN on a queued QoS 1 message; the outbox must still see its PUBACK."""
    inbox: queue.Queue[Message] = queue.Queue(10)
    link = MqttLink(
        BrokerUrl.parse(fresh_mosquitto.url),
        "link-test",
        ["link-test/in/#"],
        "link-test/status",
        inbox,
        lambda: dt.datetime.now(dt.UTC),
    )
    link.start()
    try:
        assert link.connected.wait(10)
        fresh_mosquitto.stop()
        deadline = time.monotonic() + 10
        while link.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not link.connected.is_set()
        confirmed = link.publish("link-test/alert/x", b'{"state": "open"}', qos=1, retain=True)
        assert confirmed is not None
        assert confirmed() is False  # queued, not yet confirmed, and no exception
        fresh_mosquitto.start()
        deadline = time.monotonic() + 20
        while not confirmed() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert confirmed()
    finally:
        link.stop()
    with MqttClient(fresh_mosquitto.url) as reader:
        reader.connect()
        reader.subscribe("link-test/alert/x")
        (message,) = reader.wait_for(lambda m: m.topic == "link-test/alert/x")
    assert message.payload == b'{"state": "open"}' and message.retain
