"""Decoding (contract §2–§3): every message becomes an event or a refusal with a reason."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

import gateway.ingest.decode as decode_module
from gateway.config import Site
from gateway.events import CLOCK_SKEW, Decoded, DeviceStatus, Message, Reading, Scan
from gateway.ingest.decode import MAX_PAYLOAD_BYTES, Decoder, reason_text
from gateway.ingest.topics import Topics

NOW = dt.datetime(2026, 11, 27, 1, 12, 3, tzinfo=dt.UTC)  # 09:12:03 in Shanghai
SCAN = "estate/zcity/reader/fd-1/scan"
READING = "estate/zcity/equipment/tx-1/reading"


def decode(site: Site, topic: str, payload: object) -> Decoded:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Decoder(site, Topics("estate", "zcity")).decode(Message(topic, body, NOW, 1))


def test_scan_with_separators_and_lower_case(zcity: Site) -> None:
    """NFC UIDs match whatever case and separators the reader sends (§3)."""
    out = decode(zcity, SCAN, {"credential": "04:a2:24:b1-c2 33 80", "method": "nfc", "seq": 5})
    scan = out.event
    assert isinstance(scan, Scan)
    assert (scan.person, scan.post, scan.credential, scan.seq) == (
        "zhang-wei",
        "front-desk",
        "04A224B1C23380",
        5,
    )
    assert scan.time == NOW and scan.flags == ()


def test_qr_credential_and_unknown_card(zcity: Site) -> None:
    """QR text is matched as is; an unknown credential is a scan without a person, not a refusal."""
    qr = decode(zcity, SCAN, {"credential": "WF-2026", "method": "qr"}).event
    assert isinstance(qr, Scan) and qr.person == "wang-fang"
    unknown = decode(zcity, SCAN, {"credential": "DEADBEEF", "method": "nfc"})
    assert isinstance(unknown.event, Scan) and unknown.event.person is None
    assert unknown.rejections == ()


def test_event_time_rules(zcity: Site) -> None:
    """Past ts is trusted; ts beyond the skew takes the receive time and is flagged (§1)."""
    past = decode(
        zcity,
        SCAN,
        {"credential": "04A224B1C23380", "method": "nfc", "ts": "2026-11-27T07:00:00+08:00"},
    ).event
    assert past.time == dt.datetime(2026, 11, 26, 23, 0, tzinfo=dt.UTC)
    within = NOW + dt.timedelta(seconds=300)
    ok = decode(
        zcity, SCAN, {"credential": "04A224B1C23380", "method": "nfc", "ts": within.timestamp()}
    ).event
    assert ok.time == within and ok.flags == ()
    ahead = NOW + dt.timedelta(seconds=301)
    skewed = decode(
        zcity, SCAN, {"credential": "04A224B1C23380", "method": "nfc", "ts": ahead.timestamp()}
    ).event
    assert skewed.time == NOW and skewed.flags == (CLOCK_SKEW,)


def test_reading_keeps_declared_metrics(zcity: Site) -> None:
    """An undeclared metric is refused; the other metrics of the message are kept (§3)."""
    out = decode(zcity, READING, {"values": {"winding_temp_c": 71.5, "oil_level": 3}, "seq": 1})
    reading = out.event
    assert isinstance(reading, Reading) and reading.values == {"winding_temp_c": 71.5}
    (rej,) = out.rejections
    assert rej.code == "unknown_metric" and "oil_level" in rej.detail


def test_boolean_metric(zcity: Site) -> None:
    """A metric with `expect` takes booleans only."""
    ok = decode(zcity, "estate/zcity/equipment/chiller-1/reading", {"values": {"leak": True}})
    assert isinstance(ok.event, Reading) and ok.event.values == {"leak": True}
    as_bit = decode(zcity, "estate/zcity/equipment/chiller-1/reading", {"values": {"leak": 1}})
    assert isinstance(as_bit.event, Reading) and as_bit.event.values == {"leak": True}
    bad = decode(zcity, "estate/zcity/equipment/chiller-1/reading", {"values": {"leak": 2}})
    assert bad.event is None and bad.rejections[0].code == "bad_field"


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (b"offline", "offline"),
        (b"ONLINE\n", "online"),
        (b'{"state": "offline"}', "offline"),
        (b'"online"', "online"),
        (b'{"state": "Offline"}', "offline"),
        (b'{"state": "ONLINE"}', "online"),
        (b'"OFFLINE"', "offline"),
        (b'"Online"', "online"),
        (b"oFfLiNe", "offline"),
        (b'{"state": "offline", "ts": "2026-11-27T09:00:00+08:00"}', "offline"),
    ],
)
def test_status_forms(zcity: Site, payload: bytes, state: str) -> None:
    """Status is plain text, a JSON string or {"state": …}, in any letter case (§2)."""
    out = decode(zcity, "estate/zcity/device/gr-2/status", payload)
    assert isinstance(out.event, DeviceStatus) and out.event.state == state


GOOD = {"credential": "04A224B1C23380", "method": "nfc"}


@pytest.mark.parametrize(
    ("topic", "payload", "code", "words"),
    [
        (SCAN, b"{not json", "bad_json", "not JSON"),
        (SCAN, b"[1, 2]", "bad_json", "object"),
        (SCAN, b"", "empty", "empty"),
        (SCAN, b"\xff\xfe\x00binary", "not_utf8", "UTF-8"),
        (SCAN, b'{"credential": "' + b"A" * MAX_PAYLOAD_BYTES + b'"}', "too_large", "limit"),
        (SCAN, {"credential": "04A2", "method": "bluetooth"}, "bad_field", "method"),
        (SCAN, {"method": "nfc"}, "bad_field", "credential"),
        (SCAN, {"credential": 12345, "method": "nfc"}, "bad_field", "credential"),
        (SCAN, {"credential": "ZZ-not-hex", "method": "nfc"}, "bad_field", "not hex"),
        (SCAN, {**GOOD, "ts": "tomorrow"}, "bad_field", "ts"),
        (SCAN, {**GOOD, "ts": True}, "bad_field", "ts"),
        (SCAN, {**GOOD, "seq": -1}, "bad_field", "seq"),
        (SCAN, {**GOOD, "seq": "7"}, "bad_field", "seq"),
        (SCAN, b'{"credential": "04", "method": "nfc", "ts": NaN}', "bad_json", "NaN"),
        (SCAN, b"[" * 100_000, "too_large", "limit"),
        (SCAN, b"[" * 30_000, "bad_json", "JSON"),
        ("estate/zcity/reader/zz-9/scan", GOOD, "unknown_reader", "zz-9"),
        ("estate/zcity/reader/fd-1/scann", GOOD, "bad_topic", "reader/{id}/scan"),
        ("estate/zcity/reader/Fd-1/scan", GOOD, "bad_topic", "valid id"),
        ("estate/zcity/reader/fd-1/scan/x", GOOD, "bad_topic", "expected"),
        ("estate/other/reader/fd-1/scan", GOOD, "bad_topic", "estate/zcity/"),
        ("estate/zcity/equipment/tx-9/reading", {"values": {"x": 1}}, "unknown_equipment", "tx-9"),
        (READING, {"values": {}}, "bad_field", "values"),
        (READING, {"values": [1]}, "bad_field", "values"),
        (READING, {"values": {"load_pct": "high"}}, "bad_field", "finite number"),
        (READING, b'{"values": {"load_pct": 1' + b"0" * 400 + b"}}", "bad_field", "finite number"),
        (
            SCAN,
            b'{"credential": "04", "method": "nfc", "ts": 1' + b"0" * 400 + b"}",
            "bad_field",
            "range",
        ),
        (READING, b'{"values": {"load_pct": Infinity}}', "bad_json", "Infinity"),
        (READING, {"values": {"nope": 1}}, "unknown_metric", "not declared"),
        ("estate/zcity/device/zz/status", b"online", "unknown_device", "zz"),
        ("estate/zcity/device/gr-2/status", b"maybe", "bad_field", "online"),
        ("estate/zcity/device/gr-2/status", b'{"state": 1}', "bad_field", "online"),
    ],
)
def test_refusals(zcity: Site, topic: str, payload: object, code: str, words: str) -> None:
    """Each kind of bad message is refused with a reason a person can act on, never raised."""
    out = decode(zcity, topic, payload)
    assert out.event is None
    (rej,) = out.rejections
    assert rej.code == code
    assert words in rej.detail
    assert rej.topic == topic and len(rej.payload) <= 512
    assert reason_text(rej).split(" / ")[1] == rej.detail  # Chinese first, English second


@pytest.mark.parametrize(
    "ts",
    [
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "2026-11-27T09:12:03+99:00",
        -62135596800,
        10**30,
        1e300,
    ],
)
@pytest.mark.parametrize(
    ("topic", "body"),
    [
        (SCAN, {"credential": "04A224B1C23380", "method": "nfc", "seq": 2}),
        (READING, {"values": {"load_pct": 50}}),
        ("estate/zcity/device/gr-2/status", {"state": "offline"}),
    ],
)
def test_instants_outside_the_contract_are_bad_field(
    zcity: Site, topic: str, body: dict[str, object], ts: object, caplog: pytest.LogCaptureFixture
) -> None:
    """A ts of year 1 wedged a site (issue 8, item 1): refused as bad_field, never internal."""
    out = decode(zcity, topic, {**body, "ts": ts})
    assert out.event is None
    (rej,) = out.rejections
    assert rej.code == "bad_field" and rej.detail.startswith("ts: ")
    assert "internal" not in rej.detail
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_decoder_bug_is_refused_and_logged_with_its_traceback(
    zcity: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug turned silently into bad_field would never be reported (issue 7 §3)."""

    def broken(*_args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(decode_module, "_proof", broken)  # called for every scan
    with caplog.at_level(logging.ERROR, logger="gateway.ingest.decode"):
        out = decode(zcity, SCAN, GOOD)
    assert out.event is None and out.rejections[0].code == "bad_field"
    assert "internal error" in out.rejections[0].detail
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError
    assert SCAN in record.getMessage()
