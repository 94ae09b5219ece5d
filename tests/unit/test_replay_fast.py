"""Replay's fast paths change nothing: each line read once (the payload object passed on to the
decoder) and the in-memory twin of the store (contract §7: replay stores nothing unless asked)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import gateway
from gateway.alerts.book import Transition
from gateway.config import Site, load_site
from gateway.events import Message, Reading, Scan
from gateway.ingest.decode import Decoder, read_instant
from gateway.ingest.topics import Topics
from gateway.replay import Recorded, ReplayNote, read_events, replay_decisions
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import parse_instant

SITE = Path(gateway.__file__).parent / "sites" / "zcity.yaml"
BASE = "estate/zcity"
ACK = {
    "action": "alert.ack",
    "by": "zhang-wei",
    "rule": "equipment.out_of_range",
    "subject": "tx-1.winding_temp_c",
}


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE)


def _line(topic: str, payload: object, **extra: object) -> str:
    return json.dumps({"topic": f"{BASE}/{topic}", "payload": payload, **extra})


def _lines() -> list[str]:
    """Accepted, duplicate, restarted-counter, refused and odd lines, with alerts among them."""
    zhang, stranger = "04A224B1C23380", "04FF00000000AA"
    t = "2026-11-27T09:{:02d}:00+08:00".format
    scan = {"credential": zhang, "method": "nfc", "ts": t(0), "seq": 1}
    reading = {"values": {"winding_temp_c": 70.5, "load_pct": 40}, "ts": t(1), "seq": 1}
    return [
        _line("reader/fd-1/scan", scan),
        _line("reader/fd-1/scan", scan),  # a redelivery: a duplicate
        _line("reader/fd-1/scan", {**scan, "ts": t(2)}),  # the counter started again
        _line("reader/mc-1/scan", {"credential": stranger, "method": "nfc", "ts": t(3), "seq": 1}),
        _line("reader/mc-1/scan", {"credential": "WF-2026", "method": "qr", "ts": t(4), "seq": 2}),
        _line("reader/nope/scan", {"credential": zhang, "method": "nfc", "ts": t(5)}),
        _line("reader/fd-1/scan", {"credential": "", "method": "nfc", "ts": t(5), "seq": 9}),
        _line("equipment/tx-1/reading", reading),
        _line("equipment/tx-1/reading", reading),  # duplicate
        _line("equipment/tx-1/reading", {**reading, "values": {"load_pct": 41}}),  # restarted
        _line("equipment/tx-1/reading", {"values": {"winding_temp_c": 99}, "ts": t(6), "seq": 2}),
        _line("equipment/tx-1/reading", {"values": {"bogus": 1, "load_pct": 50}, "ts": t(7)}),
        _line("equipment/chiller-1/reading", {"values": {"leak": 1}, "ts": t(8), "seq": 1}),
        _line("equipment/gen-1/reading", {"values": {"fuel_pct": 1234567890123456789}, "ts": t(9)}),
        '{"topic": "' + BASE + '/equipment/gen-1/reading", "payload": {"values": '
        '{"fuel_pct": NaN}, "ts": "' + t(10) + '"}}',
        _line("equipment/gen-1/reading", json.dumps({"values": {"fuel_pct": 80}, "ts": t(11)})),
        _line("reader/gw-1/scan", {"credential": "名字", "method": "qr", "ts": t(12), "seq": 1}),
        # A lone surrogate: orjson refuses it, the standard library reads it (and so must replay).
        _line("reader/gw-1/scan", {"credential": "\ud800x", "method": "qr", "ts": t(12), "seq": 2}),
        _line("device/ge-1/status", "offline", received_at=t(13)),
        _line("device/ge-1/status", {"state": "online", "ts": t(14)}, received_at=t(14)),
        _line("equipment/tx-1/reading", {"values": {"winding_temp_c": 99}, "ts": t(30)}),
        json.dumps({"command": ACK, "received_at": t(31)}),
        _line("equipment/tx-1/reading", {"values": {"winding_temp_c": 50}, "ts": t(40)}),
        "not json",
    ]


def _run(site: Site, store: SqliteStore | None) -> tuple[list[str], Counter[str], list[str]]:
    stats: Counter[str] = Counter()
    notes: list[ReplayNote] = []
    got = []
    for item in replay_decisions(
        site, read_events(_lines(), site.tz), store=store, stats=stats, notes=notes
    ):
        if isinstance(item, Transition):
            got.append(json.dumps([item.alert.to_json(site.tz), item.change, str(item.at)]))
        else:
            got.append(repr(item))
    return got, stats, [f"{n.line}: {n.text}" for n in notes]


def test_twin_decides_as_the_sqlite_store(site: Site) -> None:
    """The in-memory twin answers duplicates, restarted counters and refusals as SQLite does:
    the same transitions, notifications, counters and notes (a twin that forgot a stored scan
    or reading would count no duplicate and flag no seq_reset)."""
    twin = _run(site, None)
    sqlite = _run(site, SqliteStore(":memory:"))
    assert twin == sqlite
    stats = twin[1]
    assert stats["duplicates"] == 2
    assert stats["flag_seq_reset"] == 2
    assert stats["rejected"] >= 4
    assert any(t for t in twin[0] if '"acknowledged"' in t)


def test_read_once_decodes_as_the_bytes(site: Site) -> None:
    """A payload passed on as its object decodes to what its bytes decode to, and its bytes are
    what they were before (json.dumps of the line's payload); lines orjson would read otherwise
    (a 19-digit number, NaN) keep the bytes' way."""
    decoder = Decoder(site, Topics("estate", site.id))
    at = dt.datetime(2026, 11, 27, 1, tzinfo=dt.UTC)
    parsed = 0
    for raw, rec in zip(
        [r for r in _lines() if r != "not json"], read_events(_lines(), site.tz), strict=False
    ):
        if not isinstance(rec, Recorded) or rec.command is not None:
            continue
        payload = json.loads(raw)["payload"]
        want = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        assert rec.payload == want
        slow = decoder.decode(Message(rec.topic, rec.payload, at, qos=1))
        if rec.body is None:
            continue
        fast = decoder.decode_parsed(Message(rec.topic, b"", at, qos=1), rec)
        if fast is not None:
            parsed += 1
            assert (fast, ()) == (slow.event, slow.rejections)
        else:
            assert slow.rejections or slow.event is None or "status" in rec.topic
    assert parsed >= 8
    odd = [r for r in read_events(_lines(), site.tz) if isinstance(r, Recorded)]
    assert [r.body for r in odd if b"fuel_pct" in r.payload] == [None, None, None]
    assert [r.body for r in odd if b"\\ud800" in r.payload] == [None]  # read by `json`


def test_twin_sun_counters_as_sqlite() -> None:
    """The twin's SUN counter history answers "seen" and "order" as the store's query does."""
    t0 = dt.datetime(2026, 11, 27, 1, tzinfo=dt.UTC)
    twin, sqlite = MemoryStore(), SqliteStore(":memory:")
    taps = [(5, 0), (9, 10), (7, 20)]
    for store in (twin, sqlite):
        for counter, minutes in taps:
            store.add_scan(
                Scan(
                    reader="fd-1",
                    post="front-desk",
                    credential="04AA",
                    method="nfc",
                    person=None,
                    time=t0 + dt.timedelta(minutes=minutes),
                    received_at=t0,
                    sun_counter=counter,
                )
            )
    for counter in range(3, 12):
        for minutes in (-5, 5, 15, 25):
            when = t0 + dt.timedelta(minutes=minutes)
            assert twin.sun_conflict("04AA", counter, when) == sqlite.sun_conflict(
                "04AA", counter, when
            ), (counter, minutes)
    assert twin.sun_conflict("04AA", 9, t0) == "seen"
    assert twin.sun_conflict("04BB", 1, t0) is None


def test_twin_reading_duplicates_as_sqlite() -> None:
    """The twin tells a redelivered reading from a restarted counter as the store's rows do:
    same seq with the same or other sent ts, values, a reading split over two messages, an
    integer for a float, a contact as a boolean (a twin that compared otherwise would count
    duplicates the store does not, or miss a seq_reset)."""
    t0 = dt.datetime(2026, 11, 27, 1, tzinfo=dt.UTC)
    at = t0 + dt.timedelta(minutes=1)

    def reading(
        values: dict[str, float | bool], seq: int | None = 1, sent: dt.datetime | None = t0
    ) -> Reading:
        return Reading("tx-1", values, sent or at, at, seq, (), sent)

    stored = [
        reading({"winding_temp_c": 70.5}),
        reading({"load_pct": 40.0}),  # the same seq and ts: one reading in two messages
        reading({"winding_temp_c": 71.0}, seq=2, sent=None),
        reading({"door_open": True}, seq=3),
    ]
    asked = [
        reading({"winding_temp_c": 70.5}),
        reading({"winding_temp_c": 70.5, "load_pct": 40.0}),
        reading({"winding_temp_c": 70.5, "load_pct": 40}),
        reading({"load_pct": 40.0}),
        reading({"winding_temp_c": 70.0}),
        reading({"winding_temp_c": 70.5}, sent=at),
        reading({"winding_temp_c": 71.0}, seq=2, sent=None),
        reading({"winding_temp_c": 71}, seq=2, sent=None),
        reading({"door_open": True}, seq=3),
        reading({"door_open": 1.0}, seq=3),
        reading({"winding_temp_c": 70.5}, seq=4),
        reading({"winding_temp_c": 70.5}, seq=None),
    ]
    twin, sqlite = MemoryStore(), SqliteStore(":memory:")
    for store in (twin, sqlite):
        for r in stored:
            store.add_reading(r)
    answers = [sqlite.stored_reading(r) for r in asked]
    assert [twin.stored_reading(r) for r in asked] == answers
    assert {True, False, None} <= set(answers)  # every kind of answer is asked for


def test_remembered_instant_is_per_text_and_zone() -> None:
    """The decoder's memo of the last time read answers only for the same text in the same
    zone: a naive time read in another zone is another instant (a memo by text alone would
    give the first zone's)."""
    shanghai, new_york = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")
    naive = "2026-11-27T09:00:00"
    first = read_instant(naive, shanghai)
    assert read_instant(naive, shanghai) == first
    assert read_instant(naive, new_york) == parse_instant(naive, new_york) != first
    assert read_instant("2026-11-27T01:00:00Z", shanghai) == dt.datetime(
        2026, 11, 27, 1, tzinfo=dt.UTC
    )
