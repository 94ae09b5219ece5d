"""The site simulator: deterministic, speaks the contract, plausible, faults only when asked."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import pathlib
import random
from collections import defaultdict

import pytest
import yaml

from devices.simulator import FaultConfig, SimEvent, Simulator, demo_start, flood
from devices.simulator.faults import FAULT_NAMES, Fault, FaultPlanner
from devices.simulator.publisher import SimClock
from gateway.config import Site, load_site, parse_site
from gateway.config.models import ENGINEERING_ROLES
from gateway.events import Message, Reading, Scan
from gateway.ingest.decode import Decoder
from gateway.ingest.topics import Topics
from gateway.replay import Recorded, replay
from gateway.rules.equipment import OUT_OF_RANGE, is_back, is_out
from gateway.rules.flags import Flagger

START = dt.datetime(2026, 11, 26, 23, 50, tzinfo=dt.UTC)  # Fri 27 Nov, 07:50 in Shanghai
DAYS = 3
MANY_FAULTS = FaultConfig(scale=3.0)
EQUIPMENT_FAULTS = {  # the named faults, and the alert subject each raises on the demo site
    "leak": "chiller-1.leak",
    "transformer_overheat": "tx-1.winding_temp_c",
    "battery_sag": "gen-1.battery_v",
}


def run(site: Site, seed: int = 1, faults: FaultConfig | None = None) -> list[SimEvent]:
    """DAYS of events from START (each combination simulated once per session)."""
    return list(_run(site, seed, faults or FaultConfig()))


@functools.cache
def _run(site: Site, seed: int, faults: FaultConfig) -> tuple[SimEvent, ...]:
    sim = Simulator(site, seed, START, faults)
    return tuple(sim.events_until(START + dt.timedelta(days=DAYS)))


def alerts(site: Site, events: list[SimEvent]) -> list[tuple[str, str, str, dt.datetime]]:
    """(rule, subject, change, at) of every alert transition the gateway's own rules make of
    the events, replayed as they were sent."""
    recorded = [Recorded(i, e.topic, e.payload, e.at) for i, e in enumerate(events, 1)]
    return [(t.alert.rule, t.alert.subject, t.change, t.at) for t in replay(site, recorded)]


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
    faults = {f for e in events for f in e.faults}
    assert {*FAULT_NAMES, "reader_online"} == faults
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
    """Prevents round.missed in a healthy demo: at every post with rounds, the engineer's round
    comes a little before every_minutes, the first one within every_minutes of the start
    (contract §5 rule 6) — the power room every 2 hours, the generator room every 4."""
    events = run(zcity, faults=FaultConfig.none())
    posts = [p for p in zcity.posts.values() if p.rounds]
    assert {p.id for p in posts} == {"power-room", "generator-room"}
    for post in posts:
        assert post.rounds is not None
        every = dt.timedelta(minutes=post.rounds.every_minutes)
        scans = [e for e in scans_by(zcity, events, "liu-qiang") if e.device in post.readers]
        gaps = [b - a for a, b in itertools.pairwise([START, *(e.at for e in scans)])]
        assert len(scans) >= DAYS * dt.timedelta(days=1) / every, post.id
        assert all(every * 0.8 < gap < every for gap in gaps[1:]), post.id
        assert gaps[0] < every, post.id


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


# -- the named faults ------------------------------------------------------------------------


def test_fault_free_run_raises_no_alert_at_all(zcity: Site) -> None:
    """Prevents a demo that cries wolf: three simulated days without faults, through the
    gateway's own rules, raise nothing — every alert in the demo is an injected fault."""
    assert alerts(zcity, run(zcity, faults=FaultConfig.none())) == []


@pytest.mark.parametrize("name", FAULT_NAMES)
def test_each_fault_happens_only_when_enabled(zcity: Site, name: str) -> None:
    """Prevents fault switches that leak into each other: a fault turned on alone is the only
    one that happens (an outage comes back online), and every other one on without it never
    brings it — in the same events, seed after seed."""
    alone = run(zcity, faults=FaultConfig.only(name, scale=3.0))
    extra = {"reader_online"} if name == "reader_offline" else set()
    assert {f for e in alone for f in e.faults} == {name, *extra}
    again = Simulator(zcity, 1, START, FaultConfig.only(name, scale=3.0))
    slices = [START + dt.timedelta(days=DAYS) * k / 7 for k in range(1, 8)]
    assert alone == [e for t in slices for e in again.events_until(t)]  # sliced otherwise
    assert alone != run(zcity, seed=2, faults=FaultConfig.only(name, scale=3.0))
    others = [n for n in FAULT_NAMES if n != name]
    without = run(zcity, faults=FaultConfig.only(*others, scale=3.0))
    assert name not in {f for e in without for f in e.faults}
    off = dataclasses.replace(MANY_FAULTS, **{name: Fault(per_day=3.0, on=False)})
    assert name not in {f for e in run(zcity, faults=off) for f in e.faults}


@pytest.mark.parametrize(("name", "subject"), EQUIPMENT_FAULTS.items())
def test_equipment_fault_raises_and_clears_its_alert(zcity: Site, name: str, subject: str) -> None:
    """Prevents faults that look alarming but never trip the rule (contract §5 rule 7): each
    named fault, through the gateway's own rules, opens equipment.out_of_range on its metric
    and only there, and every alert it opens closes again (the leak's latch by the on-site
    check that follows it)."""
    changes = alerts(zcity, run(zcity, faults=FaultConfig.only(name, scale=2.0)))
    assert {(rule, subj) for rule, subj, _, _ in changes} == {(OUT_OF_RANGE, subject)}
    kinds = [change for _, _, change, _ in changes]
    assert kinds.count("open") >= 2
    assert kinds == ["open", "cleared"] * kinds.count("open")


def _stretches(site: Site, events: list[SimEvent], subject: str) -> list[list[SimEvent]]:
    """Each run of consecutive readings of `equipment.metric` that are out of range, with the
    first reading back inside (by the hysteresis) appended."""
    equipment, name = subject.split(".")
    metric = site.equipment[equipment].metrics[name]
    runs: list[list[SimEvent]] = []
    current: list[SimEvent] = []
    for event in (e for e in events if e.kind == "reading" and e.device == equipment):
        value = event.body()["values"][name]
        if is_out(metric, value):
            current.append(event)
        elif current and is_back(metric, value):
            runs.append([*current, event])
            current = []
    return runs


def _value(event: SimEvent, subject: str) -> float | bool:
    value: float | bool = event.body()["values"][subject.split(".")[1]]
    return value


def _engineer_scans(site: Site, events: list[SimEvent], post: str) -> list[SimEvent]:
    people = {
        c.split(":", 1)[1]
        for p in site.people.values()
        if set(p.roles) & ENGINEERING_ROLES
        for c in p.credentials
    }
    return [
        e
        for e in events
        if e.kind == "scan"
        and site.reader_post[e.device].id == post
        and e.body()["credential"] in people
    ]


def test_leak_latches_until_an_engineer_checks_it_dry(zcity: Site) -> None:
    """Prevents a leak alert that can never close: the leak reads true for a while, then
    false again, and only after a reading has shown it dry does an engineer scan at the
    chiller's post (the on-site check that releases the latch, §5 rule 7)."""
    events = run(zcity, faults=FaultConfig.only("leak", scale=2.0))
    leaks = _stretches(zcity, events, "chiller-1.leak")
    checks = _engineer_scans(zcity, [e for e in events if "leak" in e.faults], "hvac-room")
    assert len(leaks) >= 2 and len(checks) == len(leaks)
    for (*wet, dry), check, after in itertools.zip_longest(leaks, checks, leaks[1:]):
        assert all(e.fault == "leak" for e in wet)
        assert dry.at < check.at and (after is None or check.at < after[0].at)


def _episodes(events: list[SimEvent], equipment: str, fault: str) -> list[list[SimEvent]]:
    """The readings of `equipment` during each occurrence of `fault`, one list each, with the
    first reading after it appended."""
    episodes: list[list[SimEvent]] = []
    current: list[SimEvent] = []
    for event in (e for e in events if e.kind == "reading" and e.device == equipment):
        if fault in event.faults:
            current.append(event)
        elif current:
            episodes.append([*current, event])
            current = []
    return episodes


def test_transformer_overheat_ramps_up_stays_and_cools(zcity: Site) -> None:
    """Prevents an overheat that is only a blip: the winding temperature climbs through
    several readings, stays above max for longer than for_seconds, then cools back."""
    metric = zcity.equipment["tx-1"].metrics["winding_temp_c"]
    assert metric.max is not None
    events = run(zcity, faults=FaultConfig.only("transformer_overheat", scale=2.0))
    episodes = _episodes(events, "tx-1", "transformer_overheat")
    assert len(episodes) >= 2
    for episode in episodes:
        values = [_value(e, "tx-1.winding_temp_c") for e in episode]
        out = [i for i, v in enumerate(values) if is_out(metric, v)]
        assert out == list(range(out[0], out[-1] + 1))  # one stretch, not a flicker
        assert out[0] >= 3  # it warms up before it breaks the limit
        assert episode[out[-1]].at - episode[out[0]].at > dt.timedelta(seconds=metric.for_seconds)
        assert max(values) > metric.max + 5
        assert is_back(metric, values[-1])  # cooled down


def test_battery_sags_slowly_and_recovers_after_an_engineer_visit(zcity: Site) -> None:
    """Prevents a generator that is never 'not ready' long enough to matter (篇5 g): the
    battery voltage drifts down over many readings, stays below min for longer than
    for_seconds (critical), an engineer comes to the generator room while it is low, and it
    is back above min only after that."""
    metric = zcity.equipment["gen-1"].metrics["battery_v"]
    assert metric.min is not None and metric.for_seconds == 300
    events = run(zcity, faults=FaultConfig.only("battery_sag", scale=2.0))
    visits = [e for e in _engineer_scans(zcity, events, "generator-room") if e.fault]
    episodes = _episodes(events, "gen-1", "battery_sag")
    assert len(episodes) >= 2 and len(visits) == len(episodes)
    for episode, visit in zip(episodes, visits, strict=True):
        values = [_value(e, "gen-1.battery_v") for e in episode]
        out = [i for i, v in enumerate(values) if is_out(metric, v)]
        assert out == list(range(out[0], out[-1] + 1))
        low, back = episode[out[0]], episode[out[-1] + 1]
        assert low.at - episode[0].at >= dt.timedelta(minutes=15)  # a drift, not a drop
        assert episode[out[-1]].at - low.at > dt.timedelta(seconds=metric.for_seconds)
        assert low.at < visit.at < back.at and visit.fault == "battery_sag"
        assert is_back(metric, values[-1])


def test_faults_only_on_equipment_the_site_has() -> None:
    """Prevents a simulator tied to the demo site: on the demo site without its generator the
    battery never sags and every other fault still happens; on a site without equipment only
    the readers' faults do; the generic fault never takes a named fault's metric."""
    sites = pathlib.Path(__file__).parents[2] / "gateway" / "sites"
    data = yaml.safe_load((sites / "zcity.yaml").read_text(encoding="utf-8"))
    data["equipment"] = [e for e in data["equipment"] if e["id"] != "gen-1"]
    no_generator = parse_site(data)
    assert "gen-1" not in no_generator.equipment
    events = run(no_generator, faults=MANY_FAULTS)
    for event in events:
        decode(no_generator, event)
    assert {f for e in events for f in e.faults} == {*FAULT_NAMES, "reader_online"} - {
        "battery_sag"
    }
    minimal = load_site(pathlib.Path(__file__).parents[2] / "gateway" / "sites" / "minimal.yaml")
    faults = {f for e in run(minimal, faults=MANY_FAULTS) for f in e.faults}
    assert faults == {"unknown_card", "reader_offline", "reader_online"}
    planner = FaultPlanner(
        no_generator, MANY_FAULTS, START, lambda *p: random.Random(str(p)), lambda _: 60
    )
    generic = {f"{eq.id}.{name}" for eq, name, _ in planner.targets("out_of_range")}
    assert generic and not generic & set(EQUIPMENT_FAULTS.values())


def test_first_faults_come_early_when_asked(zcity: Site) -> None:
    """Prevents a demo with nothing to watch for its first simulated hours: with
    first_within_minutes, every fault has happened by then, wherever its daily rate."""
    soon = dataclasses.replace(FaultConfig(), first_within_minutes=90.0)
    events = Simulator(zcity, 1, START, soon).events_until(START + dt.timedelta(minutes=90))
    assert {f for e in events for f in e.faults} >= set(FAULT_NAMES)


def test_no_scan_is_ever_suspicious(zcity: Site) -> None:
    """Prevents the demo flagging its own people: a round and an on-site check due at once
    never send one engineer between two posts faster than the site's walking time
    (impossible_travel), nor twice to one reader within a minute (duplicate_tap)."""
    flagger = Flagger(zcity)
    for event in run(zcity, faults=FaultConfig(scale=6.0)):
        scan = decode(zcity, event)
        if isinstance(scan, Scan) and scan.person is not None:
            flagged = flagger.flag(scan)
            assert flagged.flags == (), event
            flagger.remember(flagged)
