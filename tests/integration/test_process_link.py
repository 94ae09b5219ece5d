"""The MQTT link in its own process (gateway/ingest/process.py) against a real Mosquitto.

Each test names the failure it prevents: a message acknowledged before the parent's commit, an
unbounded pile-up between the processes, a killed link process that wedges the gateway or
loses scans or publications, and a link process that outlives a killed gateway (no last will).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.events import Message
from gateway.ingest.inbox import Inbox
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.process import ProcessLink
from gateway.ingest.topics import Topics
from tests.support.gateway import (
    GatewayProcess,
    count_rows,
    running_gateway,
    unique_root,
    wait_until,
)
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient

pytestmark = pytest.mark.integration

ZHANG_WEI = "04A224B1C23380"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def process_link(url: str, topics: Topics, client_id: str, inbox: Inbox) -> Iterator[ProcessLink]:
    link = ProcessLink(BrokerUrl.parse(url), client_id, topics, inbox, now)
    link.start()
    try:
        assert link.connected.wait(10), link.health()
        yield link
    finally:
        link.stop()


def drain(inbox: Inbox, count: int, timeout: float = 10) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += inbox.get_batch(count - len(got), 0.2)
    return got


def scan(seq: int) -> bytes:
    return json.dumps({"credential": ZHANG_WEI, "method": "nfc", "seq": seq}).encode()


def test_only_what_the_parent_acknowledges_is_acknowledged_to_the_broker(
    mosquitto: Mosquitto,
) -> None:
    """Prevents ack before commit across the process boundary: the child must not PUBACK a
    message the parent has not acked (the broker would not redeliver it after a crash); and
    `stop()` must leave `offline` retained."""
    topics = Topics(unique_root(), "s1")
    client_id = f"process-ack-{topics.root}"
    with process_link(mosquitto.url, topics, client_id, Inbox(100)):
        pass  # creates the session and its subscription
    with MqttClient(mosquitto.url) as device:
        device.connect()
        device.publish(topics.scan("fd-1"), scan(1), qos=1)
        device.publish(topics.scan("fd-1"), scan(2), qos=1)
    inbox = Inbox(100)
    with process_link(mosquitto.url, topics, client_id, inbox) as link:
        first, second = drain(inbox, 2)
        assert (first.payload, second.payload) == (scan(1), scan(2))
        link.ack(first)  # the second is "not committed"
        link.publish(topics.ack("fd-1"), b"{}", 1, False)  # after the ack, on the same path
    inbox = Inbox(100)
    with process_link(mosquitto.url, topics, client_id, inbox) as link:
        (again,) = drain(inbox, 1)
        assert again.payload == scan(2)
        link.ack(again)
        assert drain(inbox, 1, timeout=1.0) == []
    with MqttClient(mosquitto.url) as watcher:
        watcher.connect()
        watcher.subscribe(topics.gateway_status)
        (status,) = watcher.wait_for(lambda m: m.retain, what="the retained status")
    assert status.payload == b"offline"


def test_a_full_inbox_holds_the_rest_back_and_nothing_is_lost(mosquitto: Mosquitto) -> None:
    """Prevents an unbounded pile-up in the parent (or drops of QoS 1 messages) when the worker
    is slower than the link: the parent inbox stays within its bound and every message comes,
    once, in order, as the worker catches up."""
    topics = Topics(unique_root(), "s1")
    inbox = Inbox(5)
    total = 300
    with (
        process_link(mosquitto.url, topics, f"process-full-{topics.root}", inbox) as link,
        MqttClient(mosquitto.url) as device,
    ):
        device.connect()
        for seq in range(1, total + 1):
            device.publish_nowait(topics.scan("fd-1"), scan(seq))
        time.sleep(1.0)  # the link is fast: everything could have arrived by now
        assert inbox.qsize() == 5
        got: list[Message] = []
        while len(got) < total:
            batch = inbox.get_batch(3, 10)
            assert batch, f"stalled after {len(got)}"
            for msg in batch:
                link.ack(msg)
            got += batch
    assert [m.payload for m in got] == [scan(seq) for seq in range(1, total + 1)]
    assert link.counters["dropped_qos0"] == 0


def test_a_killed_link_process_is_replaced_and_nothing_is_lost(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Prevents a gateway wedged by a dead link process, scans lost or doubled across the
    replacement, a publication made while it was down never sent, and a restart nobody sees
    (log, health, counter)."""
    caplog.set_level(logging.INFO)
    total = 400
    with running_gateway(mosquitto.url, tmp_path / "data", root=unique_root()) as gateway:
        link = gateway.link
        assert isinstance(link, ProcessLink)
        store = gateway.store_path
        with MqttClient(mosquitto.url) as device:
            device.connect()
            device.subscribe(gateway.topics.alert("probe"))
            infos = [
                device.publish_nowait(gateway.topics.scan("fd-1"), scan(seq))
                for seq in range(1, total // 2 + 1)
            ]
            wait_until(lambda: count_rows(store, "scans"), lambda n: n >= 50, 20, "50 scans")
            old = link.pid
            assert old is not None
            os.kill(old, signal.SIGKILL)
            wait_until(link.connected.is_set, lambda c: not c, 10, "the link to go down")
            # Published while no child runs: the next one sends it.
            confirmed = link.publish(gateway.topics.alert("probe"), b"{}", 1, True)
            assert confirmed is not None
            infos += [
                device.publish_nowait(gateway.topics.scan("fd-1"), scan(seq))
                for seq in range(total // 2 + 1, total + 1)
            ]
            device.wait_published(infos, 20)
            wait_until(lambda: count_rows(store, "scans"), lambda n: n >= total, 30, "all scans")
            wait_until(confirmed, bool, 10, "the probe's confirmation")
            device.wait_for(lambda m: m.topic == gateway.topics.alert("probe"), what="the probe")
        assert link.pid not in (None, old)
        assert link.connected.is_set()
        assert count_rows(store, "scans") == total  # (reader, seq) dedupe: none doubled
        assert gateway.counters["link_restarts"] == 1
        health = link.health()
        assert health.connected and "SIGKILL" in (health.last_error or ""), health
    assert any("链路进程退出" in r.getMessage() for r in caplog.records), caplog.text


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
            out += [int(p) for p in f.read().split()]
    return out


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # exited, not reaped
    except FileNotFoundError:
        return True


def test_a_killed_gateway_takes_its_link_process_down_and_the_will_says_offline(
    fresh_mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Prevents an orphaned link process that stays connected after `kill -9` of the gateway:
    the broker would never publish the last will, and the orphan would fight the restarted
    gateway for its client id."""
    with GatewayProcess(fresh_mosquitto.url, tmp_path / "data", root=unique_root()) as gateway:
        wait_until(lambda: _children(gateway.pid), bool, 10, "the link process")
        (child,) = _children(gateway.pid)
        with MqttClient(fresh_mosquitto.url) as watcher:
            watcher.connect()
            watcher.subscribe(gateway.topics.gateway_status)
            watcher.wait_for(lambda m: m.payload == b"online", what="online")
            gateway.kill()
            watcher.wait_for(lambda m: m.payload == b"offline", what="the last will")
        wait_until(lambda: _gone(child), bool, 5, f"the link process {child} to exit")
        # The restarted gateway's link keeps its session and is the only one connected.
        gateway.start()
        assert gateway.running
        wait_until(lambda: _children(gateway.pid), bool, 10, "the new link process")
        assert _gone(child)
