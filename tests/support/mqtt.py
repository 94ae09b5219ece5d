"""A paho-mqtt test client whose every step waits with a timeout, so no test can hang.

`MqttClient` keeps everything it received in one list and waits for messages matching a
predicate, so a test can pick a scan answer or a refusal out of a stream of other traffic.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

T = TypeVar("T")


@dataclass(frozen=True)
class Received:
    """One message as a test client received it: plain values, no paho types."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def text(self) -> str:
        """The payload as UTF-8 text."""
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


def parse_url(url: str) -> tuple[str, int]:
    """(host, port) of an `mqtt://host:port` test broker address."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"{url!r}: the test client speaks plain mqtt://host:port")
    return parts.hostname, parts.port or 1883


class MqttClient:
    """An MQTT 3.1.1 test client: publishes QoS 1 and waits for PUBACK, collects what it gets.

    Every message received on any subscription is appended to one list under a lock;
    `wait_for` blocks on a condition (no busy polling) until enough messages match, and fails
    with what did arrive, so a test never hangs and never fails without saying why.
    """

    def __init__(
        self,
        url: str,
        client_id: str = "",
        *,
        clean_session: bool = True,
        timeout: float = 5.0,
        max_inflight: int = 20,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host, self.port = parse_url(url)
        self.timeout = timeout
        self._received: list[Received] = []
        self._arrived = threading.Condition()
        self._connacks: queue.Queue[tuple[bool, ReasonCode]] = queue.Queue()
        self._subacks: queue.Queue[tuple[int, list[ReasonCode]]] = queue.Queue()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)  # 0: unbounded, publish never refuses
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._started = False

    # -- connection --------------------------------------------------------------------------

    def connect(self) -> bool:
        """Connect and wait for CONNACK; returns the broker's `session_present` flag."""
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._started = True
        present, reason = _next(self._connacks, self.timeout, f"CONNACK from {self.host}")
        if reason.is_failure:
            raise ConnectionError(f"broker refused the connection: {reason}")
        return present

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread (which closes the socket)."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, *topics: str, qos: int = 1) -> None:
        """Subscribe to every topic and wait for the SUBACK; retained messages follow it."""
        result, mid = self._client.subscribe([(topic, qos) for topic in topics])
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"subscribe {topics} not sent: {mqtt.error_string(result)}")
        acked_mid, reasons = _next(self._subacks, self.timeout, f"SUBACK for {topics}")
        if acked_mid != mid or any(r.is_failure for r in reasons):
            raise ConnectionError(f"subscribe {topics} refused: {reasons}")

    def barrier(self) -> None:
        """Wait until everything the broker sent before now has been received.

        Mosquitto handles one client's packets in order and writes its answers in order, so
        once the SUBACK of a throwaway subscription is back, the retained messages of every
        earlier subscription (sent right after their own SUBACK) have arrived too.
        """
        self.subscribe(f"barrier/{uuid.uuid4().hex}", qos=0)

    # -- publishing --------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish one message and, for QoS 1/2, wait for the broker's acknowledgement."""
        self.publish_many([(topic, payload)], qos=qos, retain=retain)

    def publish_many(
        self, messages: Sequence[tuple[str, bytes | str]], qos: int = 1, retain: bool = False
    ) -> None:
        """Publish in order, then wait until the broker has acknowledged every message."""
        infos = [self.publish_nowait(topic, payload, qos, retain) for topic, payload in messages]
        self.wait_published(infos)

    def publish_nowait(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        """Queue one message; its `is_published()` turns true on PUBACK (QoS 1)."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        info = self._client.publish(topic, data, qos, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish to {topic!r} refused: {mqtt.error_string(info.rc)}")
        return info

    def wait_published(
        self, infos: list[mqtt.MQTTMessageInfo], timeout: float | None = None
    ) -> None:
        """Wait until every message is acknowledged by the broker, or fail saying how many."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        missing = sum(not info.is_published() for info in infos)
        if missing:
            raise AssertionError(f"{missing} of {len(infos)} publishes not acknowledged in time")

    # -- what came in ------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every message received so far, in arrival order (a copy)."""
        with self._arrived:
            return list(self._received)

    def wait_for(
        self,
        predicate: Callable[[Received], bool],
        *,
        count: int = 1,
        timeout: float | None = None,
        what: str = "a matching message",
        give_up: Callable[[], str | None] | None = None,
    ) -> list[Received]:
        """Every received message matching `predicate`, once there are at least `count`.

        Fails with an AssertionError naming `what`, how many matched and the last messages
        received, when fewer than `count` matched within `timeout`, or as soon as `give_up`
        (checked every 0.1 s) returns a reason, such as "the gateway process exited".
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        matches: list[Received] = []
        seen = 0
        with self._arrived:
            while True:
                fresh = self._received[seen:]
                seen += len(fresh)
                matches += [m for m in fresh if predicate(m)]
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                reason = None if give_up is None else give_up()
                if remaining <= 0 or reason is not None:
                    tail = "\n  ".join(_show(m) for m in self._received[-5:]) or "(nothing)"
                    raise AssertionError(
                        f"{reason or f'waited {limit:g} s'} for {count} × {what} on "
                        f"{self.host}:{self.port}: {len(matches)} matched of {seen} received;"
                        f" the last:\n  {tail}"
                    )
                self._arrived.wait(remaining if give_up is None else min(remaining, 0.1))

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connacks.put((flags.session_present, reason))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subacks.put((mid, reasons))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = Received(message.topic, bytes(message.payload), message.qos, message.retain)
        with self._arrived:
            self._received.append(received)
            self._arrived.notify_all()


def _show(message: Received) -> str:
    payload = message.payload[:120].decode("utf-8", errors="replace")
    return f"{message.topic} retain={int(message.retain)} {payload!r}"


def _next(acks: queue.Queue[T], timeout: float, what: str) -> T:
    try:
        return acks.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"no {what} in {timeout} s") from None


class Mqtt311OnlyProxy:
    """A broker that speaks only MQTT 3.1.1: a loopback proxy in front of a real Mosquitto.

    An MQTT 5 CONNECT gets what a 3.1.1 broker answers (MQTT 3.1.1 §3.1.2.2: CONNACK with return
    code 1, unacceptable protocol version, then the connection is closed); every other
    connection is passed through to the broker unchanged. With `answer_mqtt5=False` it is
    like amqtt 0.12, which cannot parse an MQTT 5 CONNECT with a will and neither answers
    nor closes for seconds.
    """

    def __init__(self, host: str, port: int, *, answer_mqtt5: bool = True) -> None:
        self.upstream = (host, port)
        self.answer_mqtt5 = answer_mqtt5
        self.refused_mqtt5 = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._closing = False
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="mqtt311-proxy", daemon=True)

    @property
    def url(self) -> str:
        """The proxy's address, for a client to connect to."""
        return f"mqtt://127.0.0.1:{self._server.getsockname()[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._thread.join(5)
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            self._sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(5)
            head = _read_exactly(client, 2)  # packet type, first byte of the remaining length
            while head[-1] & 0x80:
                head += _read_exactly(client, 1)
            name_length = _read_exactly(client, 2)
            rest = _read_exactly(client, int.from_bytes(name_length) + 1)  # name, level
            if rest[-1] == 5:
                self.refused_mqtt5 += 1
                if self.answer_mqtt5:
                    client.sendall(b"\x20\x02\x00\x01")
                else:
                    client.settimeout(30)
                    while client.recv(1024):
                        pass  # no answer; wait for the client to give up
                client.close()
                return
            upstream = socket.create_connection(self.upstream, timeout=5)
            self._sockets.append(upstream)
            client.settimeout(None)
            upstream.settimeout(None)
            upstream.sendall(head + name_length + rest)
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
            _pipe(client, upstream)
        except OSError:
            client.close()


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
