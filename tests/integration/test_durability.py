"""Crash the gateway process (SIGKILL) under load: nothing the broker accepted is lost or doubled.

The gateway keeps a persistent session under a fixed client id and acknowledges a message to
the broker only after its store has committed it (contract §2, app.py). So when it dies, the
broker still holds every message it had not acknowledged and redelivers them to the restarted
gateway (MQTT 3.1.1 §4.4); what was committed but not yet acknowledged comes again and must be
recognised as a duplicate by its `(reader, seq)` (§3).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.store.sqlite import SqliteStore
from tests.support.gateway import GatewayProcess, count_rows, unique_root, wait_until
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient

pytestmark = pytest.mark.integration

TOTAL = 3000
READERS = ("fd-1", "mc-1", "ge-1", "gw-1", "mh-1", "gr-1", "gr-2", "pr-1", "hv-1")
ZHANG_WEI = "04A224B1C23380"
CATCH_UP_SECONDS = 30.0
IDLE_SECONDS = 3.0  # no new row for this long: the gateway has nothing left to store

Key = tuple[str, int]


def load(count: int) -> list[tuple[Key, bytes]]:
    """`count` scans spread over every reader, each reader's seq counting up from 1."""
    out: list[tuple[Key, bytes]] = []
    for n in range(count):
        reader, seq = READERS[n % len(READERS)], n // len(READERS) + 1
        body = {"credential": ZHANG_WEI, "method": "nfc", "seq": seq}
        out.append(((reader, seq), json.dumps(body).encode()))
    return out


class Publisher:
    """Publishes a load at full speed from its own thread; knows which messages got a PUBACK."""

    def __init__(self, client: MqttClient, base: str, load: list[tuple[Key, bytes]]) -> None:
        self._client = client
        self._base = base
        self._load = load
        self._infos: list[tuple[Key, mqtt.MQTTMessageInfo]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="load-publisher", daemon=True)

    def start(self) -> None:
        """Begin publishing."""
        self._thread.start()

    def acknowledged(self) -> list[Key]:
        """The keys of the messages the broker has acknowledged so far."""
        with self._lock:
            infos = list(self._infos)
        return [key for key, info in infos if info.is_published()]

    def finish(self, timeout: float) -> list[Key]:
        """Wait for every PUBACK; return the keys the broker acknowledged."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the publisher did not finish queueing its load"
        with self._lock:
            infos = list(self._infos)
        self._client.wait_published([info for _, info in infos], timeout)
        return [key for key, _ in infos]

    def _run(self) -> None:
        for key, payload in self._load:
            info = self._client.publish_nowait(f"{self._base}/reader/{key[0]}/scan", payload)
            with self._lock:
                self._infos.append((key, info))


@pytest.fixture
def gateway(fresh_mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    """`patrol-gateway run` on a broker of its own, online; killed at the end if still running."""
    with GatewayProcess(fresh_mosquitto.url, tmp_path / "data", root=unique_root()) as process:
        yield process


def settle(gateway: GatewayProcess, total: int) -> None:
    """Wait until the store holds `total` scans, or stops growing (the caller says what is
    missing), or CATCH_UP_SECONDS pass."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = count_rows(gateway.store_path, "scans")
        if count >= total:
            return
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > IDLE_SECONDS:
            return
        time.sleep(0.05)


def stored_keys(gateway: GatewayProcess) -> list[Key]:
    """Every (reader, seq) in the store, one entry per stored row."""
    with closing(SqliteStore(gateway.store_path)) as store:
        return [(reader, seq) for reader, seq in store.scan_keys() if seq is not None]


def assert_exactly_once(published: list[Key], stored: list[Key]) -> None:
    """Every published key is stored, once, and nothing else is."""
    doubled = sorted(key for key, n in Counter(stored).items() if n > 1)
    lost = sorted(set(published) - set(stored))
    assert (lost[:10], doubled[:10]) == ([], []), f"{len(lost)} lost, {len(doubled)} doubled"
    assert sorted(stored) == sorted(published)


def test_kill_9_under_load_loses_and_doubles_nothing(
    fresh_mosquitto: Mosquitto, gateway: GatewayProcess
) -> None:
    """Prevents acknowledging to the broker before the store commits (loss on a crash), and
    storing a redelivered message twice after the restart."""
    scans = load(TOTAL)
    with MqttClient(
        fresh_mosquitto.url, f"load-{uuid.uuid4().hex[:8]}", timeout=30, max_inflight=100
    ) as pub:
        pub.connect()
        publisher = Publisher(pub, gateway.topics.base, scans)
        publisher.start()
        wait_until(
            lambda: len(publisher.acknowledged()),
            lambda n: n >= TOTAL // 3,
            timeout=10,
            what=f"{TOTAL // 3} scans acknowledged by the broker",
        )
        gateway.kill()
        at_kill = count_rows(gateway.store_path, "scans")
        gateway.start()  # same --data, same client id: the persistent session resumes
        published = publisher.finish(timeout=30)

    assert len(published) == TOTAL
    settle(gateway, TOTAL)
    assert gateway.stop() == 0
    assert_exactly_once(published, stored_keys(gateway))
    assert at_kill < TOTAL, "the kill came too late to test anything"


def test_kill_9_keeps_every_answered_scan(
    fresh_mosquitto: Mosquitto, gateway: GatewayProcess
) -> None:
    """Prevents a reader beeping green (the scan answer) for a scan a crash then loses."""
    base = gateway.topics.base
    scans = load(TOTAL)
    with (
        MqttClient(fresh_mosquitto.url, f"reader-{uuid.uuid4().hex[:8]}") as readers,
        MqttClient(
            fresh_mosquitto.url, f"load-{uuid.uuid4().hex[:8]}", timeout=30, max_inflight=100
        ) as pub,
    ):
        readers.connect()
        readers.subscribe(f"{base}/reader/+/ack")
        pub.connect()
        publisher = Publisher(pub, base, scans)
        publisher.start()
        wait_until(
            lambda: len(publisher.acknowledged()),
            lambda n: n >= TOTAL // 3,
            timeout=10,
            what=f"{TOTAL // 3} scans acknowledged by the broker",
        )
        # On a loaded machine the gateway may lag the publisher: kill it once it has answered
        # some (the check below needs answered scans), while the rest are still in flight.
        wait_until(
            lambda: len(readers.received),
            lambda n: n > 0,
            timeout=20,
            what="a first scan answer",
        )
        gateway.kill()
        # Whatever answers arrive, even late, were published before the kill, after a commit.
        readers.barrier()
        answered = {(m.topic.split("/")[-2], m.json()["seq"]) for m in readers.received}
        stored_at_kill = stored_keys(gateway)
        assert answered, "no scan was answered before the kill: nothing to check"
        assert answered <= set(stored_at_kill), "answered, then lost in the crash"
        assert len(stored_at_kill) < TOTAL, "the kill came too late to test anything"

        gateway.start()
        published = publisher.finish(timeout=30)
        settle(gateway, TOTAL)
    assert gateway.stop() == 0
    assert_exactly_once(published, stored_keys(gateway))
