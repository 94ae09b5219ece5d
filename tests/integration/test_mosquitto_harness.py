"""The test broker itself: if these fail, no other integration test can be trusted."""

from __future__ import annotations

import socket

import pytest

from tests.support.mosquitto import Mosquitto, MosquittoError
from tests.support.mqtt import MqttClient, Received

pytestmark = pytest.mark.integration


def _any(_: Received) -> bool:
    return True


def test_qos1_round_trip(mosquitto: Mosquitto) -> None:
    """Prevents integration tests running against a broker that is not reachable or not ours."""
    with MqttClient(mosquitto.url) as probe:
        probe.connect()
        probe.subscribe("harness/round-trip", qos=1)
        probe.publish("harness/round-trip", b"hello", qos=1)
        [message] = probe.wait_for(_any)
    assert (message.topic, message.payload, message.qos) == ("harness/round-trip", b"hello", 1)
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"


def test_retained_message_survives_restart(fresh_mosquitto: Mosquitto) -> None:
    """Prevents restart tests passing on a broker without persistence (e.g. root-owned folder
    after Mosquitto drops privileges), where retained alerts would vanish on restart."""
    port = fresh_mosquitto.port
    with MqttClient(fresh_mosquitto.url) as publisher:
        publisher.connect()
        publisher.publish("harness/retained", b"kept", qos=1, retain=True)

    fresh_mosquitto.restart()

    assert fresh_mosquitto.port == port
    with MqttClient(fresh_mosquitto.url) as reader:
        reader.connect()
        reader.subscribe("harness/retained", qos=1)
        [message] = reader.wait_for(_any)
    assert (message.payload, message.retain) == (b"kept", True)


def test_persistent_session_gets_messages_sent_while_offline_across_restart(
    fresh_mosquitto: Mosquitto,
) -> None:
    """Prevents losing QoS 1 messages for an offline persistent subscriber, before and after a
    broker restart, so store-and-forward tests measure the gateway and not the harness."""
    broker = fresh_mosquitto
    with MqttClient(broker.url, "harness-persistent", clean_session=False) as sub:
        assert sub.connect() is False  # a new session
        sub.subscribe("harness/persistent/#", qos=1)

    with MqttClient(broker.url) as publisher:
        publisher.connect()
        publisher.publish("harness/persistent/before", b"1", qos=1)
    broker.restart()
    with MqttClient(broker.url) as publisher:
        publisher.connect()
        publisher.publish("harness/persistent/after", b"2", qos=1)

    with MqttClient(broker.url, "harness-persistent", clean_session=False) as sub:
        assert sub.connect() is True  # the session, with its subscription, came back
        received = sub.wait_for(_any, count=2)
    assert [(m.topic, m.payload, m.qos) for m in received] == [
        ("harness/persistent/before", b"1", 1),
        ("harness/persistent/after", b"2", 1),
    ]


def test_offline_queue_is_not_capped_at_mosquitto_default(fresh_mosquitto: Mosquitto) -> None:
    """Prevents Mosquitto's default `max_queued_messages 1000` silently dropping messages for a
    slow or offline subscriber, which a test would blame on the gateway."""
    count = 1500
    broker = fresh_mosquitto
    with MqttClient(broker.url, "harness-backlog", clean_session=False) as sub:
        sub.connect()
        sub.subscribe("harness/backlog", qos=1)

    with MqttClient(broker.url, timeout=20) as publisher:
        publisher.connect()
        publisher.publish_many([("harness/backlog", str(i).encode()) for i in range(count)])

    with MqttClient(broker.url, "harness-backlog", clean_session=False, timeout=20) as sub:
        sub.connect()
        received = sub.wait_for(_any, count=count)
    assert sorted(int(m.payload) for m in received) == list(range(count))


def test_start_on_a_taken_port_fails_with_the_broker_log(fresh_mosquitto: Mosquitto) -> None:
    """Prevents a restart whose port was taken meanwhile from hanging, or from passing by
    connecting to the other program's socket; the error must carry Mosquitto's own words."""
    fresh_mosquitto.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((fresh_mosquitto.host, fresh_mosquitto.port))
        squatter.listen()
        with pytest.raises(MosquittoError, match="Address already in use"):
            fresh_mosquitto.start()
    assert not fresh_mosquitto.running
