"""The shipped `deploy/mosquitto.conf` keeps its promises (issue 8 item 14)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto.conf"
# What the test harness decides itself (its own port, folder and log).
HARNESS = ("listener", "persistence_location", "log_dest", "allow_anonymous", "persistence ")


def shipped_settings() -> str:
    """deploy/mosquitto.conf without what the test harness sets for itself."""
    lines = DEPLOY.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and not line.startswith(("#", *HARNESS))]
    return "\n".join(kept) + "\n"


@pytest.fixture
def shipped_broker() -> Iterator[Mosquitto]:
    with Mosquitto(extra_config=shipped_settings()) as broker:
        yield broker


def test_the_shipped_config_sets_what_the_docs_promise() -> None:
    """Prevents the 30-minute autosave and the unbounded or 1000-message queue coming back."""
    settings = dict(line.split(maxsplit=1) for line in shipped_settings().splitlines())
    assert settings["autosave_on_changes"] == "true" and settings["autosave_interval"] == "1"
    assert settings["message_size_limit"] == "65536"
    assert int(settings["max_queued_messages"]) >= 100_000
    assert int(settings["max_queued_bytes"]) > 0


def test_queued_scans_survive_a_broker_kill(shipped_broker: Mosquitto) -> None:
    """Prevents the loss seen with the old config: 2,000 of 2,000 queued scans gone after a
    Mosquitto `kill -9`, because it saved to disk only every 30 minutes."""
    topic = "cfg/zcity/reader/fd-1/scan"
    with MqttClient(shipped_broker.url, "gateway", clean_session=False) as gateway:
        gateway.connect()
        gateway.subscribe(topic)
    with MqttClient(shipped_broker.url, timeout=30) as reader:
        reader.connect()
        reader.publish_many([(topic, f'{{"seq": {i}}}') for i in range(2000)])
    shipped_broker.kill()
    shipped_broker.start()
    with MqttClient(shipped_broker.url, "gateway", clean_session=False, timeout=30) as gateway:
        assert gateway.connect()  # the session is still there
        got = gateway.wait_for(lambda m: m.topic == topic, count=2000)
    assert sorted({m.json()["seq"] for m in got}) == list(range(2000))


def test_an_oversize_message_is_stopped_at_the_broker(shipped_broker: Mosquitto) -> None:
    """Prevents megabyte payloads reaching the gateway at all when the broker is ours."""
    topic = "cfg/zcity/equipment/tx-1/reading"
    with MqttClient(shipped_broker.url) as gateway, MqttClient(shipped_broker.url) as device:
        gateway.connect()
        gateway.subscribe(topic)
        device.connect()
        device.publish_nowait(topic, b"x" * 70_000, qos=0)
        device.publish(topic, b"small")
        got = gateway.wait_for(lambda m: m.topic == topic)
    assert [m.payload for m in got] == [b"small"]
