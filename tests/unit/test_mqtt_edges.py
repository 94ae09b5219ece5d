"""The MQTT edge without a broker: refusals of over-size, retained and stray inputs, topics,
broker URLs and their secrets (issue 8 items 3, 15, 16, 17)."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from gateway.config import Site
from gateway.events import Message, Reading
from gateway.ingest.decode import MAX_REASON_CHARS, Decoder, reason_text
from gateway.ingest.mqtt import BrokerUrl, broker_from_options, mask_url, retry_delay
from gateway.ingest.topics import Topics

NOW = dt.datetime(2026, 11, 27, 1, 12, 3, tzinfo=dt.UTC)
TOPICS = Topics("estate", "zcity")
SCAN = TOPICS.scan("fd-1")
READING = TOPICS.reading("tx-1")
GOOD_SCAN = b'{"credential": "04A224B1C23380", "method": "nfc", "seq": 1}'


def decode_one(site: Site, msg: Message, **options: int) -> tuple[str, str]:
    out = Decoder(site, TOPICS, **options).decode(msg)
    assert out.event is None
    (rejection,) = out.rejections
    return rejection.code, reason_text(rejection)


def test_a_payload_cut_at_the_edge_is_refused_too_large(zcity: Site) -> None:
    """Prevents a cut (so invalid) payload from being parsed: the original size is the reason."""
    msg = Message(SCAN, GOOD_SCAN[:10], NOW, 1, oversize=1_000_000)
    code, reason = decode_one(zcity, msg)
    assert code == "too_large"
    assert reason.startswith("消息过大 / ") and "1000000 bytes" in reason


def test_the_decoder_takes_the_configured_limit(zcity: Site) -> None:
    """Prevents --max-payload-bytes above 64 KiB being refused anyway by a fixed limit."""
    body = {"credential": "04A224B1C23380", "method": "nfc", "note": "x" * 70_000}
    msg = Message(SCAN, json.dumps(body).encode(), NOW, 1)
    assert Decoder(zcity, TOPICS, max_payload_bytes=100_000).decode(msg).event is not None
    assert decode_one(zcity, msg)[0] == "too_large"


@pytest.mark.parametrize("topic", [SCAN, READING])
def test_a_retained_scan_or_reading_is_refused(zcity: Site, topic: str) -> None:
    """Prevents a retained input being stored again at every reconnect (issue 8 item 15)."""
    payload = GOOD_SCAN if topic == SCAN else b'{"values": {"load_pct": 50}}'
    code, reason = decode_one(zcity, Message(topic, payload, NOW, 1, retain=True))
    assert code == "retained"
    assert reason.startswith("保留消息 / ") and "retain=false" in reason


def test_a_retained_device_status_is_taken(zcity: Site) -> None:
    """Prevents refusing statuses: they are retained by design, as the device's last will."""
    msg = Message(TOPICS.device_status("fd-1"), b"offline", NOW, 1, retain=True)
    assert Decoder(zcity, TOPICS).decode(msg).event is not None


def test_a_reading_with_thousands_of_unknown_metrics_gets_a_short_reason(zcity: Site) -> None:
    """Prevents a 453 KB reason for a 65 KB reading (issue 8 item 16): reasons are capped."""
    values: dict[str, float] = {f"m{i}": 1.0 for i in range(4000)}
    values["load_pct"] = 50.0
    out = Decoder(zcity, TOPICS).decode(
        Message(READING, json.dumps({"values": values}).encode(), NOW)
    )
    assert isinstance(out.event, Reading) and out.event.values == {"load_pct": 50.0}
    (rejection,) = out.rejections
    assert rejection.code == "unknown_metric"
    assert len(rejection.detail) <= MAX_REASON_CHARS and rejection.detail.endswith("…")


@pytest.mark.parametrize(
    ("topic", "words"),
    [
        (SCAN + "/", "trailing"),
        (SCAN + "/extra", "4 levels"),
        ("estate/zcity/reader/FD 1/scan", "not a valid id"),
        ("estate/zcity/readers/fd-1/scan", "unknown topic"),
        ("estate/zcity/hello", "1 levels"),
        ("estate/zcity/reader/" + "x" * 5000 + "/scan", "not a valid id"),
    ],
)
def test_stray_topics_are_refused_with_a_short_reason(zcity: Site, topic: str, words: str) -> None:
    """Prevents stray topics vanishing or flooding gateway/rejected with their whole name."""
    code, reason = decode_one(zcity, Message(topic, GOOD_SCAN, NOW, 1))
    assert code == "bad_topic" and words in reason
    assert len(reason) < 400


@pytest.mark.parametrize(
    ("topic", "output"),
    [
        ("estate/zcity/reader/fd-1/ack", True),
        ("estate/zcity/alert/8f1c", True),
        ("estate/zcity/patrol/status", True),
        ("estate/zcity/gateway/status", True),
        ("estate/zcity/gateway/rejected", True),
        ("estate/zcity/reader/fd-1/scan", False),
        ("estate/zcity/alert/8f1c/x", False),
        ("estate/zcity/alert/", False),
        ("estate/zcity/reader//ack", False),
        ("estate/other/alert/8f1c", False),
        ("estate/zcity/gateway/other", False),
    ],
)
def test_output_topics(topic: str, output: bool) -> None:
    """Prevents the gateway's own outputs being refused as input, and stray topics hiding."""
    assert TOPICS.is_output(topic) is output


def test_the_subscription_is_the_whole_site() -> None:
    """Prevents topics outside the subscriptions vanishing (issue 8 item 16)."""
    assert TOPICS.subscriptions() == ["estate/zcity/#"]


def test_broker_url_never_shows_the_password() -> None:
    """Prevents the password in logs (issue 8 item 17): str, repr and parse errors mask it."""
    url = BrokerUrl.parse("mqtt://alice:S3cret@broker.example:1883")
    assert url.password == "S3cret"
    assert "S3cret" not in str(url) and "S3cret" not in repr(url)
    with pytest.raises(ValueError) as bad_port:
        BrokerUrl.parse("mqtt://alice:S3cret@host:notaport")
    assert "S3cret" not in str(bad_port.value) and "***" in str(bad_port.value)
    with pytest.raises(ValueError) as bad_scheme:
        BrokerUrl.parse("http://alice:S3c@ret@host:1883")
    assert "S3c" not in str(bad_scheme.value)
    assert mask_url("mqtt://host:1883") == "mqtt://host:1883"


def test_password_from_the_environment_or_a_file(tmp_path: pathlib.Path) -> None:
    """Prevents a password that can only be given in --broker, so visible in `ps`."""
    assert broker_from_options("mqtt://gw@h:1883", password="pw1").password == "pw1"
    secret = tmp_path / "password"
    secret.write_text("pw2\n", encoding="utf-8")
    assert broker_from_options("mqtt://gw@h:1883", password_file=secret).password == "pw2"
    assert broker_from_options("mqtt://gw:url@h:1883", password="env").password == "url"
    with pytest.raises(ValueError, match="needs a user"):
        broker_from_options("mqtt://h:1883", password="pw")
    with pytest.raises(ValueError, match="both set"):
        broker_from_options("mqtt://gw@h:1883", password="a", password_file=secret)
    with pytest.raises(ValueError, match="cannot read"):
        broker_from_options("mqtt://gw@h:1883", password_file=tmp_path / "missing")


def test_tls_files_only_for_mqtts(tmp_path: pathlib.Path) -> None:
    """Prevents TLS options silently ignored on a plain connection, or a missing file found late."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-", encoding="utf-8")
    assert broker_from_options("mqtts://h", ca_file=ca).ca_file == ca
    with pytest.raises(ValueError, match="mqtts"):
        broker_from_options("mqtt://h", ca_file=ca)
    with pytest.raises(ValueError, match="no such file"):
        broker_from_options("mqtts://h", ca_file=tmp_path / "nope.pem")
    with pytest.raises(ValueError, match="--key needs --cert"):
        broker_from_options("mqtts://h", key=ca)


def test_retry_interval_grows_to_a_minute() -> None:
    """Prevents a retry every second for ever, and a retry interval without bound."""
    assert [retry_delay(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
