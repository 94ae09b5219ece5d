"""Hostile input on every topic kind, interleaved with valid traffic (issue 8 item 1).

A property test: Hypothesis generates payloads that are wrong in every way a device, a bridge
or an attacker can get them wrong (odd instants like `0001-01-01T00:00:00Z`, huge numbers,
nested JSON, non-UTF-8, empty, over-size) on scan, reading and status topics, on unknown topics
under the site and with odd ids, and feeds them with valid scans and readings through the real
`Worker`, the real `SqliteStore` (a file) and the in-memory link twin. One message that wedges
the site, or that is refused as an "internal error", fails it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
import tempfile
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Site
from gateway.events import Message
from gateway.ingest.decode import MAX_PAYLOAD_BYTES
from gateway.ingest.memory import MemoryLink
from gateway.ingest.topics import Topics
from gateway.store.sqlite import SqliteStore
from gateway.worker import Worker

T0 = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)  # 09:30 in Shanghai, a Friday
TOPICS = Topics("estate", "zcity")
BASE = "estate/zcity"
CARDS = ["04A224B1C23380", "04B1C2D3E4F501", "0411223344556A", "0411223344556C"]
READERS = ["fd-1", "mc-1", "gr-1", "pr-1", "gn-1"]
GOOD_READINGS = [
    ("tx-1", {"winding_temp_c": 70.5, "load_pct": 40}),
    ("chiller-1", {"supply_temp_c": 7.0, "leak": False}),
    ("gen-1", {"battery_v": 27.1, "fuel_pct": 80, "ready": True}),
]

# Instants the contract (§1) refuses, in every form a `ts` can take.
BAD_TS: list[object] = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1999-12-31T23:59:59+00:00",
    "2100-01-01T00:00:00Z",
    "2026-13-45T25:61:61Z",
    "2026-11-27T09:12:03+99:00",
    "yesterday",
    "",
    0,
    -1,
    10**30,
    -(10**30),
    1e308,
    946684799,  # 1999-12-31T23:59:59Z
    4102444800,  # 2100-01-01T00:00:00Z
    4102444800000,  # the same in milliseconds
    True,
    [2026, 11, 27],
    {"ts": "2026-11-27T09:12:03+08:00"},
]
BAD_SEQ: list[object] = [-1, 2**63, 10**40, 1.5, "7", True, [1], {"n": 1}]
HUGE = 10**400  # a JSON integer no float can hold


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


json_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def _not_utf8(raw: bytes) -> bytes:
    return b"\xff\xfe" + raw


def common_junk() -> st.SearchStrategy[bytes]:
    """Payloads no topic accepts: empty, not UTF-8, not JSON, deep, over-size, not an object."""
    return st.one_of(
        st.just(b""),
        st.binary(max_size=40).map(_not_utf8),
        st.sampled_from(
            [
                b"{",
                b"{'credential': 1}",
                b'{"ts": NaN}',
                b'{"values": {"load_pct": Infinity}}',
                nested(100_000).encode(),
                b"\x00" * 10,
            ]
        ),
        st.just(b'{"pad": "' + b"x" * (MAX_PAYLOAD_BYTES + 1) + b'"}'),
        st.lists(json_junk, max_size=3).map(dumps),
    )


@st.composite
def bad_scan(draw: st.DrawFn) -> bytes:
    """A scan payload with at least one field the contract refuses."""
    body: dict[str, object] = {
        "credential": draw(st.sampled_from(CARDS)),
        "method": "nfc",
        "ts": "2026-11-27T09:20:00+08:00",
        "seq": draw(st.integers(min_value=10**6, max_value=10**7)),
    }
    which = draw(st.sampled_from(["ts", "seq", "method", "credential", "missing", "junk"]))
    if which == "ts":
        body["ts"] = draw(st.sampled_from(BAD_TS))
    elif which == "seq":
        body["seq"] = draw(st.sampled_from(BAD_SEQ))
    elif which == "method":
        body["method"] = draw(st.sampled_from(["NFC ", "rfid", "", None, 1, ["nfc"]]))
    elif which == "credential":
        body["credential"] = draw(
            st.sampled_from(["", "   ", "ZZ-not-hex", "X" * 5000, 42, None, {"uid": "04"}])
        )
    elif which == "missing":
        del body[draw(st.sampled_from(["credential", "method"]))]
    else:
        return draw(common_junk())
    return dumps(body)


@st.composite
def bad_reading(draw: st.DrawFn, equipment: str) -> bytes:
    """A reading payload for `equipment` of which no metric can be kept."""
    values = dict(GOOD_READINGS)[equipment]
    metric = next(iter(values))
    body: dict[str, object] = {"ts": "2026-11-27T09:20:00+08:00", "values": dict(values)}
    which = draw(st.sampled_from(["ts", "seq", "value", "values", "unknown", "junk"]))
    if which == "ts":
        body["ts"] = draw(st.sampled_from(BAD_TS))
    elif which == "seq":
        body["seq"] = draw(st.sampled_from(BAD_SEQ))
    elif which == "value":
        bad = draw(st.sampled_from(["71", None, [1], {"v": 1}, 1e308 * 10, "NaN"]))
        body["values"] = {metric: bad}
    elif which == "values":
        body["values"] = draw(st.sampled_from([{}, [], None, "70", 70, {"": 1}]))
    elif which == "unknown":
        names = draw(st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=30))
        body["values"] = {f"x{name}": 1 for name in names}
    else:
        return draw(common_junk())
    if which == "value" and metric == "winding_temp_c":
        return dumps(body).replace(b"[1]", f"{HUGE}".encode())  # a number beyond a float
    return dumps(body)


@st.composite
def bad_status(draw: st.DrawFn) -> bytes:
    """A device status that is neither online nor offline in any of its forms (§2)."""
    return draw(
        st.one_of(
            st.sampled_from(
                [
                    b"maybe",
                    b'"on line"',
                    b'"online',
                    b'{"state": 1}',
                    b'{"state": null}',
                    b'{"state": ["online"]}',
                    b'{"state": "online", "ts": "0001-01-01T00:00:00Z"}',
                    b'{"state": "offline", "ts": 100000000000000000000}',
                    b'{"status": "online"}',
                ]
            ),
            common_junk(),
        )
    )


ODD_TOPICS = [
    f"{BASE}/reader/fd-1/scan/",
    f"{BASE}/reader/fd-1/scan/extra",
    f"{BASE}/reader/FD-1/scan",
    f"{BASE}/reader/fd 1/scan",
    f"{BASE}/reader/ü-1/scan",
    f"{BASE}/reader/{'a' * 65}/scan",
    f"{BASE}/reader//scan",
    f"{BASE}/reader/zz-9/scan",  # well formed, not declared
    f"{BASE}/equipment/zz-9/reading",
    f"{BASE}/device/zz-9/status",
    f"{BASE}/reader/fd-1/reading",
    f"{BASE}/foo/bar/baz",
    f"{BASE}/reader",
    f"{BASE}/",
    f"{BASE}/patrol",
]


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, bytes]:
    """One message that must be refused: (topic, payload)."""
    kind = draw(st.sampled_from(["scan", "reading", "status", "topic"]))
    if kind == "scan":
        return f"{BASE}/reader/{draw(st.sampled_from(READERS))}/scan", draw(bad_scan())
    if kind == "reading":
        equipment = draw(st.sampled_from([e for e, _ in GOOD_READINGS]))
        return f"{BASE}/equipment/{equipment}/reading", draw(bad_reading(equipment))
    if kind == "status":
        device = draw(st.sampled_from([*READERS, "tx-1"]))
        return f"{BASE}/device/{device}/status", draw(bad_status())
    payload = draw(
        st.one_of(st.just(dumps({"credential": CARDS[0], "method": "nfc"})), common_junk())
    )
    return draw(st.sampled_from(ODD_TOPICS)), payload


@dataclass(frozen=True)
class Item:
    """One message of the stream and what must become of it."""

    topic: str
    payload: bytes
    valid: str  # "scan", "reading", or "" (must be refused)


@st.composite
def traffic(draw: st.DrawFn) -> list[Item]:
    """Valid scans and readings (unique seqs) with hostile messages between them."""
    items: list[Item] = []
    for n in range(draw(st.integers(min_value=1, max_value=25))):
        choice = draw(st.sampled_from(["scan", "reading", "bad", "bad"]))
        minutes = draw(st.integers(min_value=0, max_value=20))
        ts = (T0 + dt.timedelta(minutes=minutes)).isoformat()
        if choice == "scan":
            card, reader = draw(st.sampled_from(CARDS)), draw(st.sampled_from(READERS))
            body = {"credential": card, "method": "nfc", "ts": ts, "seq": n + 1}
            items.append(Item(f"{BASE}/reader/{reader}/scan", dumps(body), "scan"))
        elif choice == "reading":
            equipment, values = draw(st.sampled_from(GOOD_READINGS))
            body = {"ts": ts, "values": values, "seq": n + 1}
            items.append(Item(f"{BASE}/equipment/{equipment}/reading", dumps(body), "reading"))
        else:
            topic, payload = draw(hostile())
            items.append(Item(topic, payload, ""))
    return items


def clock() -> dt.datetime:
    return T0 + dt.timedelta(minutes=30)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(items=traffic(), batch=st.integers(min_value=1, max_value=8))
def test_hostile_messages_never_stall_the_site(
    zcity: Site, items: list[Item], batch: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Every message is acknowledged; every valid scan and reading is stored and every valid
    scan answered ok; every hostile one is refused exactly once, for its own reason (never as
    an internal error, never with a traceback logged), and nothing raises."""
    caplog.clear()
    with tempfile.TemporaryDirectory() as tmp, caplog.at_level(logging.ERROR):
        path = pathlib.Path(tmp) / "zcity.sqlite"
        link = MemoryLink()
        store = SqliteStore(path)
        worker = Worker(zcity, store, link, TOPICS, clock, T0)
        messages = [
            Message(item.topic, item.payload, T0 + dt.timedelta(minutes=30), 1, False, mid)
            for mid, item in enumerate(items, 1)
        ]
        for start in range(0, len(messages), batch):
            worker.step(messages[start : start + batch])
        scans = sum(1 for i in items if i.valid == "scan")
        metrics = sum(len(json.loads(i.payload)["values"]) for i in items if i.valid == "reading")
        refused = sum(1 for i in items if not i.valid)
        assert sorted(m.mid for m in link.acked) == list(range(1, len(items) + 1))
        assert store.count("scans") == scans
        assert store.count("readings") == metrics  # one row per metric
        counts = store.rejected_counts()
        assert sum(counts.values()) == refused, counts
        assert "internal" not in counts
        rejected = [json.loads(s.payload) for s in link.sent if s.topic.endswith("/rejected")]
        assert len(rejected) == refused
        assert not any("internal error" in r["reason"] for r in rejected), rejected
        answers = [json.loads(s.payload) for s in link.sent if s.topic.endswith("/ack")]
        assert len(answers) == scans and all(a["ok"] for a in answers), answers
        assert worker.counters["isolated"] == 0
        store.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
