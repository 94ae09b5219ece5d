"""The link's client reads the commonest packets (a PUBLISH without properties, a PUBACK of
success) without paho's per-packet objects (docs/benchmarks.md): what reaches the callbacks must
be what paho's own reading gives, and every other packet must still take paho's way."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway.ingest.mqtt import _PUBACK_SUCCESS, _PUBLISH_PROPERTIES, _Client


def _client(protocol: MQTTProtocolVersion, manual_ack: bool = True) -> _Client:
    client = _Client(
        lambda: None,
        lambda _e: None,
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=protocol,
        manual_ack=manual_ack,
    )
    client._send_puback = lambda mid: client.acked.append(mid) or paho.MQTT_ERR_SUCCESS  # type: ignore[attr-defined, assignment, func-returns-value]
    client.acked = []  # type: ignore[attr-defined]
    return client


def _seen(client: paho.Client, header: int, packet: bytes, fast: bool) -> list[Any]:
    """What on_message receives for one PUBLISH, through the fast path or paho's own."""
    got: list[Any] = []
    client.on_message = lambda _c, _u, m: got.append(
        (m.topic, m.payload, m.qos, m.retain, m.dup, m.mid, str(m.properties), m.properties)
    )
    client._in_packet = {"command": header, "packet": packet}  # type: ignore[assignment]
    handle = client._handle_publish if fast else super(_Client, client)._handle_publish
    assert handle() == paho.MQTT_ERR_SUCCESS
    return got


def _publish(qos: int, properties: bytes, topic: bytes = b"estate/zcity/reader/fd-1/scan") -> bytes:
    mid = b"\x01\x2c" if qos else b""
    return len(topic).to_bytes(2, "big") + topic + mid + properties + b'{"seq": 1}'


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311])
@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("flags", [0x00, 0x01, 0x08, 0x09])  # retain, dup
@pytest.mark.parametrize(
    "properties",
    [b"\x00", b"\x02\x01\x01"],  # none; payload format indicator = 1 (paho's way)
)
def test_publish_reads_as_paho_reads_it(
    protocol: MQTTProtocolVersion, qos: int, flags: int, properties: bytes
) -> None:
    """A field read wrong (topic, payload, packet id, retain, dup) would store or answer the
    wrong message, or acknowledge the wrong one."""
    v5 = protocol == MQTTProtocolVersion.MQTTv5
    packet = _publish(qos, properties if v5 else b"")
    header = 0x30 | (qos << 1) | flags
    (fast,) = _seen(_client(protocol), header, packet, fast=True)
    (plain,) = _seen(_client(protocol), header, packet, fast=False)
    assert fast[:-1] == plain[:-1]
    # The common packet (MQTT 5, no properties) took the fast path: paho's empty properties
    # object shared, not a new one.
    assert (fast[-1] is _PUBLISH_PROPERTIES) == (v5 and properties == b"\x00")


@pytest.mark.parametrize("manual", [True, False])
def test_publish_acknowledged_as_paho_does(manual: bool) -> None:
    """paho sends the PUBACK itself unless the link acknowledges after commit (manual)."""
    fast, plain = (
        _client(MQTTProtocolVersion.MQTTv5, manual),
        _client(MQTTProtocolVersion.MQTTv5, manual),
    )
    _seen(fast, 0x32, _publish(1, b"\x00"), fast=True)
    _seen(plain, 0x32, _publish(1, b"\x00"), fast=False)
    assert fast.acked == plain.acked == ([] if manual else [300])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("protocol", "packet"),
    [
        (MQTTProtocolVersion.MQTTv5, b"\x00\x02"),
        (MQTTProtocolVersion.MQTTv5, b"\x00\x02\x00"),
        (MQTTProtocolVersion.MQTTv5, b"\x00\x02\x10\x00"),
        (MQTTProtocolVersion.MQTTv311, b"\x00\x02"),  # MQTT 3.1.1 has only this one
    ],
)
def test_puback_confirms_as_paho_does(protocol: MQTTProtocolVersion, packet: bytes) -> None:
    """A PUBACK must confirm its own message (and only it), with the reason code paho gives;
    one with a reason code (no matching subscribers, 0x10) still goes paho's way."""
    fast, fast_left = _confirmed(protocol, packet, fast=True)
    plain, plain_left = _confirmed(protocol, packet, fast=False)
    assert [c[:3] for c in fast] == [c[:3] for c in plain] and fast_left == plain_left
    assert [c[0] for c in fast] == [2] and fast_left == [1, 3]
    # The plain PUBACK took the fast path: paho's reason code object shared, not a new one.
    assert (fast[0][3] is _PUBACK_SUCCESS) == (len(packet) == 2)


def _confirmed(
    protocol: MQTTProtocolVersion, packet: bytes, fast: bool
) -> tuple[list[Any], list[int]]:
    """What on_publish receives for one PUBACK with three answers in flight, and what is left."""
    client = _client(protocol)
    confirmed: list[Any] = []
    client.on_publish = lambda _c, _u, mid, rc, props: confirmed.append(
        (mid, rc.value, str(props), rc)
    )
    for _ in range(3):
        client.publish("estate/zcity/reader/fd-1/ack", b"{}", qos=1)  # ids 1, 2, 3
    client._in_packet = {"command": 0x40, "packet": packet}  # type: ignore[assignment]
    handle = client._handle_pubackcomp if fast else super(_Client, client)._handle_pubackcomp
    assert handle("PUBACK") == paho.MQTT_ERR_SUCCESS
    return confirmed, sorted(client._out_messages)
