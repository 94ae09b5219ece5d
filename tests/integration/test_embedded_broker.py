"""The demo's embedded amqtt broker must behave like Mosquitto for everything the gateway uses."""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.demo.broker import EmbeddedBroker, EmbeddedBrokerError

TIMEOUT = 5.0  # every wait in this file is bounded by this, so a broken broker fails, not hangs
QUIET = 0.3  # how long "nothing else arrives" is watched for

SCAN_FILTER = "estate/+/reader/+/scan"


@dataclass(frozen=True)
class Received:
    """One delivered message, copied out of paho's MQTTMessage."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class Client:
    """A paho 2.2 MQTTv311 client set up the way the gateway sets its own up."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        client_id: str,
        *,
        subscriptions: tuple[str, ...] = (),
        clean_session: bool = False,
        manual_ack: bool = False,
        never_ack: bool = False,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        self.broker = broker
        self.subscriptions = subscriptions
        self.manual_ack = manual_ack or never_ack
        self.never_ack = never_ack
        self.messages: list[Received] = []
        self.session_present: bool | None = None
        self.acks: list[MQTTErrorCode] = []
        self._changed = threading.Condition()
        self._pending_subacks = 0
        self._connected = False
        self._closed = False
        self._paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self._paho.manual_ack_set(self.manual_ack)
        if will is not None:
            self._paho.will_set(will[0], will[1], qos=1)
        self._paho.on_connect = self._on_connect
        self._paho.on_subscribe = self._on_subscribe
        self._paho.on_message = self._on_message

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Client:
        """Connect on paho's background thread; wait for CONNACK and every SUBACK."""
        self._paho.connect(self.broker.host, self.broker.port, keepalive=30)
        self._paho.loop_start()
        self._wait(lambda: self._connected and self._pending_subacks == 0, "CONNACK/SUBACK")
        return self

    def start_in_foreground(self) -> Client:
        """Connect without a network thread, so the socket can later be cut like a crash."""
        self._paho.connect(self.broker.host, self.broker.port, keepalive=30)
        self.pump_until(lambda: self._connected and self._pending_subacks == 0)
        return self

    def pump_until(self, done: Callable[[], bool]) -> None:
        """Run paho's network loop on this thread until `done()` (foreground clients only)."""
        deadline = time.monotonic() + TIMEOUT
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {TIMEOUT}s; got {self.messages}")
            self._paho.loop(timeout=0.05)

    def stop(self) -> None:
        """Disconnect cleanly (no last will) and stop the network thread; idempotent."""
        if not self._closed:
            self._closed = True
            self._paho.disconnect()
            self._paho.loop_stop()

    def crash(self) -> None:
        """Close the TCP connection without DISCONNECT, as a powered-off reader would."""
        sock = self._paho.socket()
        assert isinstance(sock, socket.socket)
        self._closed = True
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    # --- traffic ---------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self._paho.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"

    def expect(self, count: int, timeout: float = TIMEOUT) -> list[Received]:
        """Wait until at least `count` messages arrived; return all of them."""
        self._wait(lambda: len(self.messages) >= count, f"{count} message(s)", timeout)
        with self._changed:
            return list(self.messages)

    def expect_exactly(self, count: int) -> list[Received]:
        """Wait for `count` messages, then check no further one turns up."""
        self.expect(count)
        time.sleep(QUIET)
        with self._changed:
            assert len(self.messages) == count, self.messages
            return list(self.messages)

    # --- paho callbacks (run on paho's network thread) --------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        assert not reason.is_failure, reason
        # Subscribing here, as the gateway does, restores subscriptions after any reconnect.
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        with self._changed:
            self.session_present = flags.session_present
            self._pending_subacks = len(self.subscriptions)
            self._connected = True
            self._changed.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._changed:
            assert all(r.value == 1 for r in reasons), reasons  # QoS 1 granted
            self._pending_subacks -= 1
            self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(message.topic, bytes(message.payload), message.qos, message.retain)
        with self._changed:
            self.messages.append(received)
            self._changed.notify_all()
        if self.manual_ack and not self.never_ack:
            # The gateway acks only once a scan is stored; "processing" is the append above.
            self.acks.append(client.ack(message.mid, message.qos))

    def _wait(self, done: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise TimeoutError(f"waited {timeout}s for {what}; got {self.messages}")


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh embedded broker per test (it starts in tens of milliseconds)."""
    with EmbeddedBroker(start_timeout=TIMEOUT) as running:
        yield running


@pytest.fixture
def clients(broker: EmbeddedBroker) -> Iterator[Callable[..., Client]]:
    """Factory for clients that are all disconnected before the broker stops."""
    made: list[Client] = []

    def make(client_id: str, **options: Any) -> Client:
        client = Client(broker, client_id, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


@pytest.fixture(autouse=True)
def no_broker_complaints(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test whose traffic made amqtt log a warning (e.g. a PUBACK it did not expect)."""
    caplog.set_level(logging.WARNING, logger="amqtt")
    yield
    complaints = [r for r in caplog.records if r.name.startswith("amqtt")]
    assert not complaints, [r.getMessage() for r in complaints]


def test_qos1_round_trip_with_manual_ack(clients: Callable[..., Client]) -> None:
    """Prevents the demo losing or duplicating a scan when the gateway acks after storing it."""
    gateway = clients("gateway", subscriptions=(SCAN_FILTER,), manual_ack=True).start()
    reader = clients("reader-1", clean_session=True).start()

    reader.publish("estate/e1/reader/r1/scan", b'{"tag":"A1"}')
    reader.publish("estate/e1/reader/r1/scan", b'{"tag":"A2"}')

    assert gateway.expect_exactly(2) == [
        Received("estate/e1/reader/r1/scan", b'{"tag":"A1"}', 1, False),
        Received("estate/e1/reader/r1/scan", b'{"tag":"A2"}', 1, False),
    ]
    assert gateway.acks == [MQTTErrorCode.MQTT_ERR_SUCCESS] * 2


def test_retained_message_is_set_and_cleared_by_empty_payload(
    clients: Callable[..., Client],
) -> None:
    """Prevents a demo dashboard showing a stale gateway status after it was cleared."""
    publisher = clients("status-publisher", clean_session=True).start()
    publisher.publish("estate/e1/gateway/status", b"online", retain=True)

    late = clients("late-1", subscriptions=("estate/e1/gateway/#",), clean_session=True).start()
    assert late.expect_exactly(1) == [Received("estate/e1/gateway/status", b"online", 1, True)]

    publisher.publish("estate/e1/gateway/status", b"", retain=True)
    later = clients("late-2", subscriptions=("estate/e1/gateway/#",), clean_session=True).start()
    # A marker after the subscription: had a retained status survived, it would come first.
    publisher.publish("estate/e1/gateway/marker", b"m")
    assert later.expect_exactly(1) == [Received("estate/e1/gateway/marker", b"m", 1, False)]


def test_last_will_is_published_on_abrupt_disconnect_only(
    clients: Callable[..., Client],
) -> None:
    """Prevents the demo never raising a "reader offline" alert when a reader loses power."""
    watcher = clients("watcher", subscriptions=("estate/+/reader/+/status",)).start()

    polite = clients("reader-2", clean_session=True, will=("estate/e1/reader/r2/status", b"gone"))
    polite.start()
    polite.stop()  # DISCONNECT: the will must be discarded

    crashing = clients("reader-1", clean_session=True, will=("estate/e1/reader/r1/status", b"gone"))
    crashing.start_in_foreground()
    crashing.crash()

    assert watcher.expect_exactly(1) == [Received("estate/e1/reader/r1/status", b"gone", 1, False)]


def test_wildcard_subscriptions_route_by_level(clients: Callable[..., Client]) -> None:
    """Prevents scans reaching the wrong subscriber because `+`/`#` matching differs."""
    scans = clients("scans", subscriptions=(SCAN_FILTER,)).start()
    everything = clients("everything", subscriptions=("estate/#",)).start()
    publisher = clients("publisher", clean_session=True).start()

    topics = [
        "estate/e1/reader/r1/scan",
        "estate/e2/reader/r9/scan",
        "estate/e1/reader/r1/status",  # wrong last level
        "estate/e1/reader/r1/scan/raw",  # one level too many for `+`
        "estate/e1/gateway/scan",  # wrong level count
        "other/e1/reader/r1/scan",  # outside the estate tree
    ]
    for topic in topics:
        publisher.publish(topic, topic.encode())

    assert [m.topic for m in scans.expect_exactly(2)] == topics[:2]
    assert [m.topic for m in everything.expect_exactly(5)] == topics[:5]


def test_persistent_session_gets_backlog_after_reconnect(clients: Callable[..., Client]) -> None:
    """Prevents the demo dropping scans published while the gateway was restarting."""
    first = clients("gateway", subscriptions=(SCAN_FILTER,), manual_ack=True).start()
    assert first.session_present is False
    first.stop()

    reader = clients("reader-1", clean_session=True).start()
    for n in range(3):
        reader.publish("estate/e1/reader/r1/scan", f"offline-{n}".encode())

    again = clients("gateway", subscriptions=(SCAN_FILTER,), manual_ack=True).start()
    assert again.session_present is True
    received = again.expect_exactly(3)
    # amqtt 0.12 sets the retain flag on queued messages (Mosquitto does not), so only
    # topic, payload, QoS and order are the contract here.
    assert [(m.topic, m.payload, m.qos) for m in received] == [
        ("estate/e1/reader/r1/scan", f"offline-{n}".encode(), 1) for n in range(3)
    ]
    assert again.acks == [MQTTErrorCode.MQTT_ERR_SUCCESS] * 3


@pytest.mark.xfail(
    strict=True,
    raises=TimeoutError,
    reason="amqtt 0.12 drops an unacked QoS 1 message when the subscriber's connection dies; "
    "Mosquitto redelivers it. Crash-recovery checks belong on Mosquitto (see docs).",
)
def test_unacked_message_is_redelivered_after_crash(clients: Callable[..., Client]) -> None:
    """Documents the one at-least-once gap of the demo broker; XPASS means amqtt fixed it."""
    # Receives but never acks: the gateway died while storing the scan.
    crashing = clients("gateway", subscriptions=(SCAN_FILTER,), never_ack=True)
    crashing.start_in_foreground()
    clients("reader-1", clean_session=True).start().publish("estate/e1/reader/r1/scan", b"A1")
    crashing.pump_until(lambda: len(crashing.messages) == 1)
    crashing.crash()

    again = clients("gateway", subscriptions=(SCAN_FILTER,), manual_ack=True).start()
    # Mosquitto resends at once on reconnect, so a short wait keeps this xfail cheap.
    assert [m.payload for m in again.expect(1, timeout=1.0)] == [b"A1"]


def test_listens_on_loopback_only(broker: EmbeddedBroker) -> None:
    """Prevents the unauthenticated demo broker being reachable from the network."""
    listening = {
        conn.laddr
        for conn in psutil.Process().net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == broker.port
    }
    assert {(addr.ip, addr.port) for addr in listening} == {("127.0.0.1", broker.port)}
    assert broker.host == "127.0.0.1"
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"


def test_stop_leaves_no_thread_socket_or_warning() -> None:
    """Prevents `patrol-gateway demo` hanging on exit or tests failing on leaked resources."""
    threads_before = set(threading.enumerate())
    broker = EmbeddedBroker(start_timeout=TIMEOUT)
    broker.start()
    port = broker.port
    assert port != 0
    client = Client(broker, "left-connected", subscriptions=(SCAN_FILTER,)).start()

    started = time.monotonic()
    broker.stop()  # with a client still connected, as when the demo is interrupted
    assert time.monotonic() - started < TIMEOUT
    client.stop()

    assert not broker.running
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    broker.stop()  # idempotent
    gc.collect()  # unclosed sockets or loops would surface now as errors under -W error


def test_context_manager_restart_and_busy_port() -> None:
    """Prevents a confusing traceback when port 1883 is already taken by a real broker."""
    with EmbeddedBroker(start_timeout=TIMEOUT) as first:
        assert first.running
        with pytest.raises(EmbeddedBrokerError, match="already running"):
            EmbeddedBroker(first.port, start_timeout=TIMEOUT).start()
    assert not first.running

    first.start()  # a stopped broker can be started again
    first.stop()
