"""The only module that talks to paho-mqtt. Everything else sees `Message` values.

The link subscribes to the site's whole tree (`{root}/{site}/#`, QoS 1) so that nothing sent
to the site is missed: inputs and mistyped topics go to the inbox (the decoder refuses what is
not an input, with a reason), the gateway's own output topics go to `on_output`. It speaks
MQTT 5 with *no local* (the broker does not echo the gateway's own publications) and falls back
to MQTT 3.1.1 on a broker that speaks only that, where the echoes are recognised by topic.

Inbound messages go into a bounded `Inbox`. The worker commits them to the store and only then
calls `ack`, so the broker redelivers anything not yet stored if the gateway dies (paho manual
ack, MQTT 3.1.1 §4.3.2, MQTT 5 §4.4). When the inbox is full, a QoS 1 message waits for room —
the broker's in-flight window then holds the rest back, unacknowledged — and a QoS 0 message
(at most once by definition) is dropped and counted. A payload over the size limit is never
queued whole: a 512-byte head is, for the decoder to refuse as `too_large`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import pathlib
import re
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.events import Message
from gateway.ingest.inbox import Inbox
from gateway.ingest.topics import Topics

log = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 65_536  # contract §7, --max-payload-bytes
OVERSIZE_HEAD_BYTES = 512  # what of an over-size payload is kept, for gateway/rejected
READ_AHEAD_BYTES = 65_536  # what the network thread asks of the socket at once
# QoS 1 publications in flight before the broker confirms them (MQTT 3.1.1; on MQTT 5 the
# broker's Receive Maximum): as wide as the broker's window toward the gateway.
OUT_WINDOW = 1000
WRITE_AT_ONCE_BYTES = 65_536  # queued packets joined into one send, up to this size
_PUBACK, _PUBLISH = 0x40, 0x30
WAIT_LOG_SECONDS = 30  # how often a blocked thread says that it still waits
RETRY_MAX_SECONDS = 60
# MQTT 5 drops a session at disconnect unless the CONNECT asks to keep it (§3.1.2.11.2): a
# week covers a long outage; the broker keeps the QoS 1 messages queued for the gateway.
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
# Some MQTT 3.1.1 brokers (amqtt 0.12) cannot parse an MQTT 5 CONNECT with a will: they neither
# answer nor close for seconds. No CONNACK this long on a first MQTT 5 attempt → try 3.1.1.
CONNACK_WAIT_SECONDS = 4.0
UNSUPPORTED_PROTOCOL = 132  # CONNACK reason (MQTT 5); paho maps a 3.1.1 broker's code 1 to it


def mask_url(url: str) -> str:
    """`url` with the password, if any, replaced by `***` (for logs and error messages)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:).*@", r"\1***@", url)


@dataclass(frozen=True)
class BrokerUrl:
    """Where and how to connect: `mqtt://[user[:password]@]host:port` or `mqtts://`, TLS files.

    The password never shows: not in `str()`, not in `repr()`, not in a parse error.
    """

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: pathlib.Path | None = None  # None: the system's CAs
    cert_file: pathlib.Path | None = None  # a client certificate (and key, if no key_file)
    key_file: pathlib.Path | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """Read a broker URL; raise ValueError saying what a good one looks like."""
        shown = mask_url(url)
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker {shown!r}: write mqtt://host:1883 or mqtts://host:8883")
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError:
            raise ValueError(f"broker {shown!r}: the port is not a number 1–65535") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def broker_from_options(
    url: str,
    *,
    password: str | None = None,
    password_file: pathlib.Path | None = None,
    ca_file: pathlib.Path | None = None,
    cert: pathlib.Path | None = None,
    key: pathlib.Path | None = None,
) -> BrokerUrl:
    """The broker of `run` (contract §7): URL, a password kept out of it, TLS files.

    The password comes from the URL, else `password` (PATROL_BROKER_PASSWORD), else the first
    line of `password_file` (PATROL_BROKER_PASSWORD_FILE). Raises ValueError saying what to fix.
    """
    broker = BrokerUrl.parse(url)
    if password is not None and password_file is not None:
        raise ValueError(
            "PATROL_BROKER_PASSWORD and PATROL_BROKER_PASSWORD_FILE are both set: keep one"
        )
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(
                f"cannot read the password file {password_file}: {exc.strerror}"
            ) from None
    if broker.password is None and password:
        if not broker.username:
            raise ValueError(f"a broker password needs a user: write mqtt://USER@host ({broker})")
        broker = _replace(broker, password=password)
    if (ca_file or cert or key) and not broker.tls:
        raise ValueError(f"--ca-file, --cert and --key are for mqtts:// brokers, not {broker}")
    if key and not cert:
        raise ValueError("--key needs --cert (the client certificate it belongs to)")
    for option, path in (("--ca-file", ca_file), ("--cert", cert), ("--key", key)):
        if path is not None and not path.is_file():
            raise ValueError(f"{option} {path}: no such file")
    return _replace(broker, ca_file=ca_file, cert_file=cert, key_file=key)


def _replace(broker: BrokerUrl, **changes: Any) -> BrokerUrl:
    return dataclasses.replace(broker, **changes)


def retry_delay(failures: int) -> int:
    """Seconds to wait after `failures` failed attempts in a row: 1, 2, 4, … 60."""
    return int(min(2 ** max(failures - 1, 0), RETRY_MAX_SECONDS))


@dataclass(frozen=True)
class LinkHealth:
    """The link's state for a health check."""

    connected: bool
    since: dt.datetime | None  # when `connected` last changed (or the link started)
    last_error: str | None  # why the last attempt failed (kept after a success, for context)
    attempts: int  # failed attempts since the last successful connection


# What paho gives a PUBLISH without properties and a PUBACK of success: made once and shared
# (nothing changes them), where paho makes new ones for every packet.
_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_PUBACK_SUCCESS = ReasonCode(PacketTypes.PUBACK)
_PUBACK_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]


class _Client(paho.Client):
    """paho's client, telling why a connection attempt failed (paho only says that it did), and
    reading the socket ahead: paho asks for each packet's first byte, then each byte of its
    length, then the rest, one system call each (docs/benchmarks.md)."""

    def __init__(
        self, on_attempt: Callable[[], None], on_error: Callable[[OSError], None], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._on_attempt = on_attempt
        self._on_error = on_error
        self._ahead = b""  # bytes read from the socket beyond what paho has asked for so far
        self._ahead_at = 0
        # A wake-up byte is on its way to the network thread, which has not yet written what
        # was queued: packets queued meanwhile go out with that write and need no byte of their
        # own (paho sends one per packet, a system call each).
        self._wake_pending = False
        # The QoS 1/2 messages paho queued (window full), in order: sent as PUBACKs make room.
        self._queued: deque[int] = deque()

    def publish(
        self,
        topic: str,
        payload: Any = None,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> paho.MQTTMessageInfo:
        """paho's publish, remembering a message it queued (under paho's own lock, so the
        network thread sees it as soon as paho does)."""
        if qos == 0:
            return super().publish(topic, payload, qos, retain, properties)
        with self._out_message_mutex:  # an RLock: paho takes it again inside
            info = super().publish(topic, payload, qos, retain, properties)
            message = self._out_messages.get(info.mid)
            if message is not None and message.state == paho.mqtt_ms_queued:
                self._queued.append(info.mid)
        return info

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        """paho's, without matching each topic against per-topic callbacks first (the link
        registers none, and the walk over paho's topic tree was 5 % of the link's time)."""
        on_message = self.on_message
        if on_message is None:
            return
        with self._in_callback_mutex:
            try:
                on_message(self, self._userdata, message)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise

    def _handle_publish(self) -> MQTTErrorCode:
        """paho's, for the common PUBLISH (QoS 0 or 1 with MQTT 5 and no properties) without
        building an empty `Properties` per message (a fifth of the link's time, py-spy);
        anything else (properties, QoS 2, MQTT 3, a short packet) goes paho's way."""
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        size = len(packet)
        if self._protocol != MQTTProtocolVersion.MQTTv5 or qos == 2 or size < 2:
            return super()._handle_publish()
        end = 2 + ((packet[0] << 8) | packet[1])  # after the topic
        at = end + 2 if qos else end  # after the packet id
        if size <= at or packet[at] != 0:  # properties follow (or it is cut short)
            return super()._handle_publish()
        mid = (packet[end] << 8) | packet[end + 1] if qos else 0
        message = paho.MQTTMessage(mid=mid, topic=bytes(packet[2:end]))
        message.dup = bool(header & 0x08)
        message.qos = qos
        message.retain = bool(header & 0x01)
        message.properties = _PUBLISH_PROPERTIES
        message.payload = bytes(packet[at + 1 :])
        message.timestamp = paho.time_func()
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        """paho's, without a reason code and properties made for a PUBACK that has neither
        (success: MQTT 5 lets the broker leave them out, and MQTT 3 has none); paho made both
        for each answer confirmed (a seventh of the link's time, py-spy)."""
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid = (packet[0] << 8) | packet[1]
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, _PUBACK_SUCCESS, _PUBACK_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _messages_reconnect_reset_out(self) -> None:
        with self._out_message_mutex:
            super()._messages_reconnect_reset_out()
            self._queued = deque(
                mid for mid, m in self._out_messages.items() if m.state == paho.mqtt_ms_queued
            )

    def reconnect(self) -> MQTTErrorCode:
        """Connect (TCP, TLS handshake, CONNECT); report an OSError before paho retries."""
        self._ahead, self._ahead_at = b"", 0
        self._wake_pending = False
        self._on_attempt()
        try:
            return super().reconnect()
        except OSError as exc:
            self._on_error(exc)
            raise

    def _sock_recv(self, bufsize: int) -> bytes:
        ahead, at = self._ahead, self._ahead_at
        if at < len(ahead):
            self._ahead_at = min(at + bufsize, len(ahead))
            return ahead[at : self._ahead_at]
        data = super()._sock_recv(max(bufsize, READ_AHEAD_BYTES))
        if len(data) <= bufsize:
            self._ahead, self._ahead_at = b"", 0
            return data
        self._ahead, self._ahead_at = data, bufsize
        return data[:bufsize]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read what the socket has, and everything already read ahead: those bytes would
        otherwise wait until the broker sends more (paho reads a few packets per wake-up)."""
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._ahead_at < len(self._ahead):
            if self._sock is None:
                break
            rc = super().loop_read(max_packets)
        return rc

    def _sock_close(self) -> None:
        self._ahead, self._ahead_at = b"", 0
        self._wake_pending = False
        super()._sock_close()

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: paho.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        if self._thread is None or self._sockpairW is None:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append(
            {
                "command": command,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": info,
            }
        )
        # Queued before the flag is read: if a byte is on its way, the network thread clears
        # the flag later and then writes out the queue, this packet with it.
        if not self._wake_pending:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError):
                self._sockpairW.send(b"0")
        self._call_socket_register_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _update_inflight(self) -> MQTTErrorCode:
        """Send queued messages while the window has room: paho's own walks every message in
        flight to find the queued ones after each PUBACK (a third of the link's time with 1000
        in flight, py-spy); this takes them from the front of `_queued`. paho's caller holds
        its `_out_message_mutex`."""
        queued, out = self._queued, self._out_messages
        limit = self._max_inflight_messages
        while queued and (limit == 0 or self._inflight_messages < limit):
            message = out.get(queued.popleft())
            if message is None or message.qos == 0 or message.state != paho.mqtt_ms_queued:
                continue  # confirmed, or sent on a reconnect, meanwhile
            self._inflight_messages += 1
            message.state = (
                paho.mqtt_ms_wait_for_puback if message.qos == 1 else paho.mqtt_ms_wait_for_pubrec
            )
            rc = self._send_publish(
                message.mid,
                message.topic.encode("utf-8"),
                message.payload,
                message.qos,
                message.retain,
                message.dup,
                properties=message.properties,
            )
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def limit_inflight(self, count: int) -> None:
        """At the CONNACK: send no more unconfirmed QoS 1 messages than the broker's Receive
        Maximum (MQTT 5 §3.2.2.3.3). paho's `max_inflight_messages_set` refuses a change on an
        established connection; the window only decides when the next one is sent."""
        self._max_inflight_messages = count

    def loop_write(self) -> MQTTErrorCode:
        """Write what is queued; the next packet queued sends a wake-up byte again."""
        self._wake_pending = False
        return super().loop_write()

    def _packet_write(self) -> MQTTErrorCode:
        """Join the acknowledgements and QoS 1 publications queued into one send (paho sends
        each packet on its own); other packets (QoS 0, DISCONNECT) keep paho's handling."""
        out = self._out_packet
        if len(out) > 1 and out[0]["pos"] == 0:
            joined: list[bytes | bytearray] = []
            size = 0
            while out and size < WRITE_AT_ONCE_BYTES:
                head = out[0]
                kind = head["command"] & 0xF0
                if not (kind == _PUBACK or (kind == _PUBLISH and head["qos"] > 0)):
                    break
                out.popleft()
                joined.append(head["packet"])
                size += len(head["packet"])
            if joined:
                data = b"".join(joined)
                # Written as one PUBACK-like packet: paho does nothing after writing either.
                out.appendleft(
                    {
                        "command": _PUBACK,
                        "mid": 0,
                        "qos": 1,
                        "pos": 0,
                        "to_process": len(data),
                        "packet": data,
                        "info": None,
                    }
                )
        return super()._packet_write()


@dataclass
class _Sent:
    """A QoS 1 publication, kept so it can be sent again on a new client (protocol fallback)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    info: paho.MQTTMessageInfo

    def confirmed(self) -> bool:
        try:
            return bool(self.info.is_published())
        except (RuntimeError, ValueError):
            return False


class MqttLink:
    """A paho client with a fixed id, a persistent session, the site's tree and a last will."""

    def __init__(
        self,
        broker: BrokerUrl,
        client_id: str,
        topics: Topics,
        inbox: Inbox,
        clock: Callable[[], dt.datetime],
        *,
        on_connected: Callable[[bool], None] | None = None,
        on_output: Callable[[Message], None] | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        outbox_limit: int = 0,
        mqtt5: bool = True,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.topics = topics
        self.status_topic = topics.gateway_status
        self.inbox = inbox
        self.clock = clock
        self.on_connected = on_connected
        self.on_output = on_output
        self.max_payload_bytes = max_payload_bytes
        self.outbox_limit = outbox_limit
        self.mqtt5 = mqtt5
        self.connected = threading.Event()
        self.dropped_qos0 = 0  # QoS 0 messages dropped because the inbox was full
        self.oversize = 0  # messages cut to their head (refused by the decoder as too_large)
        self.publish_waits = 0  # times a publication waited for room in paho's queue
        self._closing = False
        self._lock = threading.Lock()  # the health fields and the client (swapped on fallback)
        # Held around a publication and around the fallback's swap of clients, never in a paho
        # callback (those run with paho's own locks held).
        self._swap_lock = threading.Lock()
        self._room = threading.Condition()  # notified on every PUBACK: paho's queue has room
        self._confirmations = 0
        self._since: dt.datetime | None = None
        self._last_error: str | None = None
        self._attempts = 0
        self._ever_connected = False
        self._connack = False  # the broker answered the current attempt's CONNECT
        self._attempt_id = 0
        self._falling_back = False
        self._unsettled: list[_Sent] = []  # QoS 1 sent before the protocol is known
        self._client = self._new_client()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; reconnects with a growing interval (1 s … 60 s)."""
        with self._lock:
            self._since = _now()
            client = self._client
        self._connect(client)

    def stop(self) -> None:
        """Say offline (retained), disconnect cleanly, stop the network thread."""
        self._closing = True
        with self._room:
            self._room.notify_all()
        with self._lock:
            client = self._client
        if self.connected.is_set():
            info = client.publish(self.status_topic, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=5)
            except (ValueError, RuntimeError) as exc:  # not queued (a full bounded queue)
                log.warning("未能发布离线状态 / could not say offline: %s", exc)
        client.disconnect()
        client.loop_stop()

    def health(self) -> LinkHealth:
        """Connected or not, since when, the last error and the failed attempts in a row."""
        with self._lock:
            return LinkHealth(
                self.connected.is_set(), self._since, self._last_error, self._attempts
            )

    @property
    def counters(self) -> dict[str, int]:
        """What the link counted since it started."""
        return {
            "dropped_qos0": self.dropped_qos0,
            "oversize": self.oversize,
            "publish_waits": self.publish_waits,
        }

    # -- the worker's side -------------------------------------------------------------------

    def ack(self, msg: Message) -> None:
        """Acknowledge a stored message to the broker (no-op for QoS 0)."""
        if msg.qos > 0:
            with self._lock:
                client = self._client
            client.ack(msg.mid, msg.qos)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Callable[[], bool] | None:
        """Queue a publication; returns "has the broker confirmed it?", or None if refused.

        While disconnected paho keeps QoS 1 publications and sends them on reconnect. By
        default (`outbox_limit=0`) paho's queue has no bound, so the worker never waits for the
        network thread: that thread may itself be waiting for room in the worker's inbox, and
        the two would wait for each other for ever (a drain of 40,000 messages stopped dead
        with a bound of 10,000). The answers keep pace with the messages through a window as
        wide as the broker's (`OUT_WINDOW`). With a bound, a QoS 1 publication waits for room
        (late rather than never) and only a QoS 0 one is refused (None: the caller counts it).
        None for QoS 1 only once the link is stopping.
        """
        waited = 0
        while True:
            with self._room:
                seen = self._confirmations
            with self._swap_lock:
                info = self._client.publish(topic, payload, qos=qos, retain=retain)
                if info.rc == paho.MQTT_ERR_NO_CONN and qos > 0:
                    # paho keeps it and sends it on reconnect, but leaves rc set, and
                    # is_published() would then raise even after the PUBACK: say it is queued.
                    info.rc = paho.MQTT_ERR_SUCCESS
                if info.rc == paho.MQTT_ERR_SUCCESS and qos > 0 and not self._ever_connected:
                    sent = _Sent(topic, payload, qos, retain, info)
                    self._unsettled.append(sent)
                    return sent.confirmed
            if info.rc != paho.MQTT_ERR_QUEUE_SIZE or qos == 0 or self._closing:
                break
            waited += 1
            self.publish_waits += 1
            if waited % WAIT_LOG_SECONDS == 1:
                log.warning(
                    "发送队列已满，等待 / the outgoing queue (%d) is full: %s waits (%d s so far);"
                    " is the broker slow or away?",
                    self.outbox_limit,
                    topic,
                    waited - 1,
                )
            with self._room:
                if self._confirmations == seen and not self._closing:
                    self._room.wait(1.0)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return None
        return _Sent(topic, payload, qos, retain, info).confirmed

    # -- the client --------------------------------------------------------------------------

    def _new_client(self) -> _Client:
        client = _Client(
            self._attempt_started,
            self._attempt_failed,
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            # MQTT 5 keeps the session through clean_start=False and its expiry (CONNECT).
            clean_session=None if self.mqtt5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if self.mqtt5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=True,
        )
        client.manual_ack_set(True)
        client.max_queued_messages_set(self.outbox_limit)
        # Scan answers go out as fast as messages come in: a window narrower than the broker's
        # toward the gateway (deploy/mosquitto.conf: 1000) makes them fall behind in a burst.
        # On MQTT 5 the broker's Receive Maximum replaces it at the CONNACK.
        client.max_inflight_messages_set(OUT_WINDOW)
        client.reconnect_delay_set(1, 1)  # set after every failure (retry_delay)
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        if self.broker.username:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set_context(_tls_context(self.broker))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def _connect(self, client: _Client) -> None:
        properties = None
        if self.mqtt5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        client.connect_async(
            self.broker.host, self.broker.port, 30, clean_start=False, properties=properties
        )
        client.loop_start()

    def _fall_back_to_mqtt311(self, old: paho.Client) -> None:
        """A new client that speaks 3.1.1, with what the old one had queued (another thread)."""
        with self._lock:
            if self._falling_back or old is not self._client or not self.mqtt5:
                return  # falling back already
            self._falling_back = True
        old.disconnect()
        old.loop_stop()
        with self._swap_lock:
            if self._closing or not self.mqtt5:
                return
            self.mqtt5 = False
            new = self._new_client()
            for sent in self._unsettled:
                if not sent.confirmed():
                    sent.info = new.publish(sent.topic, sent.payload, sent.qos, sent.retain)
                    sent.info.rc = paho.MQTT_ERR_SUCCESS  # queued until connected
            with self._lock:
                self._client = new
        self._connect(new)

    def _attempt_started(self) -> None:
        self._connack = False
        self._attempt_id += 1
        if self.mqtt5 and not self._ever_connected:
            with self._lock:
                client = self._client
            timer = threading.Timer(
                CONNACK_WAIT_SECONDS, self._no_connack, args=(self._attempt_id, client)
            )
            timer.daemon = True
            timer.start()

    def _no_connack(self, attempt: int, client: paho.Client) -> None:
        if attempt != self._attempt_id or self._connack or self._closing:
            return
        log.warning(
            "代理未应答 MQTT 5 连接 / %s has not answered an MQTT 5 CONNECT in %g s:"
            " reconnecting with MQTT 3.1.1",
            self.broker,
            CONNACK_WAIT_SECONDS,
        )
        self._fall_back_to_mqtt311(client)

    def _attempt_failed(self, error: OSError | str) -> None:
        """Count a failed attempt, say so (not every time), and set the wait before the next."""
        if isinstance(error, ssl.SSLError):
            reason = f"TLS handshake failed: {error}"
        elif isinstance(error, OSError):
            reason = error.strerror or str(error) or type(error).__name__
        else:
            reason = error
        with self._lock:
            self._attempts += 1
            attempts, changed = self._attempts, reason != self._last_error
            self._last_error = reason
            client = self._client
        delay = retry_delay(attempts)
        client.reconnect_delay_set(delay, delay)
        if attempts == 1 and not self._ever_connected:
            log.error(
                "首次连接代理失败 / the first connection to %s failed: %s; retrying in %d s",
                self.broker,
                reason,
                delay,
            )
        elif changed or delay < RETRY_MAX_SECONDS or attempts % 10 == 0:
            log.error(
                "仍无法连接代理 / still cannot connect to %s (%d attempts): %s; retrying in %d s",
                self.broker,
                attempts,
                reason,
                delay,
            )

    # -- paho callbacks (network thread: never block long, never raise) ----------------------

    def _on_connect(
        self, client: paho.Client, _u: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connack = True
        if reason.is_failure:
            if reason.value == UNSUPPORTED_PROTOCOL and self.mqtt5:
                log.warning(
                    "代理仅支持 MQTT 3.1.1 / %s speaks MQTT 3.1.1 only: reconnecting with it"
                    " (the gateway's own publications then come back and are ignored)",
                    self.broker,
                )
                threading.Thread(
                    target=self._fall_back_to_mqtt311, args=(client,), name="mqtt-fallback"
                ).start()
                return
            self._attempt_failed(f"the broker refused the connection: {reason}")
            return
        receive_maximum = getattr(props, "ReceiveMaximum", None)
        if isinstance(receive_maximum, int) and receive_maximum > 0 and isinstance(client, _Client):
            client.limit_inflight(min(receive_maximum, OUT_WINDOW))  # no more than it takes
        if self.mqtt5:
            # No local: the broker does not send the gateway its own scan answers and alerts.
            # Retain as published: a retained scan is seen as retained, and refused, at once.
            options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True)
            client.subscribe([(t, options) for t in self.topics.subscriptions()])
        else:
            client.subscribe([(t, 1) for t in self.topics.subscriptions()])
        client.publish(self.status_topic, b"online", qos=1, retain=True)
        with self._lock:
            after = self._attempts
            self._attempts = 0
            self._since = _now()
            self._ever_connected = True
            self._unsettled.clear()
        client.reconnect_delay_set(1, 1)
        self.connected.set()
        log.info(
            "已连接 / connected to %s (MQTT %s)%s",
            self.broker,
            "5" if self.mqtt5 else "3.1.1",
            f" after {after} failed attempts" if after else "",
        )
        if self.on_connected is not None:
            self.on_connected(bool(flags.session_present))

    def _on_disconnect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self.connected.is_set():
            if self.mqtt5 and not (self._connack or self._ever_connected or self._falling_back):
                # Some 3.1.1 brokers (amqtt 0.12) cannot parse an MQTT 5 CONNECT with a will
                # and close the connection instead of answering it (3.1.1 §3.1.2.2).
                log.warning(
                    "代理未应答 MQTT 5 连接 / %s closed the connection without answering an MQTT"
                    " 5 CONNECT: reconnecting with MQTT 3.1.1",
                    self.broker,
                )
                threading.Thread(
                    target=self._fall_back_to_mqtt311, args=(client,), name="mqtt-fallback"
                ).start()
            return  # a refused or failed attempt: already reported
        self.connected.clear()
        with self._lock:
            self._since = _now()
            self._last_error = f"disconnected: {reason}"
        if not self._closing:
            log.warning("与代理断开 / disconnected from %s: %s; reconnecting", self.broker, reason)

    def _on_publish(self, _c: paho.Client, _u: Any, _mid: int, _r: Any, _p: Any) -> None:
        with self._room:
            self._confirmations += 1
            self._room.notify_all()

    def _on_message(self, client: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        try:
            self._receive(client, m)
        except Exception:  # an exception here would stop paho's network thread
            log.exception("处理入站消息失败 / could not take an inbound message")

    def _receive(self, client: paho.Client, m: paho.MQTTMessage) -> None:
        topic = m.topic
        if self.topics.is_output(topic):
            if m.qos > 0:
                client.ack(m.mid, m.qos)
            # On 3.1.1 a live message here is most likely the gateway's own echo; a retained
            # one is state left on the broker (an earlier run's alerts). MQTT 5 echoes nothing.
            if self.on_output is not None and (self.mqtt5 or m.retain):
                msg = Message(topic, bytes(m.payload), self.clock(), m.qos, bool(m.retain), m.mid)
                self.on_output(msg)
            return
        size = len(m.payload)
        if size > self.max_payload_bytes:
            self.oversize += 1
            payload, oversize = bytes(m.payload[:OVERSIZE_HEAD_BYTES]), size
        else:
            payload, oversize = bytes(m.payload), 0
        msg = Message(topic, payload, self.clock(), m.qos, bool(m.retain), m.mid, oversize)
        if m.qos == 0:
            if not self.inbox.put_nowait(msg):
                self.dropped_qos0 += 1
            return
        waited = 0
        while not self._closing:
            # Waiting is the backpressure: unacknowledged, the broker holds the rest back.
            # Stopping drops the message unacknowledged: the broker redelivers it.
            if self.inbox.put(msg, timeout=1.0):
                return
            waited += 1
            if waited % WAIT_LOG_SECONDS == 0:
                log.error("入站队列已满 / inbox full for %d s: is the store stuck?", waited)


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails: paho drops it unclosed, one per attempt."""

    def do_handshake(self, block: bool = False) -> None:
        """The TLS handshake; on failure the socket is closed before the error goes up."""
        try:
            super().do_handshake(block)
        except OSError:
            self.close()
            raise


def _tls_context(broker: BrokerUrl) -> ssl.SSLContext:
    """Verify the broker (its CA file, else the system's) and the host name; client cert."""
    context = ssl.create_default_context(cafile=_str(broker.ca_file))
    if broker.cert_file is not None:
        context.load_cert_chain(broker.cert_file, broker.key_file)
    context.sslsocket_class = _ClosingSSLSocket
    return context


def _now() -> dt.datetime:
    # Health is about the process, not the site's events: real time even under a test clock.
    return dt.datetime.now(dt.UTC)


def _str(path: pathlib.Path | None) -> str | None:
    return None if path is None else os.fspath(path)
