"""What `patrol-gateway run` says and leaves behind on the broker (issue 8 items 10 and 18)."""

from __future__ import annotations

from pathlib import Path

from gateway import payloads
from tests.support.gateway import GatewayProcess, unique_root, wait_until
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient


def retained(url: str, topic_filter: str) -> dict[str, bytes]:
    """The retained messages a fresh subscriber to `topic_filter` receives now."""
    with MqttClient(url) as client:
        client.connect()
        client.subscribe(topic_filter)
        client.barrier()
        return {m.topic: m.payload for m in client.received if m.retain and m.payload}


def test_stale_retained_alerts_of_another_store_are_cleared_at_start(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Issue 8 item 10: a gateway started with a new --data on a broker that still holds another
    store's `alert/{id}` topics must clear them, and keep its own open alerts."""
    root = unique_root()
    with GatewayProcess(mosquitto.url, tmp_path / "first", root=root) as first:
        with MqttClient(mosquitto.url) as device:
            device.connect()
            device.publish(first.topics.device_status("gr-2"), "offline", retain=True)
        alerts = wait_until(
            lambda: retained(mosquitto.url, f"{root}/zcity/alert/+"),
            lambda found: len(found) == 1,
            15,
            "the first store's retained alert",
        )
        first.stop()
    (stale,) = alerts
    # The device is back (its retained status says so, so the new store raises nothing); the
    # alert on the broker belongs to a store the new gateway has never seen.
    with MqttClient(mosquitto.url) as device:
        device.connect()
        device.publish(first.topics.device_status("gr-2"), "online", retain=True)
    with GatewayProcess(mosquitto.url, tmp_path / "second", root=root):
        wait_until(
            lambda: retained(mosquitto.url, f"{root}/zcity/alert/+"),
            lambda found: stale not in found,
            15,
            "the stale retained alert to be cleared",
        )


def test_run_prints_transitions_and_refusals_in_the_site_zone(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Issue 8 item 18: `run` says each alert transition and each refusal in one readable line,
    with times in the site's zone, and ends with a tidy summary (no Python dict, no `+=`)."""
    root = unique_root()
    with GatewayProcess(mosquitto.url, tmp_path / "data", root=root) as gateway:
        with MqttClient(mosquitto.url) as device:
            device.connect()
            device.publish(gateway.topics.scan("fd-1"), payloads.scan("FFFF0001", "nfc", seq=1))
            device.publish(gateway.topics.scan("nope"), b"{}")
            device.publish(gateway.topics.device_status("gr-2"), "offline", retain=True)
            device.publish(gateway.topics.device_status("gr-2"), "online", retain=True)
        log = wait_until(
            gateway.log_tail,
            lambda text: "device.offline gr-2" in text and "cleared" in text,
            15,
            "the transitions on the console",
        )
        assert gateway.stop() == 0
    log = gateway.log_tail(200)
    opened = next(line for line in log.splitlines() if "opened scan.unknown_credential" in line)
    assert "fd-1" in opened and "[warning]" in opened
    refused = next(line for line in log.splitlines() if "refused" in line and "nope" in line)
    assert "未知读卡器" in refused  # the reason, Chinese first
    stopped = next(line for line in log.splitlines() if "已停止 / stopped" in line)
    assert "received" in stopped and "{" not in stopped and "+=" not in log
    # Times on the console lines are the site's (Asia/Shanghai), as HH:MM:SS before the mark.
    assert opened.split("gateway.console: ")[1][:8].count(":") == 2
