"""The payload encoders (contract §3): what they make, the gateway's own decoder reads as meant."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable

import pytest

from gateway import payloads
from gateway.config import Site
from gateway.events import Decoded, DeviceStatus, Message, Reading, Scan
from gateway.ingest.decode import Decoder
from gateway.ingest.topics import Topics

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 27, 1, 12, 3, tzinfo=dt.UTC)  # 09:12:03 in Shanghai
BASE = "estate/zcity"


def decode(site: Site, topic: str, payload: bytes) -> Decoded:
    return Decoder(site, Topics("estate", "zcity")).decode(Message(f"{BASE}/{topic}", payload, NOW))


def test_scan_is_the_contract_example_byte_for_byte() -> None:
    """Prevents spaces, escaped Chinese or reordered keys creeping into what devices send: the
    bytes are the contract's example, compact."""
    at = dt.datetime(2026, 11, 27, 9, 12, 3, tzinfo=SHANGHAI)
    assert payloads.scan("04A224B1C23380", "nfc", ts=at, seq=1234) == (
        b'{"credential":"04A224B1C23380","method":"nfc","ts":"2026-11-27T09:12:03+08:00",'
        b'"seq":1234}'
    )
    assert payloads.scan("巡更点-7", "qr") == '{"credential":"巡更点-7","method":"qr"}'.encode()


def test_scan_with_datetime_decodes_to_the_scan_meant(zcity: Site) -> None:
    """Prevents an encoder whose time, sequence or credential the gateway reads otherwise."""
    at = dt.datetime(2026, 11, 27, 9, 10, 0, 250_000, tzinfo=SHANGHAI)
    out = decode(zcity, "reader/fd-1/scan", payloads.scan("04A224B1C23380", "nfc", ts=at, seq=7))
    assert out.rejections == ()
    assert out.event == Scan(
        reader="fd-1",
        post="front-desk",
        credential="04A224B1C23380",
        method="nfc",
        person="zhang-wei",
        time=at.astimezone(dt.UTC),  # milliseconds kept
        received_at=NOW,
        seq=7,
        sent_ts=at.astimezone(dt.UTC),
    )


def test_scan_with_epoch_and_without_optional_fields(zcity: Site) -> None:
    """Prevents epoch times being mangled, and absent `ts`/`seq` being sent as null or 0."""
    epoch = payloads.scan("WF-2026", "qr", ts=NOW.timestamp() - 60)
    assert json.loads(epoch)["ts"] == NOW.timestamp() - 60
    scan = decode(zcity, "reader/fd-1/scan", epoch).event
    assert isinstance(scan, Scan)
    assert (scan.person, scan.method, scan.time) == (
        "wang-fang",
        "qr",
        NOW - dt.timedelta(minutes=1),
    )
    bare = payloads.scan("04A224B1C23380", "nfc")
    assert json.loads(bare) == {"credential": "04A224B1C23380", "method": "nfc"}
    scan = decode(zcity, "reader/fd-1/scan", bare).event
    assert isinstance(scan, Scan) and (scan.time, scan.seq) == (NOW, None)


def test_scan_auth_is_nested_as_the_contract_says(zcity: Site) -> None:
    """Prevents a scan with a SUN or bridge proof that the gateway refuses or that loses its
    proof on the way (§3 `auth`)."""
    auth: payloads.Auth = {
        "sun": {"picc": "EF963FF7828658A599F3041510671E88", "cmac": "94EED9EE65337086"},
        "bridge": {"mac": "AB" * 32},
    }
    payload = payloads.scan("04A224B1C23380", "nfc", ts=NOW, seq=1, auth=auth)
    assert json.loads(payload)["auth"] == auth
    out = decode(zcity, "reader/fd-1/scan", payload)
    assert out.rejections == () and isinstance(out.event, Scan)
    assert out.event.person == "zhang-wei"
    proof = out.event.proof
    assert proof is not None and proof.sun_cmac == bytes.fromhex("94EED9EE65337086")
    assert proof.bridge_mac == "ab" * 32


def test_reading_decodes_to_the_reading_meant(zcity: Site) -> None:
    """Prevents readings whose values, booleans, time or seq the gateway reads otherwise."""
    at = dt.datetime(2026, 11, 27, 9, 12, tzinfo=SHANGHAI)
    payload = payloads.reading({"winding_temp_c": 71.5, "load_pct": 63}, ts=at, seq=88)
    assert payload == (
        b'{"ts":"2026-11-27T09:12:00+08:00","values":{"winding_temp_c":71.5,"load_pct":63},'
        b'"seq":88}'
    )
    out = decode(zcity, "equipment/tx-1/reading", payload)
    assert out.rejections == ()
    assert out.event == Reading(
        "tx-1",
        {"winding_temp_c": 71.5, "load_pct": 63.0},
        at.astimezone(dt.UTC),
        NOW,
        88,
        sent_ts=at.astimezone(dt.UTC),
    )
    leak = decode(zcity, "equipment/chiller-1/reading", payloads.reading({"leak": True}))
    assert leak.event == Reading("chiller-1", {"leak": True}, NOW, NOW)


@pytest.mark.parametrize("state", ["online", "offline"])
def test_status_decodes_to_the_state_meant(zcity: Site, state: payloads.State) -> None:
    """Prevents a device status (or a last will) the gateway does not read as that state."""
    assert payloads.status(state) == state.encode()
    out = decode(zcity, "device/fd-1/status", payloads.status(state))
    assert out.event == DeviceStatus("fd-1", state, NOW, NOW)


NAIVE = dt.datetime(2026, 11, 27, 9, 12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: payloads.scan("04A224B1C23380", "nfc", ts=NAIVE),
        lambda: payloads.scan("04A224B1C23380", "nfc", ts=True),
        lambda: payloads.scan("04A224B1C23380", "nfc", ts=math.inf),
        lambda: payloads.scan("04A224B1C23380", "nfc", seq=-1),
        lambda: payloads.scan("04A224B1C23380", "nfc", seq=True),
        lambda: payloads.scan("  ", "qr"),
        lambda: payloads.scan("04A224B1C23380", "rfid"),  # type: ignore[arg-type]  # the point
        lambda: payloads.reading({}),
        lambda: payloads.reading({"load_pct": math.nan}),
        lambda: payloads.reading({"load_pct": "63"}),  # type: ignore[dict-item]  # the point
        lambda: payloads.status("broken"),  # type: ignore[arg-type]  # the point
    ],
    ids=[
        "naive-ts",
        "bool-ts",
        "infinite-ts",
        "negative-seq",
        "bool-seq",
        "blank-credential",
        "unknown-method",
        "no-values",
        "nan-value",
        "text-value",
        "unknown-state",
    ],
)
def test_encoders_refuse_what_the_gateway_would_refuse(make: Callable[[], bytes]) -> None:
    """Prevents a device sending a payload the gateway can only refuse (or, for a naive time,
    would read in the site's zone instead of the device's)."""
    with pytest.raises(ValueError):
        make()
