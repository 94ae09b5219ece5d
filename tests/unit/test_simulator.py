"""The site simulator: deterministic, speaks the contract, plausible, faults only when asked."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict

import pytest

from devices.simulator import FaultConfig, SimClock, SimEvent, Simulator, demo_start, flood
from gateway.config import Site
from gateway.events import Message, Reading, Scan
from gateway.ingest.decode import Decoder
from gateway.ingest.topics import Topics

START = dt.datetime(2026, 11, 26, 23, 50, tzinfo=dt.UTC)  # Fri 27 Nov, 07:50 in Shanghai
DAYS = 3
MANY_FAULTS = FaultConfig(scale=3.0)


def run(site: Site, seed: int = 1, faults: FaultConfig | None = None) -> list[SimEvent]:
    sim = Simulator(site, seed, START, faults or FaultConfig())
    return sim.events_until(START + dt.timedelta(days=DAYS))


def decode(site: Site, event: SimEvent) -> Scan | Reading | None:
    """Through the gateway's own decoder; any refusal fails the test."""
    msg = Message(event.topic, event.payload, event.at, qos=1)
    out = Decoder(site, Topics("estate", site.id)).decode(msg)
    assert out.rejections == (), (event, out.rejections)
    assert out.event is not None
    return out.event if isinstance(out.event, Scan | Reading) else None


def local(site: Site, event: SimEvent) -> dt.datetime:
    return event.at.astimezone(site.tz)


def scans_by(site: Site, events: list[SimEvent], person: str) -> list[SimEvent]:
    cards = {c.split(":", 1)[1] for c in site.people[person].credentials}
    return [e for e in events if e.kind == "scan" and e.body()["credential"] in cards]


def test_same_seed_same_events_however_time_is_sliced(zcity: Site) -> None:
    """Prevents a simulator whose output depends on how often the publisher looks at the clock
    (or on anything but the seed), which would make demo runs and benchmarks unrepeatable."""
    whole = run(zcity, faults=MANY_FAULTS)
    sim = Simulator(zcity, 1, START, MANY_FAULTS)
    sliced: list[SimEvent] = []
    t = START - dt.timedelta(minutes=5)
    while t < START + dt.timedelta(days=DAYS):
        t += dt.timedelta(seconds=97)
        sliced += sim.events_until(min(t, START + dt.timedelta(days=DAYS)))
    assert sliced == whole
    assert run(zcity, seed=2, faults=MANY_FAULTS) != whole
    assert [e.at for e in whole] == sorted(e.at for e in whole)


def test_every_payload_decodes_and_only_the_stranger_card_is_unknown(zcity: Site) -> None:
    """Prevents the simulator drifting from the contract: every message it sends must pass the
    gateway's real decoder, and the only unknown credential is the deliberate fault."""
    events = run(zcity, faults=MANY_FAULTS)
    unknown = 0
    for event in events:
        decoded = decode(zcity, event)
        if decoded is not None:  # sent at its time, or later (buffered); never in the future
            assert decoded.time <= event.at and decoded.flags == (), event
        if isinstance(decoded, Scan):
            assert (decoded.person is None) == (event.fault == "unknown_card"), event
            unknown += decoded.person is None
    assert unknown > 0
    assert {e.kind for e in events} == {"scan", "reading", "status"}
    assert all(e.qos == 1 and e.retain == (e.kind == "status") for e in events)


def test_seq_is_per_device_and_only_grows(zcity: Site) -> None:
    """Prevents duplicate (device, seq) pairs, which the gateway would drop as redeliveries."""
    last: dict[str, int] = defaultdict(int)
    for event in run(zcity, faults=MANY_FAULTS):
        if event.kind != "status":
            seq = event.body()["seq"]
            assert seq > last[event.device], event
            last[event.device] = seq


def test_faults_appear_when_enabled(zcity: Site) -> None:
    """Prevents fault knobs that do nothing: a demo without them shows no alerts at all."""
    events = run(zcity, faults=MANY_FAULTS)
    faults = {e.fault for e in events}
    assert {"unknown_card", "reader_offline", "reader_online", "out_of_range"} <= faults
    offline = [e for e in events if e.fault == "reader_offline"]
    for down in offline:  # every outage ends, on the same reader
        assert any(e.fault == "reader_online" and e.device == down.device for e in events)
    scans = [e for e in events if e.kind == "scan"]
    late = [e for e in scans if dt.datetime.fromisoformat(e.body()["ts"]) < e.at]
    assert late, "scans made while a reader is offline are sent late, when it is back"
    over = [e for e in events if e.fault == "out_of_range"]
    assert any(_outside(zcity, e) for e in over)


def test_no_faults_when_disabled(zcity: Site) -> None:
    """Prevents spurious alerts in a fault-free run: no stranger cards, no outages, and every
    value inside its limits by more than the hysteresis."""
    events = run(zcity, faults=FaultConfig.none())
    assert {e.fault for e in events} == {None}
    assert {e.payload for e in events if e.kind == "status"} == {b"online"}
    assert not [e for e in events if e.kind == "reading" and _outside(zcity, e)]
    for event in events:
        decoded = decode(zcity, event)
        assert not isinstance(decoded, Scan) or decoded.person is not None


def _outside(site: Site, event: SimEvent) -> bool:
    """True when any value of a reading is outside its limits, or within hysteresis of them."""
    equipment = site.equipment[event.device]
    for name, value in event.body()["values"].items():
        m = equipment.metrics[name]
        if m.expect is not None and value != m.expect:
            return True
        if m.max is not None and value > m.max - m.hysteresis:
            return True
        if m.min is not None and value < m.min + m.hysteresis:
            return True
    return False


def test_rounds_happen_at_their_interval(zcity: Site) -> None:
    """Prevents round.missed in a healthy demo: the engineer's round comes a little before
    every_minutes, the first one within every_minutes of the start (contract §5 rule 6)."""
    rounds = zcity.posts["power-room"].rounds
    assert rounds is not None
    every = dt.timedelta(minutes=rounds.every_minutes)
    scans = [e for e in scans_by(zcity, run(zcity, faults=FaultConfig.none()), "liu-qiang")]
    assert {e.device for e in scans} == set(zcity.posts["power-room"].readers)
    times = [START, *(e.at for e in scans)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(scans) >= DAYS * 24 * 60 / rounds.every_minutes
    assert all(every * 0.8 < gap < every for gap in gaps[1:])
    assert gaps[0] < every


def test_duty_manager_hands_over_and_patrols_every_key_post(zcity: Site) -> None:
    """Prevents a demo that raises duty and patrol alerts by itself: the manager of the day
    (and the outgoing one) scan at the handover post before 08:30, sign every key post by 18:00,
    and patrol at least min_patrol_hours in sessions without gaps over patrol_max_gap_minutes."""
    events = run(zcity, faults=FaultConfig.none())
    day = dt.date(2026, 11, 27)  # a Friday: zhang-wei, after Thursday's zhao-lei
    begin = dt.datetime(2026, 11, 27, 8, 0, tzinfo=zcity.tz)
    handover = [
        e
        for e in events
        if e.device == "mc-1" and begin <= local(zcity, e) < begin + dt.timedelta(minutes=30)
    ]
    assert zcity.rostered_manager(day) == "zhang-wei"
    for person in ("zhang-wei", "zhao-lei"):
        assert set(scans_by(zcity, handover, person)), person
    mine = [e for e in scans_by(zcity, events, "zhang-wei") if zcity.calendar.day_of(e.at) == day]
    by_six = {zcity.reader_post[e.device].id for e in mine if local(zcity, e).hour < 18}
    assert {p.id for p in zcity.posts.values() if p.key} <= by_six
    for a, b in itertools.pairwise(mine):  # never faster than the site's walking times
        walk = zcity.walking_time(zcity.reader_post[a.device].id, zcity.reader_post[b.device].id)
        assert b.at - a.at >= walk
    gap = dt.timedelta(minutes=zcity.config.duty.patrol_max_gap_minutes)
    times = [e.at for e in mine]
    total, first = dt.timedelta(0), times[0]
    for a, b in zip(times, [*times[1:], None], strict=True):
        if b is None or b - a > gap:
            total, first = total + (a - first), b or a
    assert total >= dt.timedelta(hours=zcity.config.duty.min_patrol_hours)


def test_registered_swap_changes_who_patrols(zcity: Site) -> None:
    """Prevents the simulator ignoring swaps: on 2026-11-29 zhao-lei covers wang-fang."""
    events = run(zcity, faults=FaultConfig.none())
    sunday = dt.date(2026, 11, 29)
    on_duty = {
        p
        for p in ("zhao-lei", "wang-fang")
        for e in scans_by(zcity, events, p)
        if zcity.calendar.day_of(e.at) == sunday and local(zcity, e).hour == 10
    }
    assert on_duty == {"zhao-lei"}


def test_flood_is_valid_and_sized(zcity: Site) -> None:
    """Prevents benchmarks measuring refusals: flood() makes exactly n valid messages."""
    events = flood(zcity, 3000, seed=7)
    assert len(events) == 3000
    assert events == flood(zcity, 3000, seed=7)
    kinds = {type(decode(zcity, e)) for e in events}
    assert kinds == {Scan, Reading}
    scans = [decode(zcity, e) for e in events if e.kind == "scan"]
    assert all(isinstance(s, Scan) and s.person for s in scans)


def test_sim_clock_runs_at_speed_between_start_and_freeze() -> None:
    """Prevents a demo clock that runs before the devices are connected, runs backwards, or
    keeps running while the demo shuts down (deadlines would fire with no devices left)."""
    now = [100.0]
    clock = SimClock(START, speed=60, monotonic=lambda: now[0])
    now[0] = 105.0
    assert clock() == START
    clock.start()
    now[0] = 106.5
    assert clock() == START + dt.timedelta(minutes=90)
    now[0] = 106.0  # a monotonic source never does this; the clock still must not go back
    assert clock() == START + dt.timedelta(minutes=90)
    assert clock.real_seconds_until(START + dt.timedelta(hours=2)) == pytest.approx(0.5)
    clock.freeze()
    now[0] = 200.0
    assert clock() == START + dt.timedelta(minutes=90)


def test_demo_starts_before_the_handover(zcity: Site) -> None:
    """Prevents a demo that opens in the middle of the afternoon with nothing to watch."""
    now = dt.datetime(2026, 11, 27, 6, 0, tzinfo=dt.UTC)  # 14:00 in Shanghai
    assert demo_start(zcity, now) == START
    early = dt.datetime(2026, 11, 26, 22, 0, tzinfo=dt.UTC)  # 06:00, still Thursday's duty day
    assert demo_start(zcity, early) == START - dt.timedelta(days=1)
