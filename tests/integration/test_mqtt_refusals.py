"""What reaches the real gateway over MQTT and is not an input is refused, said and counted
(issue 8 items 15 and 16), while valid traffic around it is stored and answered."""

from __future__ import annotations

from pathlib import Path

from tests.support.gateway import running_gateway, unique_root
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient

SCAN = b'{"credential": "04A224B1C23380", "method": "nfc", "seq": %d}'


def test_retained_and_stray_inputs_are_refused_with_a_reason(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Prevents a retained scan stored again at every reconnect, and messages on topics outside
    the old three subscriptions (trailing '/', extra level) vanishing without a refusal."""
    with (
        running_gateway(mosquitto.url, tmp_path, root=unique_root()) as gateway,
        MqttClient(mosquitto.url) as device,
    ):
        base = gateway.topics.base
        device.connect()
        device.subscribe(gateway.topics.rejected, f"{base}/reader/+/ack")
        stray = [f"{base}/reader/fd-1/scan/", f"{base}/reader/fd-1/scan/x", f"{base}/what"]
        device.publish(f"{base}/reader/fd-1/scan", SCAN % 1, retain=True)
        device.publish_many([(t, SCAN % 2) for t in stray])
        device.publish(f"{base}/reader/fd-1/scan", SCAN % 3)
        refused = device.wait_for(lambda m: m.topic == gateway.topics.rejected, count=4)
        (answer,) = device.wait_for(lambda m: m.topic.endswith("/ack"))
        counted = gateway.counters["rejected_retained"]
        device.publish(f"{base}/reader/fd-1/scan", b"", retain=True)  # clear the retained one
    reasons = {m.json()["topic"]: m.json()["reason"] for m in refused}
    assert reasons[f"{base}/reader/fd-1/scan"].startswith("保留消息 / a scan must not be retained")
    for topic in stray:
        assert reasons[topic].startswith("未知主题 / ")
    assert answer.json()["seq"] == 3 and answer.json()["ok"] is True
    assert counted == 1
