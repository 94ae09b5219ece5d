"""`patrol-gateway alert ack|shelve` and `incident report` against a running `patrol-gateway run`
(issue 7 "Done when", contract §6–§7): real Mosquitto, the gateway as its own process, the
commands from another process through the store's command channel."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store.sqlite import SqliteStore
from tests.support.gateway import GatewayProcess, unique_root
from tests.support.live import cli, retained, scan, transitions, wait_healthy
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient, Received

UNKNOWN_CARD = "DEADBEEF0001"


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    """`patrol-gateway run` on the example site, its own topic root and --data."""
    with GatewayProcess(mosquitto.url, tmp_path / "data", root=unique_root()) as process:
        wait_healthy(process.data)
        yield process


def raise_unknown_credential(
    broker_url: str, gateway: GatewayProcess, reader: str, seq: int = 1
) -> str:
    """Present a card that belongs to nobody at `reader`; the id of the alert it raises."""
    base = gateway.topics.base
    with MqttClient(broker_url, timeout=10) as device:
        device.connect()
        device.subscribe(f"{base}/alert/+")

        def raised(m: Received) -> bool:
            if not m.payload:
                return False
            body = m.json()
            return bool(body["rule"] == "scan.unknown_credential" and body["subject"] == reader)

        device.publish(f"{base}/reader/{reader}/scan", scan(UNKNOWN_CARD, seq))
        (alert,) = device.wait_for(raised, what=f"scan.unknown_credential at {reader}")
    return str(alert.json()["id"])


def open_ids(data: Path) -> str:
    result = cli("alert", "list", "--open", "--data", str(data))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_ack_closes_a_non_clearing_alert_for_good(
    mosquitto: Mosquitto, gateway: GatewayProcess
) -> None:
    """An acknowledged scan.unknown_credential (a rule that never clears, §5 rule 10) closes:
    its retained topic is cleared, the transition is stored with who and why, and it stays
    closed through a restart (not re-raised, not re-published, not listed open)."""
    data = str(gateway.data)
    ident = raise_unknown_credential(mosquitto.url, gateway, "gw-1")
    topic = gateway.topics.alert(ident)
    assert ident in open_ids(gateway.data)
    assert [p for _, p in retained(mosquitto.url, topic)] != []

    result = cli(
        "alert", "ack", ident, "--by", "chen-jie", "--comment", "查过了 / checked", "--data", data
    )
    assert result.exit_code == 0, result.output
    assert ident in result.stdout and "closed" in result.stdout

    assert retained(mosquitto.url, topic) == []  # a fresh subscriber sees nothing retained
    changes = transitions(gateway.store_path, ident)
    assert changes[0]["change"] == "open"
    closing = changes[-1]
    assert closing["change"] == "closed"
    assert (closing["actor"], closing["comment"]) == ("chen-jie", "查过了 / checked")
    assert closing["record"]["state"] == "closed"
    assert ident not in open_ids(gateway.data)

    again = cli("alert", "ack", ident, "--by", "chen-jie", "--data", data)
    assert again.exit_code == 1
    assert "closed" in again.stderr and ident in again.stderr

    assert gateway.stop() == 0
    gateway.start()
    wait_healthy(gateway.data)
    assert ident not in open_ids(gateway.data)
    # The restarted gateway has reconciled the broker's retained alerts with its store.
    with MqttClient(mosquitto.url, timeout=10) as device:
        device.connect()
        device.subscribe(gateway.topics.ack("fd-1"))
        device.publish(gateway.topics.scan("fd-1"), scan("04A224B1C23380", 2))
        device.wait_for(lambda m: m.json()["seq"] == 2, what="the answer after the restart")
    assert retained(mosquitto.url, topic) == []
    store = SqliteStore(gateway.store_path, readonly=True)
    try:
        alert = store.alert(ident)
        assert alert is not None and alert.state == "closed"
        assert alert.acknowledged_by == "chen-jie"
    finally:
        store.close()
    assert [t["change"] for t in transitions(gateway.store_path, ident)] == [
        t["change"] for t in changes
    ]


def test_unknown_alert_or_person_is_refused_clearly(
    mosquitto: Mosquitto, gateway: GatewayProcess
) -> None:
    """A mistyped id or person must say so and exit 1, and change nothing."""
    data = str(gateway.data)
    ident = raise_unknown_credential(mosquitto.url, gateway, "gr-2")
    before = transitions(gateway.store_path, ident)

    nobody = cli("alert", "ack", ident, "--by", "nobody", "--data", data)
    assert nobody.exit_code == 1
    assert "unknown person" in nobody.stderr and "nobody" in nobody.stderr

    missing = cli("alert", "ack", "no-such-alert", "--by", "chen-jie", "--data", data)
    assert missing.exit_code == 1
    assert "no alert with id" in missing.stderr and "no-such-alert" in missing.stderr

    assert transitions(gateway.store_path, ident) == before
    assert ident in open_ids(gateway.data)
    assert [p for _, p in retained(mosquitto.url, gateway.topics.alert(ident))] != []


def test_shelve_within_a_day_and_a_major_incident(
    mosquitto: Mosquitto, gateway: GatewayProcess
) -> None:
    """`alert shelve` takes an instant up to 24 h ahead (§6) and refuses a later one;
    `incident report --major` raises incident.major at once, retained for every subscriber."""
    data = str(gateway.data)
    ident = raise_unknown_credential(mosquitto.url, gateway, "ge-1")
    now = dt.datetime.now(dt.UTC)

    too_late = (now + dt.timedelta(hours=25)).isoformat()
    refused = cli("alert", "shelve", ident, "--by", "chen-jie", "--until", too_late, "--data", data)
    assert refused.exit_code == 1 and "24" in refused.stderr

    until = (now + dt.timedelta(hours=2)).replace(microsecond=0)
    shelved = cli(
        "alert", "shelve", ident, "--by", "chen-jie", "--until", until.isoformat(), "--data", data
    )
    assert shelved.exit_code == 0, shelved.output
    last = transitions(gateway.store_path, ident)[-1]
    assert (last["change"], last["actor"]) == ("shelved", "chen-jie")
    assert dt.datetime.fromisoformat(last["record"]["shelved_until"]) == until
    [(_, payload)] = retained(mosquitto.url, gateway.topics.alert(ident))
    assert dt.datetime.fromisoformat(json.loads(payload)["shelved_until"]) == until

    reported = cli(
        "incident",
        "report",
        "--by",
        "zhang-wei",
        "--title",
        "水管爆裂 / burst pipe",
        "--major",
        "--data",
        data,
    )
    assert reported.exit_code == 0, reported.output
    majors = [
        json.loads(p)
        for _, p in retained(mosquitto.url, f"{gateway.topics.base}/alert/+")
        if p and json.loads(p)["rule"] == "incident.major"
    ]
    assert len(majors) == 1
    assert majors[0]["state"] == "open" and majors[0]["severity"] == "critical"
    assert majors[0]["details"]["reported_by"] == "zhang-wei"
