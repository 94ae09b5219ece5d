"""A long outage's backlog drains whole: the worker never waits for the network thread.

The broker holds what arrived while the gateway was away and sends it all at reconnect, up to
its in-flight window at a time. The gateway answers each scan with a QoS 1 message. Once,
paho's outgoing queue had a bound (10,000): in a drain of 40,000 messages the answers fell
behind the input, the queue filled, the worker waited in `publish` for room, the network
thread waited for room in the worker's inbox, and neither ever moved again (the gateway
stored part of the backlog and stopped, with the process up: "inbox full for 30 s").
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import load_site
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.topics import Topics
from gateway.store.sqlite import SqliteStore
from tests.bench import SITE_FILE, forget_session, ingest_messages, prepublish, running_gateway
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

BACKLOG = 40_000  # twice what the old bound let through
DRAIN_LIMIT = 180.0  # seconds: a stuck gateway never gets there; a working one takes ~5


@pytest.mark.parametrize("link_process", [True, False], ids=["link-process", "in-process"])
def test_a_backlog_of_40000_messages_drains_whole(
    fresh_mosquitto: Mosquitto, tmp_path: Path, link_process: bool
) -> None:
    """Every message of the backlog is stored (and so acknowledged), and every scan answered
    to the broker: nothing waits for ever."""
    zcity = load_site(SITE_FILE)
    topics = Topics("drain", zcity.id)
    client_id = f"drain-{link_process}"
    url = fresh_mosquitto.url
    with running_gateway(zcity, url, tmp_path, topics.root, client_id):
        pass  # the persistent session and its subscriptions
    messages = ingest_messages(zcity, topics.root, BACKLOG)
    scans = sum(topic.endswith("/scan") for topic, _ in messages)
    rows = scans + 2 * (BACKLOG - scans)  # a reading of two metrics is two rows
    prepublish(url, messages)
    gw = Gateway(
        zcity,
        BrokerUrl.parse(url),
        tmp_path,
        root=topics.root,
        client_id=client_id,
        link_process=link_process,
    )
    reader = SqliteStore(gw.store_path)
    stored = 0
    gw.start()
    try:
        deadline = time.monotonic() + DRAIN_LIMIT
        while time.monotonic() < deadline:
            stored = reader.count("scans") + reader.count("readings")
            if stored >= rows:
                break
            time.sleep(0.2)
    finally:
        reader.close()
        gw.stop()
        forget_session(url, client_id)
    assert stored == rows, f"stored {stored} of {rows} rows: the drain stopped"
    assert gw.counters["scan"] == scans and gw.counters.get("duplicates", 0) == 0
