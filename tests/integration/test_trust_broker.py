"""Only a site's own devices may speak for it (issue 13 item 1): every attack of the issue
tried against a real Mosquitto started with the config `patrol-gateway broker-config` wrote,
and refused by the broker, while the legitimate devices keep working."""

from __future__ import annotations

import csv
import pathlib
from collections.abc import Iterator

import pytest

from gateway.config import Site, load_site
from gateway.trust.broker import Listeners, write_broker_config
from tests.support.mosquitto import HOST, Mosquitto
from tests.support.mqtt import MqttClient

SITE_FILE = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "sites" / "zcity.yaml"
BASE = "estate/zcity"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_FILE)


@pytest.fixture(scope="module")
def broker_dir(tmp_path_factory: pytest.TempPathFactory, site: Site) -> pathlib.Path:
    return tmp_path_factory.mktemp("broker")


@pytest.fixture(scope="module")
def broker(site: Site, broker_dir: pathlib.Path) -> Iterator[Mosquitto]:
    def generated(port: int, folder: pathlib.Path) -> str:
        listeners = Listeners(port=port, bind=HOST, persistence_location=f"{folder}/")
        write_broker_config(site, broker_dir, "estate", listeners)
        return (broker_dir / "mosquitto.conf").read_text(encoding="utf-8")

    with Mosquitto(config=generated) as running:
        yield running


@pytest.fixture(scope="module")
def passwords(broker: Mosquitto, broker_dir: pathlib.Path) -> dict[str, str]:
    with (broker_dir / "credentials.csv").open(encoding="utf-8", newline="") as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f)}


def client(broker: Mosquitto, passwords: dict[str, str], user: str) -> MqttClient:
    c = MqttClient(broker.url, username=user, password=passwords[user])
    c.connect()
    return c


@pytest.fixture
def gateway(broker: Mosquitto, passwords: dict[str, str]) -> Iterator[MqttClient]:
    with client(broker, passwords, "zcity.gateway") as gw:
        gw.subscribe(f"{BASE}/#")
        yield gw


def attack_fails(gateway: MqttClient, attacker: MqttClient, topic: str, payload: bytes) -> None:
    """The attacker's publication never reaches the gateway; a legitimate one after it does."""
    attacker.publish(topic, payload)
    marker = f"{BASE}/equipment/tx-1/reading"
    gateway.publish(marker, b"marker")  # the gateway may publish anything of its site
    got = gateway.wait_for(lambda m: m.payload == b"marker")
    assert got
    assert not [m for m in gateway.received if m.topic == topic and m.payload == payload]


def test_anonymous_clients_are_refused(broker: Mosquitto) -> None:
    """Prevents the shipped setup's open door: anyone on the network connecting anonymously."""
    with MqttClient(broker.url) as anonymous, pytest.raises(ConnectionError, match="ot auth"):
        anonymous.connect()


def test_a_wrong_password_is_refused(broker: Mosquitto) -> None:
    """Prevents a known username alone being enough."""
    bad = MqttClient(broker.url, username="zcity.reader.fd-1", password="guess")
    with bad, pytest.raises(ConnectionError):
        bad.connect()


def test_legitimate_devices_keep_working(
    broker: Mosquitto, passwords: dict[str, str], gateway: MqttClient
) -> None:
    """Prevents an ACL so tight that readers, meters and displays stop working."""
    with (
        client(broker, passwords, "zcity.reader.fd-1") as reader,
        client(broker, passwords, "zcity.equipment.tx-1") as meter,
        client(broker, passwords, "zcity.display") as display,
    ):
        reader.subscribe(f"{BASE}/reader/fd-1/ack")
        display.subscribe(f"{BASE}/alert/+", f"{BASE}/gateway/status")
        reader.publish(f"{BASE}/reader/fd-1/scan", b'{"credential": "04A2", "method": "nfc"}')
        reader.publish(f"{BASE}/device/fd-1/status", b"online", retain=True)
        meter.publish(f"{BASE}/equipment/tx-1/reading", b'{"values": {"load_pct": 50}}')
        gateway.wait_for(lambda m: m.topic.endswith("fd-1/scan"))
        gateway.wait_for(lambda m: m.topic.endswith("device/fd-1/status"))
        gateway.wait_for(lambda m: m.topic.endswith("tx-1/reading"))
        gateway.publish(f"{BASE}/reader/fd-1/ack", b'{"ok": true}')
        gateway.publish(f"{BASE}/alert/a1", b'{"id": "a1"}', retain=True)
        reader.wait_for(lambda m: m.topic.endswith("fd-1/ack"))
        display.wait_for(lambda m: m.topic.endswith("alert/a1"))
        gateway.publish(f"{BASE}/alert/a1", b"", retain=True)


def test_a_reading_as_tx1_from_another_identity_is_refused(
    broker: Mosquitto, passwords: dict[str, str], gateway: MqttClient
) -> None:
    """The attack that closed a real overload alert: a reading posted as tx-1 by someone else
    (another meter, a reader, a display)."""
    topic = f"{BASE}/equipment/tx-1/reading"
    for user in ("zcity.equipment.chiller-1", "zcity.reader.fd-1", "zcity.display"):
        with client(broker, passwords, user) as attacker:
            attack_fails(
                gateway, attacker, topic, b'{"values": {"load_pct": 1}, "x": "%s"}' % user.encode()
            )


def test_an_empty_retained_alert_from_a_display_is_refused(
    broker: Mosquitto, passwords: dict[str, str], gateway: MqttClient
) -> None:
    """The attack that removed an open alert from every display: an empty retained message
    on alert/{id}. The broker keeps the gateway's record."""
    topic = f"{BASE}/alert/a-open"
    gateway.publish(topic, b'{"id": "a-open", "state": "open"}', retain=True)
    with client(broker, passwords, "zcity.display") as display:
        display.publish(topic, b"", retain=True)
    with client(broker, passwords, "zcity.display") as later:
        later.subscribe(topic)
        (kept,) = later.wait_for(lambda m: m.topic == topic)
    assert kept.payload == b'{"id": "a-open", "state": "open"}'
    gateway.publish(topic, b"", retain=True)


def test_a_fake_ack_is_refused(
    broker: Mosquitto, passwords: dict[str, str], gateway: MqttClient
) -> None:
    """The attack of a green answer on reader/gr-1/ack: from another reader, from gr-1 itself,
    from a display. gr-1 hears only the gateway."""
    topic = f"{BASE}/reader/gr-1/ack"
    with client(broker, passwords, "zcity.reader.gr-1") as reader:
        reader.subscribe(topic)
        for user in ("zcity.reader.gr-2", "zcity.reader.gr-1", "zcity.display"):
            with client(broker, passwords, user) as attacker:
                attacker.publish(topic, b'{"ok": true, "fake": "%s"}' % user.encode())
        gateway.publish(topic, b'{"ok": true}')
        got = reader.wait_for(lambda m: m.topic == topic)
        reader.barrier()
        assert [m.payload for m in reader.received if m.topic == topic] == [b'{"ok": true}']
        assert got


def test_a_reader_cannot_read_another_readers_ack(
    broker: Mosquitto, passwords: dict[str, str], gateway: MqttClient
) -> None:
    """Prevents a reader learning who signed in elsewhere (names are in the answers)."""
    with client(broker, passwords, "zcity.reader.gr-2") as other:
        other.subscribe(f"{BASE}/#")
        gateway.publish(f"{BASE}/reader/gr-1/ack", b'{"ok": true, "person": "x"}')
        gateway.publish(f"{BASE}/reader/gr-2/ack", b'{"ok": true}')
        other.wait_for(lambda m: m.topic.endswith("gr-2/ack"))
        assert not [m for m in other.received if m.topic.endswith("gr-1/ack")]


def test_offline_on_gateway_status_is_refused(
    broker: Mosquitto, passwords: dict[str, str], gateway: MqttClient
) -> None:
    """The attack of `offline` on gateway/status: only the gateway (and its will) says it."""
    topic = f"{BASE}/gateway/status"
    gateway.publish(topic, b"online", retain=True)
    for user in ("zcity.reader.fd-1", "zcity.equipment.tx-1", "zcity.display"):
        with client(broker, passwords, user) as attacker:
            attacker.publish(topic, b"offline", retain=True)
    with client(broker, passwords, "zcity.display") as display:
        display.subscribe(topic)
        (status,) = display.wait_for(lambda m: m.topic == topic)
    assert status.payload == b"online"


def test_scans_as_another_reader_are_refused(
    broker: Mosquitto, passwords: dict[str, str], gateway: MqttClient
) -> None:
    """The attack of scans posted as any reader: fd-1's topic is fd-1's alone, and equipment
    and displays post no scans at all."""
    topic = f"{BASE}/reader/fd-1/scan"
    for user in ("zcity.reader.gr-1", "zcity.equipment.tx-1", "zcity.display"):
        with client(broker, passwords, user) as attacker:
            body = b'{"credential": "04A224B1C23380", "method": "nfc", "by": "%s"}' % user.encode()
            attack_fails(gateway, attacker, topic, body)
    with client(broker, passwords, "zcity.reader.gr-1") as reader:
        attack_fails(gateway, reader, f"{BASE}/device/fd-1/status", b"offline")


def test_a_rerun_keeps_every_secret(site: Site, tmp_path: pathlib.Path) -> None:
    """Prevents a second `broker-config` locking out every device already configured."""
    first = {u.username: u.password for u in write_broker_config(site, tmp_path)}
    again = {u.username: u.password for u in write_broker_config(site, tmp_path)}
    assert first == again and len(set(first.values())) == len(first)
    assert (tmp_path / "credentials.csv").stat().st_mode & 0o077 == 0
    assert (tmp_path / "gateway.password").read_text().strip() == first["zcity.gateway"]


def test_the_gateway_runs_on_the_generated_broker_and_a_foreign_tx1_reading_closes_nothing(
    broker: Mosquitto, passwords: dict[str, str], site: Site, tmp_path: pathlib.Path
) -> None:
    """End to end, the first attack of issue 13: a real overload alert opened by tx-1 must
    stay open when another identity posts a reading as tx-1 that is back in range; the
    gateway itself connects with its generated credentials and answers the readers."""
    from gateway.app import Gateway
    from gateway.ingest.mqtt import BrokerUrl
    from tests.support.gateway import wait_until

    url = BrokerUrl(broker.host, broker.port, False, "zcity.gateway", passwords["zcity.gateway"])
    gateway = Gateway(site, url, tmp_path, "estate", client_id="patrol-gateway-zcity-trust")
    with (
        client(broker, passwords, "zcity.display") as display,
        client(broker, passwords, "zcity.equipment.tx-1") as meter,
        client(broker, passwords, "zcity.equipment.chiller-1") as attacker,
        client(broker, passwords, "zcity.reader.fd-1") as reader,
    ):
        display.subscribe(f"{BASE}/alert/+", f"{BASE}/gateway/status")
        reader.subscribe(f"{BASE}/reader/fd-1/ack")
        gateway.start()
        try:
            display.wait_for(
                lambda m: m.topic.endswith("gateway/status") and m.payload == b"online"
            )
            meter.publish(f"{BASE}/equipment/tx-1/reading", b'{"values": {"load_pct": 99}}')
            (opened,) = display.wait_for(lambda m: "/alert/" in m.topic and b"tx-1" in m.payload)
            attacker.publish(f"{BASE}/equipment/tx-1/reading", b'{"values": {"load_pct": 10}}')
            reader.publish(
                f"{BASE}/reader/fd-1/scan",
                b'{"credential": "04A224B1C23380", "method": "nfc", "seq": 1}',
            )
            (answer,) = reader.wait_for(lambda m: m.topic.endswith("fd-1/ack"))
            assert answer.json()["ok"] is True
            counters = wait_until(
                lambda: gateway.counters, lambda c: c.get("reading", 0) >= 1, 5, "the reading"
            )
            assert counters["reading"] == 1  # the attacker's never reached the gateway
            alert_id = opened.topic.rsplit("/", 1)[-1]
            stored = gateway.pipeline.book.by_id(alert_id)
            assert stored is not None and stored.state == "open"
        finally:
            gateway.stop()
