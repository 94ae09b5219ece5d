"""The demo's embedded broker must keep the contract's MQTT promises (§2) as Mosquitto does.

Every behaviour test runs twice, against the embedded broker and against a private Mosquitto:
retained messages per subscription, QoS 1 redelivery to a persistent session, the last will,
and MQTT 5 *no local* (or a clean refusal of MQTT 5, so the gateway falls back to 3.1.1).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.demo.broker import EmbeddedBroker, EmbeddedBrokerError
from tests.support.mosquitto import Mosquitto

TIMEOUT = 5.0  # every wait in this file is bounded by this, so a broken broker fails, not hangs
QUIET = 0.3  # how long "nothing else arrives" is watched for

SCAN_FILTER = "estate/+/reader/+/scan"


@dataclass(frozen=True)
class Target:
    """A running broker under test: where it listens and what it is."""

    name: str
    host: str
    port: int
    mqtt5: bool  # accepts MQTT 5 connections (else it must refuse them)


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
        broker: Target,
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
            self._paho.will_set(will[0], will[1], qos=1, retain=True)  # as a device's status
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


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A fresh broker per test, embedded or Mosquitto: no session or retained message of an
    earlier test can be there (each starts in well under a second)."""
    if request.param == "embedded":
        with EmbeddedBroker(start_timeout=TIMEOUT) as embedded:
            yield Target("embedded", embedded.host, embedded.port, mqtt5=False)
    else:
        mosquitto: Mosquitto = request.getfixturevalue("fresh_mosquitto")
        yield Target("mosquitto", mosquitto.host, mosquitto.port, mqtt5=True)


@pytest.fixture
def clients(broker: Target) -> Iterator[Callable[..., Client]]:
    """Factory for clients that are all disconnected before the broker stops."""
    made: list[Client] = []

    def make(client_id: str, **options: Any) -> Client:
        client = Client(broker, client_id, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.stop()


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


RETAINED = {  # what a running gateway and its devices leave retained (§2)
    "estate/zcity/device/fd-1/status": b"online",
    "estate/zcity/patrol/status": b'{"day": "2026-11-27"}',
    "estate/zcity/gateway/status": b"online",
    "estate/zcity/alert/a1": b'{"id": "a1"}',
    "estate/zcity/alert/a2": b'{"id": "a2"}',
}


def test_new_subscriber_gets_exactly_its_topics_retained_messages(
    clients: Callable[..., Client],
) -> None:
    """Prevents a dashboard subscribed to `alert/+` being handed device and patrol statuses,
    a subscriber to an unrelated topic being handed the site's state, a retained message
    arriving twice, or a closed alert (empty retained message) still showing (§2; amqtt 0.12
    handed every new client the retained messages of every earlier client's subscriptions)."""
    publisher = clients("gateway-out", clean_session=True).start()
    for topic, payload in RETAINED.items():
        publisher.publish(topic, payload, retain=True)
    # A persistent subscriber to the whole tree, as the gateway is, connected first.
    whole = clients("gateway", subscriptions=("estate/#",)).start()
    assert sorted(m.topic for m in whole.expect_exactly(len(RETAINED))) == sorted(RETAINED)

    alerts = clients("dashboard", subscriptions=("estate/zcity/alert/+",), clean_session=True)
    assert sorted(alerts.start().expect_exactly(2), key=lambda m: m.topic) == [
        Received("estate/zcity/alert/a1", b'{"id": "a1"}', 1, True),
        Received("estate/zcity/alert/a2", b'{"id": "a2"}', 1, True),
    ]
    unrelated = clients("unrelated", subscriptions=("nothing/here",), clean_session=True).start()
    # A marker after the subscription: a retained message handed over would come before it.
    publisher.publish("nothing/here", b"marker")
    assert unrelated.expect_exactly(1) == [Received("nothing/here", b"marker", 1, False)]

    publisher.publish("estate/zcity/alert/a1", b"", retain=True)  # the alert closed
    later = clients("dashboard-2", subscriptions=("estate/zcity/alert/+",), clean_session=True)
    assert later.start().expect_exactly(1) == [
        Received("estate/zcity/alert/a2", b'{"id": "a2"}', 1, True)
    ]


def test_last_will_is_published_and_retained_on_abrupt_disconnect_only(
    clients: Callable[..., Client],
) -> None:
    """Prevents the demo never raising a "device offline" alert when a reader loses power, a
    dashboard started later not seeing it (the status is a retained last will, §2), or a
    reader that said goodbye properly being reported offline."""
    watcher = clients("watcher", subscriptions=("estate/+/device/+/status",)).start()

    polite = clients("fd-2", clean_session=True, will=("estate/e1/device/fd-2/status", b"offline"))
    polite.start()
    polite.stop()  # DISCONNECT: the will must be discarded

    crashing = clients(
        "fd-1", clean_session=True, will=("estate/e1/device/fd-1/status", b"offline")
    )
    crashing.start_in_foreground()
    crashing.crash()

    expected = Received("estate/e1/device/fd-1/status", b"offline", 1, False)
    assert watcher.expect_exactly(1) == [expected]
    late = clients("late", subscriptions=("estate/+/device/+/status",), clean_session=True)
    assert late.start().expect_exactly(1) == [Received(expected.topic, b"offline", 1, True)]


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
    assert again.expect_exactly(3) == [
        Received("estate/e1/reader/r1/scan", f"offline-{n}".encode(), 1, False) for n in range(3)
    ]
    assert again.acks == [MQTTErrorCode.MQTT_ERR_SUCCESS] * 3


def test_unacked_message_is_redelivered_after_crash(clients: Callable[..., Client]) -> None:
    """Prevents a scan being lost when the gateway dies after receiving it but before storing
    and acknowledging it: the broker must send it again to the persistent session (amqtt 0.12
    dropped it), along with what was published while the gateway was away."""
    # Receives but never acks: the gateway died while storing the scan.
    crashing = clients("gateway", subscriptions=(SCAN_FILTER,), never_ack=True)
    crashing.start_in_foreground()
    reader = clients("reader-1", clean_session=True).start()
    reader.publish("estate/e1/reader/r1/scan", b"A1")
    crashing.pump_until(lambda: len(crashing.messages) == 1)
    crashing.crash()
    reader.publish("estate/e1/reader/r1/scan", b"A2")

    again = clients("gateway", subscriptions=(SCAN_FILTER,), manual_ack=True).start()
    assert again.session_present is True
    assert [m.payload for m in again.expect_exactly(2)] == [b"A1", b"A2"]
    assert again.acks == [MQTTErrorCode.MQTT_ERR_SUCCESS] * 2


def _mqtt5_connack(target: Target) -> bytes:
    """Send an MQTT 5 CONNECT on a raw socket; return what comes back before the socket closes
    or a CONNACK is complete (b"" if the broker just closes the connection)."""
    client_id = b"mqtt5-probe"
    body = b"\x00\x04MQTT\x05\x02\x00\x1e\x00" + struct.pack("!H", len(client_id)) + client_id
    with socket.create_connection((target.host, target.port), timeout=TIMEOUT) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        answer = b""
        while len(answer) < 2 or len(answer) < 2 + answer[1]:
            chunk = sock.recv(64)
            if not chunk:
                break
            answer += chunk
        return answer


def test_mqtt5_no_local_or_a_clean_refusal(broker: Target) -> None:
    """Prevents the gateway receiving its own publications back, or hanging on a broker that
    neither honours MQTT 5 *no local* nor refuses MQTT 5: the gateway connects with MQTT 5 and
    falls back to 3.1.1 when refused. Mosquitto honours no local; the embedded broker (a 3.1.1
    listener) closes an MQTT 5 connection at once without a CONNACK, which counts as a refusal."""
    answer = _mqtt5_connack(broker)
    if not broker.mqtt5:
        assert answer == b"", answer  # closed: no session, no CONNACK
        return
    assert answer[:1] == b"\x20" and answer[3] == 0x00, answer  # CONNACK, success

    got: list[bytes] = []
    subscribed = threading.Event()
    v5 = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="gateway-v5",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    v5.on_subscribe = lambda *_args: subscribed.set()
    v5.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    v5.connect(broker.host, broker.port, keepalive=30)
    v5.loop_start()
    try:
        v5.subscribe("estate/#", options=SubscribeOptions(qos=1, noLocal=True))
        assert subscribed.wait(TIMEOUT)
        v5.publish("estate/e1/alert/own", b"own", qos=1).wait_for_publish(TIMEOUT)
        other = Client(broker, "device", clean_session=True).start()
        other.publish("estate/e1/reader/r1/scan", b"theirs")
        other.stop()
        deadline = time.monotonic() + TIMEOUT
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(QUIET)
        assert got == [b"theirs"]
    finally:
        v5.disconnect()
        v5.loop_stop()


# --- the embedded broker's own life cycle ------------------------------------------------------


def _listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port`, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if len(address) == 8:  # IPv4, little-endian
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add(f"ipv6:{address}")
    return found


def test_listens_on_loopback_only() -> None:
    """Prevents the unauthenticated demo broker being reachable from the network."""
    with EmbeddedBroker(start_timeout=TIMEOUT) as broker:
        assert _listening(broker.port) == {"127.0.0.1"}
        assert broker.host == "127.0.0.1"
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"


def _gone(pid: int, within: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A child of ours that exited stays a zombie until reaped: that counts as gone.
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return True
        time.sleep(0.02)
    return False


def test_stop_leaves_no_process_socket_or_warning() -> None:
    """Prevents `patrol-gateway demo` hanging on exit, leaving a broker process behind, or
    tests failing on leaked resources."""
    threads_before = set(threading.enumerate())
    broker = EmbeddedBroker(start_timeout=TIMEOUT)
    broker.start()
    port, pid = broker.port, broker.pid
    assert port != 0 and pid is not None
    target = Target("embedded", broker.host, port, mqtt5=False)
    client = Client(target, "left-connected", subscriptions=(SCAN_FILTER,)).start()

    started = time.monotonic()
    broker.stop()  # with a client still connected, as when the demo is interrupted
    assert time.monotonic() - started < TIMEOUT
    client.stop()

    assert not broker.running and broker.pid is None
    assert _gone(pid)
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    broker.stop()  # idempotent
    gc.collect()  # unclosed files or sockets would surface now as errors under -W error


def test_broker_outlives_sigint_and_dies_with_its_parent(tmp_path: Path) -> None:
    """Prevents Ctrl-C (SIGINT to the terminal's whole process group) killing the broker
    before the demo has said goodbye through it, and a demo killed with -9 leaving a broker
    process behind that holds port 1883."""
    script = (
        "import signal, time\n"
        "from gateway.demo.broker import EmbeddedBroker\n"
        "signal.signal(signal.SIGINT, lambda *_: None)  # the demo handles Ctrl-C itself\n"
        "b = EmbeddedBroker(start_timeout=5.0); b.start()\n"
        "print(b.pid, b.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell gives a command
    )
    try:
        assert parent.stdout is not None
        pid_text, port_text = parent.stdout.readline().split()
        pid, port = int(pid_text), int(port_text)
        os.killpg(parent.pid, signal.SIGINT)  # what Ctrl-C does
        assert not _gone(pid, within=0.5)
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        parent.kill()
        parent.wait(TIMEOUT)
        assert _gone(pid)
    finally:
        parent.kill()
        parent.wait(TIMEOUT)
        if parent.stdout is not None:
            parent.stdout.close()


def test_context_manager_restart_and_busy_port() -> None:
    """Prevents a confusing traceback when port 1883 is already taken by a real broker."""
    with EmbeddedBroker(start_timeout=TIMEOUT) as first:
        assert first.running
        with pytest.raises(EmbeddedBrokerError, match="already running"):
            EmbeddedBroker(first.port, start_timeout=TIMEOUT).start()
    assert not first.running

    first.start()  # a stopped broker can be started again
    first.stop()


def test_without_the_demo_extra_start_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Prevents a bare traceback from the child process when `pip install .` left out the
    `[demo]` extra that holds the broker."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "iotcore" else real(name, *a)
    )
    broker = EmbeddedBroker(start_timeout=TIMEOUT)
    with pytest.raises(EmbeddedBrokerError, match=r"pip install 'patrol-gateway\[demo\]'"):
        broker.start()
    assert not broker.running
