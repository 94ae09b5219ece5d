"""The gateway's MQTT link against a real Mosquitto (gateway/ingest/mqtt.py).

Each test names the failure it prevents: lost QoS 1 messages across a restart of the link,
the gateway's own publications coming back as input, topics outside the subscriptions
vanishing, whole over-size payloads queued, answers dropped when paho's queue is full, a
silent `run` when the broker cannot be reached, and the fallback to an MQTT 3.1.1 broker.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from gateway.events import Message
from gateway.ingest.inbox import Inbox
from gateway.ingest.mqtt import BrokerUrl, MqttLink
from gateway.ingest.topics import Topics
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import Mqtt311OnlyProxy, MqttClient

TOPICS = Topics("link-test", "s1")
SCAN = TOPICS.scan("fd-1")


def wait_until(condition: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what or condition}")
        time.sleep(0.02)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def link_to(
    url: str,
    client_id: str = "link-test",
    *,
    inbox: Inbox | None = None,
    outputs: list[Message] | None = None,
    connect: bool = True,
    **options: object,
) -> Iterator[MqttLink]:
    link = MqttLink(
        BrokerUrl.parse(url),
        client_id,
        TOPICS,
        inbox if inbox is not None else Inbox(100),
        now,
        on_output=None if outputs is None else outputs.append,
        **options,  # type: ignore[arg-type]
    )
    link.start()
    try:
        if connect:
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


def test_publication_made_while_disconnected_is_confirmed_after_reconnect(
    fresh_mosquitto: Mosquitto,
) -> None:
    """paho leaves rc=NO_CONN on a queued QoS 1 message; the outbox must still see its PUBACK."""
    with link_to(fresh_mosquitto.url) as link:
        fresh_mosquitto.stop()
        wait_until(lambda: not link.connected.is_set(), what="the disconnect")
        confirmed = link.publish(TOPICS.alert("x"), b'{"state": "open"}', qos=1, retain=True)
        assert confirmed is not None
        assert confirmed() is False  # queued, not yet confirmed, and no exception
        fresh_mosquitto.start()
        wait_until(confirmed, 20, "the PUBACK after the reconnect")
    with MqttClient(fresh_mosquitto.url) as reader:
        reader.connect()
        reader.subscribe(TOPICS.alert("x"))
        (message,) = reader.wait_for(lambda m: m.topic == TOPICS.alert("x"))
    assert message.payload == b'{"state": "open"}' and message.retain


def test_mqtt5_session_keeps_qos1_messages_while_the_link_is_away(mosquitto: Mosquitto) -> None:
    """Prevents lost scans: an MQTT 5 session without a Session Expiry Interval ends at the
    disconnect, and the broker then drops what was published while the gateway was away."""
    with link_to(mosquitto.url, "link-session") as link:
        assert link.mqtt5
    with MqttClient(mosquitto.url) as device:
        device.connect()
        device.publish(SCAN, b'{"credential": "AA", "method": "nfc", "seq": 1}', qos=1)
    inbox = Inbox(100)
    with link_to(mosquitto.url, "link-session", inbox=inbox) as link:
        (msg,) = drain(inbox, 1)
        assert (msg.topic, msg.qos) == (SCAN, 1)
        link.ack(msg)


def test_own_publications_do_not_come_back_and_others_on_output_topics_go_to_on_output(
    mosquitto: Mosquitto,
) -> None:
    """Prevents the gateway reading its own scan answers (issue 7 §4, MQTT 5 no local), and
    someone else's retained alert on the site being missed by the start-up reconciliation."""
    inbox, outputs = Inbox(100), []
    with MqttClient(mosquitto.url) as other:
        other.connect()
        other.publish(TOPICS.alert("stale-1"), b'{"state": "open"}', qos=1, retain=True)
        with link_to(mosquitto.url, "link-nolocal", inbox=inbox, outputs=outputs) as link:
            wait_until(lambda: any(m.topic == TOPICS.alert("stale-1") for m in outputs))
            done = [
                link.publish(TOPICS.ack("fd-1"), b'{"ok": true}'),
                link.publish(TOPICS.alert("mine"), b"{}", retain=False),
                link.publish(TOPICS.rejected, b"{}", qos=1),
            ]
            other.publish(TOPICS.ack("fd-2"), b'{"ok": false}', qos=1)  # not ours: on_output
            wait_until(lambda: all(d is not None and d() for d in done), what="PUBACKs")
            wait_until(lambda: any(m.topic == TOPICS.ack("fd-2") for m in outputs))
            other.publish(SCAN, b"{}", qos=1)  # a marker: everything before it has arrived
            (marker,) = drain(inbox, 1)
        other.publish(TOPICS.alert("stale-1"), b"", qos=1, retain=True)
    assert marker.topic == SCAN
    assert inbox.empty()
    topics = [m.topic for m in outputs]
    assert TOPICS.ack("fd-1") not in topics and TOPICS.alert("mine") not in topics
    assert TOPICS.rejected not in topics
    stale = next(m for m in outputs if m.topic == TOPICS.alert("stale-1"))
    assert stale.retain and stale.payload == b'{"state": "open"}'


def test_every_topic_under_the_site_reaches_the_inbox(mosquitto: Mosquitto) -> None:
    """Prevents silent drops (issue 8 item 16): a trailing '/', an extra level, an odd id or
    an unknown kind used to fall outside the three subscriptions and vanish unrefused."""
    odd = [
        SCAN + "/",
        SCAN + "/extra",
        f"{TOPICS.base}/reader/FD 1/scan",
        f"{TOPICS.base}/readers/fd-1/scan",
        f"{TOPICS.base}/hello",
        f"{TOPICS.base}/equipment/tx-1/reading/",
    ]
    inbox = Inbox(100)
    with link_to(mosquitto.url, "link-tree", inbox=inbox), MqttClient(mosquitto.url) as device:
        device.connect()
        device.publish_many([(t, b"{}") for t in odd], qos=1)
        got = drain(inbox, len(odd))
    assert sorted(m.topic for m in got) == sorted(odd)
    for m in got:
        assert isinstance(TOPICS.parse(m.topic), str)  # each one is refused with a reason


def test_over_size_payload_is_cut_before_it_is_queued(mosquitto: Mosquitto) -> None:
    """Prevents a full inbox of whole megabyte payloads (issue 8 item 3): only a 512-byte
    head and the original size are queued; a payload at the limit is kept whole."""
    inbox = Inbox(100)
    with (
        link_to(mosquitto.url, "link-size", inbox=inbox, max_payload_bytes=1000) as link,
        MqttClient(mosquitto.url) as device,
    ):
        device.connect()
        device.publish(SCAN, b"x" * 1000, qos=1)
        device.publish(SCAN, b"y" * 1_000_000, qos=0)
        device.publish(SCAN, b"z" * 1001, qos=1)
        whole, big, just_over = drain(inbox, 3)
        for m in (whole, just_over):
            link.ack(m)
    assert (len(whole.payload), whole.oversize) == (1000, 0)
    assert (len(big.payload), big.oversize) == (512, 1_000_000)
    assert (len(just_over.payload), just_over.oversize) == (512, 1001)
    assert link.oversize == 2


def test_full_outgoing_queue_makes_answers_wait_not_vanish(fresh_mosquitto: Mosquitto) -> None:
    """Prevents dropped scan answers (issue 8 item 12): with paho's queue full, publish used to
    return None and the answer was lost; now it waits for room, counts it, and sends late."""
    with (
        link_to(fresh_mosquitto.url, "link-queue", outbox_limit=5) as link,
        MqttClient(fresh_mosquitto.url, clean_session=False, client_id="reader") as reader,
    ):
        reader.connect()
        reader.subscribe(f"{TOPICS.base}/reader/+/ack")
        fresh_mosquitto.stop()
        wait_until(lambda: not link.connected.is_set(), what="the disconnect")
        results: list[Callable[[], bool] | None] = []

        def answer() -> None:
            for i in range(30):
                results.append(link.publish(TOPICS.ack("fd-1"), f'{{"seq": {i}}}'.encode()))

        worker = threading.Thread(target=answer)
        worker.start()
        wait_until(lambda: link.publish_waits > 0, what="a publication waiting for room")
        assert len(results) == 5  # the queue holds 5; the 6th waits
        fresh_mosquitto.start()
        worker.join(30)
        assert not worker.is_alive()
        got = reader.wait_for(lambda m: m.topic == TOPICS.ack("fd-1"), count=30, timeout=20)
    assert all(r is not None for r in results)
    assert sorted(m.json()["seq"] for m in got) == list(range(30))


def test_answers_beyond_the_window_wait_their_turn_and_all_go_out(
    fresh_mosquitto: Mosquitto,
) -> None:
    """Prevents answers stuck in paho's queue: the link skips paho's walk over the messages in
    flight when none is queued (`_Client._update_inflight`); with a window of 3 and 200
    answers most are queued, and every one must still go out, in order, and be confirmed."""
    with (
        link_to(fresh_mosquitto.url, "link-window") as link,
        MqttClient(fresh_mosquitto.url, client_id="reader-window") as reader,
    ):
        reader.connect()
        reader.subscribe(f"{TOPICS.base}/reader/+/ack")
        link._client.limit_inflight(3)
        confirmed = [
            link.publish(TOPICS.ack("fd-1"), f'{{"seq": {i}}}'.encode()) for i in range(200)
        ]
        got = reader.wait_for(lambda m: m.topic == TOPICS.ack("fd-1"), count=200, timeout=20)
        wait_until(lambda: all(c is not None and c() for c in confirmed), what="200 PUBACKs")
    assert [m.json()["seq"] for m in got] == list(range(200))


def test_unreachable_broker_is_reported_at_once_and_retried(
    fresh_mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Prevents a silent `run` (issue 8 item 6): a wrong port used to log nothing for ever.
    The first failure is logged at once with its reason, the retries with a growing interval,
    and the health says so; once the broker is there, the link connects by itself."""
    fresh_mosquitto.stop()
    caplog.set_level(logging.INFO, logger="gateway.ingest.mqtt")
    started = time.monotonic()
    with link_to(fresh_mosquitto.url, "link-down", connect=False) as link:
        wait_until(lambda: "first connection" in caplog.text, 3, "the first failure logged")
        assert time.monotonic() - started < 2
        assert "Connection refused" in caplog.text and "retrying in 1 s" in caplog.text
        wait_until(lambda: "retrying in 2 s" in caplog.text, 5, "a longer interval")
        health = link.health()
        assert not health.connected and health.attempts >= 2
        assert health.last_error is not None and "refused" in health.last_error
        fresh_mosquitto.start()
        assert link.connected.wait(15)
        health = link.health()
        assert health.connected and health.attempts == 0 and health.since is not None
    assert "after" in caplog.text and "failed attempts" in caplog.text


@pytest.mark.parametrize("answers", [True, False], ids=["refuses-mqtt5", "silent-on-mqtt5"])
def test_a_broker_speaking_only_mqtt311_gets_a_311_link(
    mosquitto: Mosquitto, answers: bool
) -> None:
    """Prevents a gateway that cannot connect to an MQTT 3.1.1 broker (the demo's, an old
    Mosquitto), whether it refuses MQTT 5 as the spec says or, like amqtt, never answers: it
    falls back, keeps what it published before, and still ignores its echoes."""
    inbox, outputs = Inbox(100), []
    with (
        Mqtt311OnlyProxy(mosquitto.host, mosquitto.port, answer_mqtt5=answers) as proxy,
        MqttClient(mosquitto.url) as other,
    ):
        other.connect()
        other.publish(TOPICS.alert("old"), b'{"state": "open"}', qos=1, retain=True)
        with link_to(proxy.url, "link-311", inbox=inbox, outputs=outputs, connect=False) as link:
            early = link.publish(TOPICS.patrol_status, b"early", qos=1, retain=True)
            assert link.connected.wait(15), link.health()
            assert not link.mqtt5 and proxy.refused_mqtt5 >= 1
            assert early is not None
            wait_until(early, what="the publication made before the fallback")
            echo = link.publish(TOPICS.ack("fd-1"), b'{"ok": true}')
            assert echo is not None
            wait_until(echo)
            other.publish(SCAN, b"{}", qos=1)
            (marker,) = drain(inbox, 1)
            link.ack(marker)
        other.publish(TOPICS.alert("old"), b"", qos=1, retain=True)
        other.publish(TOPICS.patrol_status, b"", qos=1, retain=True)
    assert marker.topic == SCAN and inbox.empty()
    # Retained state left on the broker, not the link's echoes (an earlier test's retained
    # gateway/status aside).
    assert [m.topic for m in outputs if m.topic != TOPICS.gateway_status] == [TOPICS.alert("old")]
