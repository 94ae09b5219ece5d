"""The link's client writes what one batch queued (acknowledgements, answers) in one send and
wakes its network thread once for it, where paho sends each packet and a wake-up byte apiece
(docs/benchmarks.md); nothing may be lost, reordered or left waiting."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ingest.mqtt import _Client


class _Socket:
    """Records each send; `accept` bytes at most per send (a full socket buffer)."""

    def __init__(self, accept: int = 1 << 20) -> None:
        self.sent: list[bytes] = []
        self.accept = accept

    def send(self, data: Any) -> int:
        chunk = bytes(data[: self.accept])
        self.sent.append(chunk)
        return len(chunk)


def _client() -> _Client:
    return _Client(
        lambda: None,
        lambda _e: None,
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=paho.MQTTv311,
    )


def _puback(mid: int) -> bytes:
    return bytes([0x40, 2]) + mid.to_bytes(2, "big")


def _publish(mid: int, qos: int) -> bytes:
    body = b"\x00\x03a/b" + (mid.to_bytes(2, "big") if qos else b"") + b"{}"
    return bytes([0x30 | (qos << 1), len(body)]) + body


def _queue(client: _Client, packet: bytes, qos: int, mid: int) -> None:
    client._out_packet.append(
        {
            "command": packet[0],
            "mid": mid,
            "qos": qos,
            "pos": 0,
            "to_process": len(packet),
            "packet": packet,
            "info": paho.MQTTMessageInfo(mid),
        }
    )


def test_acks_and_qos1_publications_are_joined_into_one_send() -> None:
    """Twenty acknowledgements and five QoS 1 answers go out in one send, in order; a QoS 0
    publication keeps paho's own handling (its on_publish), so the join stops before it."""
    client, sock = _client(), _Socket()
    client._sock = sock  # type: ignore[assignment]
    try:
        first = [_puback(i) for i in range(1, 21)] + [_publish(i, 1) for i in range(21, 26)]
        for i, packet in enumerate(first):
            _queue(client, packet, 1, i + 1)
        qos0 = _publish(0, 0)
        _queue(client, qos0, 0, 99)
        _queue(client, _puback(30), 1, 30)
        assert client._packet_write() == paho.MQTT_ERR_SUCCESS
        assert sock.sent == [b"".join(first), qos0, _puback(30)]
        assert not client._out_packet
    finally:
        client._sock = None


def test_a_partial_send_is_finished_by_the_next_write() -> None:
    """When the socket takes only part of the joined bytes, the rest goes next, whole and in
    order (a join that forgot its position would repeat or drop acknowledgements)."""
    client, sock = _client(), _Socket(accept=7)
    client._sock = sock  # type: ignore[assignment]
    try:
        packets = [_puback(i) for i in range(1, 11)]
        for i, packet in enumerate(packets):
            _queue(client, packet, 1, i + 1)
        for _ in range(20):
            client._packet_write()
        assert b"".join(sock.sent) == b"".join(packets)
        assert not client._out_packet
    finally:
        client._sock = None


def test_one_wake_up_byte_until_the_network_thread_writes() -> None:
    """Packets queued by the worker while a wake-up byte is on its way send no byte of their
    own, and are written with the first; once the network thread has written, the next packet
    wakes it again (without that byte it would wait in the queue until the loop's timeout)."""
    client, sock, wake = _client(), _Socket(), _Socket()
    client._sock = sock  # type: ignore[assignment]
    client._sockpairW = wake  # type: ignore[assignment]
    client._thread = threading.current_thread()
    try:
        for mid in range(1, 11):
            client._packet_queue(0x40, _puback(mid), mid, 1)
        assert len(wake.sent) == 1
        assert client.loop_write() == paho.MQTT_ERR_SUCCESS
        assert sock.sent == [b"".join(_puback(m) for m in range(1, 11))]
        client._packet_queue(0x40, _puback(11), 11, 1)
        assert len(wake.sent) == 2
        client.loop_write()
        assert sock.sent[-1] == _puback(11)
    finally:
        client._thread = None
        client._sockpairW = None
        client._sock = None
