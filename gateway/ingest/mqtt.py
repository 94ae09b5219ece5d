"""The only module that talks to paho-mqtt. Everything else sees `Message` values.

Inbound messages go into a bounded queue. The worker commits them to the store and only then
calls `ack`, so the broker redelivers anything not yet stored if the gateway dies (paho manual
ack, MQTT 3.1.1 §4.3.2). When the queue is full, a QoS 1 message waits for room — the broker's
in-flight window (Mosquitto `max_inflight_messages`) then holds the rest back, unacknowledged —
and a QoS 0 message (at most once by definition) is dropped and counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.events import Message

log = logging.getLogger(__name__)

QOS1_WAIT_SECONDS = 30  # how often a blocked network thread says so


@dataclass(frozen=True)
class BrokerUrl:
    """A parsed `mqtt://[user:password@]host:port` or `mqtts://` address."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """Read a broker URL; raise ValueError saying what a good one looks like."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker {url!r}: write mqtt://host:1883 or mqtts://host:8883")
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError as exc:
            raise ValueError(f"broker {url!r}: the port is not a number 1–65535") from exc
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class MqttLink:
    """A paho client with a fixed id, a persistent session, QoS 1 subscriptions and a last will."""

    def __init__(
        self,
        broker: BrokerUrl,
        client_id: str,
        subscriptions: list[str],
        status_topic: str,
        inbox: queue.Queue[Message],
        clock: Callable[[], dt.datetime],
        on_connected: Callable[[bool], None] | None = None,
        ignore: Callable[[str], bool] | None = None,
        outbox_limit: int = 10_000,
    ) -> None:
        self.broker = broker
        self.subscriptions = subscriptions
        self.status_topic = status_topic
        self.inbox = inbox
        self.clock = clock
        self.on_connected = on_connected
        self.ignore = ignore or (lambda _topic: False)
        self.dropped_qos0 = 0
        self.connected = threading.Event()
        self._closing = False
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,  # persistent session: the broker keeps QoS 1 while we are away
            protocol=MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
        )
        self._client.manual_ack_set(True)
        self._client.max_queued_messages_set(outbox_limit)
        # Scan answers go out in bursts; paho's default window of 20 unconfirmed makes them wait.
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(1, 30)
        self._client.will_set(status_topic, b"offline", qos=1, retain=True)
        if broker.username:
            self._client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself with backoff."""
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        """Say offline (retained), disconnect cleanly, stop the network thread."""
        self._closing = True
        if self.connected.is_set():
            info = self._client.publish(self.status_topic, b"offline", qos=1, retain=True)
            info.wait_for_publish(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, msg: Message) -> None:
        """Acknowledge a stored message to the broker (no-op for QoS 0)."""
        if msg.qos > 0:
            self._client.ack(msg.mid, msg.qos)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Callable[[], bool] | None:
        """Queue a publication; returns "has the broker confirmed it?", or None if refused.

        While disconnected paho keeps QoS 1 publications and sends them on reconnect; None
        means its bounded queue is full (the caller counts it, or keeps it in its outbox).
        """
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == paho.MQTT_ERR_NO_CONN and qos > 0:
            # paho keeps it and sends it on reconnect, but leaves rc set, and is_published()
            # would then raise even after the PUBACK: the message is queued, say so.
            info.rc = paho.MQTT_ERR_SUCCESS
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return None

        def confirmed() -> bool:
            try:
                return info.is_published()
            except (RuntimeError, ValueError):
                return False

        return confirmed

    # -- paho callbacks (network thread: never block long, never raise) ----------------------

    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("代理拒绝连接 / broker refused the connection: %s", reason)
            return
        # Subscribing here means a reconnect resubscribes (the session may have been lost).
        client.subscribe([(t, 1) for t in self.subscriptions])
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        self.connected.set()
        log.info("已连接 / connected to %s", self.broker)
        if self.on_connected is not None:
            self.on_connected(bool(flags.session_present))

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if self._closing:
            return
        log.warning("与代理断开 / disconnected from %s: %s; reconnecting", self.broker, reason)

    def _on_message(self, _c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        if self.ignore(m.topic):
            if m.qos > 0:
                self._client.ack(m.mid, m.qos)
            return
        msg = Message(m.topic, bytes(m.payload), self.clock(), m.qos, bool(m.retain), m.mid)
        if m.qos == 0:
            try:
                self.inbox.put_nowait(msg)
            except queue.Full:
                self.dropped_qos0 += 1
            return
        waited = 0
        while not self._closing:
            try:
                self.inbox.put(msg, timeout=1.0)
                return
            except queue.Full:
                # Waiting is the backpressure: unacknowledged, the broker holds the rest back.
                # Stopping drops the message unacknowledged: the broker redelivers it.
                waited += 1
                if waited % QOS1_WAIT_SECONDS == 0:
                    log.error("入站队列已满 / inbox full for %d s: is the store stuck?", waited)
