"""The speed-ups of issue 7 §4 must give exactly what the plain code gave: the duty rules' indexed
patrol time and signatures against a pass over the scans, and the orjson fast path of the decoder
against the standard library's `json`."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import Site
from gateway.events import Message
from gateway.ingest import decode
from gateway.ingest.decode import Decoder
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.rules.duty import Signed, _Track
from gateway.rules.patrol_time import patrol_time
from gateway.store.sqlite import SqliteStore

T0 = dt.datetime(2026, 11, 27, 0, 30, tzinfo=dt.UTC)
GAP = dt.timedelta(minutes=30)


@settings(max_examples=200, deadline=None)
@given(
    minutes=st.lists(st.integers(0, 600), max_size=40),
    since=st.integers(-10, 610),
    length=st.integers(0, 700),
)
def test_indexed_patrol_time_is_patrol_time(minutes: list[int], since: int, length: int) -> None:
    """An index that drifts from `patrol_time` (an out-of-order scan, a range edge) would raise
    or clear patrol.hours_short where the plain sum would not."""
    track = _Track(GAP)
    times = [T0 + dt.timedelta(minutes=m) for m in minutes]
    for t in times:  # in arrival order, not time order
        track.add(Signed(t, "zhang-wei", "front-desk"))
    lo = T0 + dt.timedelta(minutes=since)
    hi = lo + dt.timedelta(minutes=length)
    assert track.patrol(lo, hi) == patrol_time([t for t in times if lo <= t <= hi], GAP)


@settings(max_examples=200, deadline=None)
@given(
    scans=st.lists(st.tuples(st.integers(0, 600), st.sampled_from("abc")), max_size=30),
    since=st.integers(-10, 610),
    length=st.integers(0, 700),
)
def test_first_scan_at_a_post_is_the_first_to_arrive(
    scans: list[tuple[int, str]], since: int, length: int
) -> None:
    """The signed key posts are the first scan to *arrive* at each post within the range, as a
    pass over the scans in arrival order gives; a late scan must not change which one."""
    track = _Track(GAP)
    for m, post in scans:
        track.add(Signed(T0 + dt.timedelta(minutes=m), "zhang-wei", post))
    lo = T0 + dt.timedelta(minutes=since)
    hi = lo + dt.timedelta(minutes=length)
    for post in "abc":
        expected = next(
            (
                (T0 + dt.timedelta(minutes=m), i)
                for i, (m, p) in enumerate(scans)
                if p == post and lo <= T0 + dt.timedelta(minutes=m) <= hi
            ),
            None,
        )
        assert track.first_at(post, lo, hi) == expected


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children)
    ),
    max_leaves=8,
)


def _decoded(zcity: Site, payload: bytes) -> Any:
    decoder = Decoder(zcity, Topics("estate", "zcity"))
    at = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)
    return decoder.decode(Message("estate/zcity/reader/fd-1/scan", payload, at, qos=1))


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["credential", "method", "seq", "ts", "x"]), JSON_VALUES, max_size=5
    ),
    method=st.sampled_from(["nfc", "qr", None]),
)
def test_fast_json_reads_what_json_reads(
    zcity: Site, body: dict[str, Any], method: str | None
) -> None:
    """orjson reads integers past 64 bits as floats and refuses what `json` takes (lone
    surrogates): the decoder must give the same event or refusal as with `json` alone."""
    if method is not None:
        body = {"credential": "04A224B1C23380", "method": method, **body}
    payload = json.dumps(body).encode()
    fast = _decoded(zcity, payload)
    saved = decode.long_number
    decode.long_number = lambda payload: True  # every payload: the standard library only
    try:
        plain = _decoded(zcity, payload)
    finally:
        decode.long_number = saved
    assert fast == plain


def test_a_huge_integer_is_read_exactly(zcity: Site) -> None:
    """A seq of 2**64 + 1 would become the float 1.8446744073709552e19 through orjson; `json`
    keeps it an integer, and the refusal names the number as sent."""
    payload = b'{"credential": "04A224B1C23380", "method": "nfc", "seq": 18446744073709551617}'
    decoded = _decoded(zcity, payload)
    assert decoded.event is None
    assert "18446744073709551617" in decoded.rejections[0].detail


def test_a_lone_surrogate_is_read_as_json_reads_it(zcity: Site) -> None:
    """orjson refuses a lone surrogate escape that `json` accepts: the message must not become a
    bad_json refusal because of the fast path. `json` reads it, and the credential is then
    refused as not text (bad_field): SQLite cannot store it, and the scan used to fail in the
    store (a replay stopped there)."""
    payload = b'{"credential": "\\ud800", "method": "qr", "seq": 1}'
    decoded = _decoded(zcity, payload)
    assert decoded.event is None
    (refusal,) = decoded.rejections
    assert refusal.code == "bad_field" and "surrogate" in refusal.detail


def test_a_lone_surrogate_anywhere_is_refused_and_stored(zcity: Site) -> None:
    """A lone surrogate in a credential, in a field a refusal quotes, or in a replayed topic:
    each message is refused with its reason and the refusal is stored (the reason and topic
    written with the escape); before, storing failed and a replay stopped on the line."""
    store = SqliteStore(":memory:")
    at = dt.datetime(2026, 11, 27, 1, tzinfo=dt.UTC)
    pipeline = Pipeline(zcity, Topics("estate", zcity.id), store, start=at)
    base = "estate/zcity/reader/fd-1/scan"
    messages = [
        (base, b'{"credential": "A\\udc00", "method": "qr", "seq": 1}'),
        (base, b'{"credential": "04A224B1C23380", "method": "\\ud800", "seq": 2}'),
        ("estate/zcity/reader/\ud800/scan", b'{"credential": "04A224B1C23380", "method": "nfc"}'),
    ]
    codes = []
    for topic, payload in messages:
        out = pipeline.handle(Message(topic, payload, at, qos=1))
        assert not out.answers
        codes += [r.rejection.code for r in out.refusals]
    assert codes == ["bad_field", "bad_field", "bad_topic"]
    store.commit()
    rows = store.connection.execute("SELECT topic, reason FROM rejected ORDER BY id").fetchall()
    assert [topic for topic, _ in rows] == [base, base, "estate/zcity/reader/\\ud800/scan"]
    assert "surrogate" in rows[0][1]
    assert all("\\ud800" in reason for _, reason in rows[1:])


def _publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 0 (fixed header, topic, payload)."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    assert len(body) < 128  # one length byte
    return bytes([0x30, len(body)]) + body


def test_packets_read_ahead_are_all_delivered_at_once() -> None:
    """The link reads the socket ahead of paho: packets already read must be delivered now, not
    when the broker next sends something (a scan would wait for the next keep-alive)."""
    import socket

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway.ingest.mqtt import _Client

    got: list[bytes] = []
    client = _Client(
        lambda: None,
        lambda _e: None,
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=paho.MQTTv311,
    )
    client.on_message = lambda _c, _u, m: got.append(m.payload)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    try:
        client._sock = ours  # type: ignore[assignment]
        broker.sendall(b"".join(_publish_packet("t/x", b"%d" % i) for i in range(50)))
        assert client.loop_read() == paho.MQTT_ERR_SUCCESS
        assert got == [b"%d" % i for i in range(50)]
        # A packet split across two reads still comes whole.
        packet = _publish_packet("t/x", b"late")
        broker.sendall(packet[:3])
        client.loop_read()
        broker.sendall(packet[3:])
        client.loop_read()
        assert got[-1] == b"late"
    finally:
        client._sock = None
        ours.close()
        broker.close()
