"""The pure simulator: what a site's devices send next, given a seed and the instants asked.

`Simulator` has no I/O and reads no wall clock: given a site, a seed and a start instant it
says what happens next (`events_until(t)`), and the same seed always gives the same events.
Sensors read a daily cycle with slow drift and noise; the faults it injects (a leak, an
overheating transformer, a sagging generator battery, a reader going offline, a stranger's
card …) are planned in `devices.simulator.faults` and configured with `FaultConfig`. `flood`
makes valid traffic fast, for benchmarks. Payloads are built by `gateway.payloads`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from devices.simulator.faults import Excursion, FaultConfig, FaultPlanner, Plan
from gateway import payloads
from gateway.config import Site
from gateway.config.models import Equipment, Metric, Person, Post, PostKind
from gateway.ingest.topics import Topics

__all__ = ["SimEvent", "Simulator", "demo_start", "flood"]

MIN, DAY = dt.timedelta(minutes=1), dt.timedelta(days=1)
SAME_POST_AGAIN = 2 * MIN  # one person at one post twice: not sooner (duplicate_tap is 60 s)
FLOOD_START = dt.datetime(2026, 1, 5, 1, 0, tzinfo=dt.UTC)  # a Monday, 09:00 in Shanghai
Card = tuple[payloads.Method, str]  # (method, credential)


@dataclass(frozen=True)
class SimEvent:
    """One message a device publishes at simulated instant `at` (UTC)."""

    at: dt.datetime
    topic: str
    payload: bytes
    qos: int
    retain: bool
    device: str
    kind: str  # scan | reading | status
    # The injected fault this event is part of: unknown_card | reader_offline | reader_online
    # | leak | transformer_overheat | battery_sag | out_of_range; a reading during two faults of
    # its equipment names both, joined by "+" (see `faults`). An engineer's check is part of
    # the fault it checks on.
    fault: str | None = None

    def body(self) -> Any:
        """The payload as JSON (scan, reading) or text (status)."""
        return self.payload.decode() if self.kind == "status" else json.loads(self.payload)

    @property
    def faults(self) -> tuple[str, ...]:
        """Every fault this event is part of (none: an ordinary event)."""
        return tuple(self.fault.split("+")) if self.fault else ()


def _card(person: Person) -> Card | None:
    """(method, credential) a person presents: their first NFC card, else their first code."""
    cards = sorted(person.credentials, key=lambda c: not c.startswith("nfc:"))
    if not cards:
        return None
    kind, _, credential = cards[0].partition(":")  # the site file allows nfc: and qr: only
    return ("nfc" if kind == "nfc" else "qr", credential)


def demo_start(site: Site, now: dt.datetime) -> dt.datetime:
    """07:50 (40 min before day_starts) of the duty day containing `now`: the handover is next."""
    return site.calendar.day_start(site.calendar.day_of(now)) - 40 * MIN


class _Gauge:
    """One metric's plausible value: a daily cycle, slow drift and noise inside a safe band."""

    def __init__(self, metric: Metric, rng: random.Random) -> None:
        self.m, self.rng, self.drift = metric, rng, 0.0
        lo, hi = metric.min, metric.max
        if lo is not None and hi is not None:
            self.scale, base = (hi - lo) or 1.0, (lo + hi) / 2
        else:
            self.scale = abs(hi if hi is not None else lo if lo is not None else 50.0) or 10.0
            base = hi - 0.3 * self.scale if hi is not None else (lo or 0.0) + 0.3 * self.scale
        self.base, self.amp = base, 0.1 * self.scale
        self.margin = metric.hysteresis + 0.05 * self.scale  # inside by more than hysteresis
        self.lo = -math.inf if lo is None else lo + self.margin
        self.hi = math.inf if hi is None else hi - self.margin

    def value(self, at: dt.datetime, fault: Excursion | None = None) -> float | bool:
        """The value at `at`; during an excursion, moved towards (and at its worst, beyond)
        the limit it breaks, out by more than the margin."""
        weight = 0.0 if fault is None else fault.weight(at)
        if self.m.expect is not None:
            return self.m.expect != (weight > 0)
        self.drift = 0.97 * self.drift + self.rng.gauss(0, 0.05 * self.amp)
        cycle = math.sin(2 * math.pi * (at.timestamp() / 86400 - 0.25))
        x = self.base + 0.5 * self.amp * cycle + self.drift + self.rng.gauss(0, 0.1 * self.amp)
        normal = min(max(round(x, 2), self.lo), self.hi)
        if fault is None or weight == 0:
            return normal
        up = (fault.direction > 0 and self.m.max is not None) or self.m.min is None
        over = self.margin + 0.05 * self.scale * fault.depth
        worst = self.m.max + over if up and self.m.max is not None else self.lo - 2 * over
        wobble = abs(self.rng.gauss(0, 0.01 * self.scale)) * (1 if up else -1)
        return round(normal + (worst - normal) * weight + wobble * weight, 2)


class _Out:
    """Builds contract payloads (§3, `gateway.payloads`), with a persistent `seq` per reader
    and per equipment; `ts` in the site's zone."""

    def __init__(self, site: Site, root: str, seq_base: int) -> None:
        self.site, self.base = site, Topics(root, site.id).base
        self.seq: defaultdict[str, int] = defaultdict(lambda: seq_base)

    def scan(self, at: dt.datetime, reader: str, card: Card, fault: str = "") -> SimEvent:
        ts, seq = at.astimezone(self.site.tz), self._next(reader)
        payload = payloads.scan(card[1], card[0], ts=ts, seq=seq)
        topic = f"{self.base}/reader/{reader}/scan"
        return SimEvent(at, topic, payload, 1, False, reader, "scan", fault or None)

    def reading(
        self, at: dt.datetime, equipment: str, values: dict[str, float | bool], fault: str = ""
    ) -> SimEvent:
        ts, seq = at.astimezone(self.site.tz), self._next(equipment)
        payload = payloads.reading(values, ts=ts, seq=seq)
        topic = f"{self.base}/equipment/{equipment}/reading"
        return SimEvent(at, topic, payload, 1, False, equipment, "reading", fault or None)

    def status(
        self, at: dt.datetime, device: str, state: payloads.State, fault: str = ""
    ) -> SimEvent:
        topic = f"{self.base}/device/{device}/status"
        return SimEvent(at, topic, payloads.status(state), 1, True, device, "status", fault or None)

    def _next(self, device: str) -> int:
        self.seq[device] += 1
        return self.seq[device]


class Simulator:
    """What happens next on a site; pure and deterministic given `seed` and the instants asked."""

    def __init__(
        self,
        site: Site,
        seed: int,
        start: dt.datetime,
        faults: FaultConfig | None = None,
        *,
        root: str = "estate",
        reading_every_seconds: float = 60.0,
        seq_base: int = 0,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must carry a time zone")
        self.site, self.seed, self.faults = site, seed, faults or FaultConfig()
        self.start = start.astimezone(dt.UTC).replace(microsecond=0)
        self.reading_every = reading_every_seconds
        self._out = _Out(site, root, seq_base)
        self.topics = Topics(root, site.id)
        self._offline: dict[str, list[SimEvent]] = {}  # reader → scans buffered while offline
        self._faults: dict[tuple[str, str], Excursion] = {}  # (equipment, metric) → its fault
        self._last_scan: dict[str, tuple[dt.datetime, str]] = {}  # person → (when, post)
        self._gauges = {
            (e.id, n): _Gauge(m, self._rng("gauge", e.id, n))
            for e in site.equipment.values()
            for n, m in e.metrics.items()
        }
        self._posts = [p for p in site.posts.values() if p.readers]
        rng = self._rng("walk")
        index = {p.id: i for i, p in enumerate(self._posts)}
        self._walk: dict[tuple[str, str], dt.timedelta] = {}  # never faster than the site's
        for (a, i), (b, j) in itertools.product(index.items(), repeat=2):  # least walking time
            least = site.walking_time(a, b) / MIN
            self._walk[(a, b)] = (
                max(2 + 1.2 * abs(i - j), 1.25 * least) + rng.uniform(0, 1.5)
            ) * MIN
        self._people = [p for p in site.people.values() if _card(p)]
        actors: list[Iterator[Plan]] = [self._boot(), self._duty()]
        actors += [self._round(p) for p in site.posts.values() if p.rounds]
        guards = [p for p in self._people if "security" in p.roles]
        gates = [p for p in self._posts if p.kind == PostKind.security_post]
        for i, guard in enumerate(guards if gates else []):  # gates shared out round-robin
            mine = [g for j, g in enumerate(gates) if j % len(guards) == i]
            actors.append(self._guard(guard, mine or [gates[i % len(gates)]]))
        actors += [self._readings(e) for e in site.equipment.values() if e.metrics]
        planner = FaultPlanner(site, self.faults, self.start, self._rng, self._interval)
        actors += planner.actors()
        self._heap: list[tuple[dt.datetime, int, Plan, Iterator[Plan]]] = []
        for i, actor in enumerate(actors):
            self._push(i, actor)

    def events_until(self, until: dt.datetime) -> list[SimEvent]:
        """Every event at or before `until` not returned yet, in time order."""
        out: list[SimEvent] = []
        while self._heap and self._heap[0][0] <= until:
            _, index, plan, actor = heapq.heappop(self._heap)
            later = self._still_busy(plan)
            if later is not None:  # two actors sent one person: they come when they can
                heapq.heappush(
                    self._heap, (later, index, dataclasses.replace(plan, at=later), actor)
                )
                continue
            out += self._apply(plan)
            self._push(index, actor)
        return out

    def next_at(self) -> dt.datetime | None:
        """When the next event is due (None: nothing will ever happen)."""
        return self._heap[0][0] if self._heap else None

    # -- internals ---------------------------------------------------------------------------

    def _rng(self, *parts: str) -> random.Random:
        return random.Random(":".join((str(self.seed), *parts)))

    def _push(self, index: int, actor: Iterator[Plan]) -> None:
        plan = next(actor, None)
        if plan is not None:
            plan = dataclasses.replace(plan, at=plan.at.replace(microsecond=0))
            heapq.heappush(self._heap, (plan.at, index, plan, actor))

    def _still_busy(self, plan: Plan) -> dt.datetime | None:
        """When a person asked to scan too soon after their last scan (a round and an on-site
        check at once) can be there: never faster than the site's walking times (no
        impossible_travel), never twice within a minute at one post (no duplicate_tap)."""
        if plan.action != "scan" or plan.person is None:
            return None
        post = self.site.reader_post[plan.target].id
        last = self._last_scan.get(plan.person)
        if last is not None:
            least = self.site.walking_time(last[1], post) if last[1] != post else SAME_POST_AGAIN
            if plan.at < last[0] + least:
                due = last[0] + least  # whole seconds, as every planned instant
                return due + dt.timedelta(microseconds=-due.microsecond % 1_000_000)
        self._last_scan[plan.person] = (plan.at, post)
        return None

    def _apply(self, plan: Plan) -> list[SimEvent]:
        at, target, out = plan.at, plan.target, self._out
        if plan.action == "reading":
            values = {
                n: self._gauges[(target, n)].value(at, self._faults.get((target, n)))
                for n in self.site.equipment[target].metrics
            }
            faults = sorted({f.fault for (eq, _), f in self._faults.items() if eq == target})
            return [out.reading(at, target, values, "+".join(faults))]
        if plan.action in ("scan", "unknown"):
            if plan.action == "unknown":
                event = out.scan(at, target, ("nfc", plan.data), plan.fault)
            else:
                card = _card(self.site.people[plan.person or ""])
                assert card is not None
                event = out.scan(at, target, card, plan.fault)
            if target in self._offline:  # a reader buffers while offline and sends late
                self._offline[target].append(event)
                return []
            return [event]
        if plan.action == "offline":
            self._offline[target] = []
            return [out.status(at, target, "offline", "reader_offline")]
        if plan.action == "online":
            buffered = self._offline.pop(target, None)
            fault = "" if buffered is None else "reader_online"
            late = [dataclasses.replace(e, at=at) for e in buffered or []]
            return [out.status(at, target, "online", fault), *late]
        exc = plan.excursion
        assert exc is not None, plan
        if plan.action == "force":
            self._faults[(exc.equipment, exc.metric)] = exc
        elif self._faults.get((exc.equipment, exc.metric)) == exc:
            del self._faults[(exc.equipment, exc.metric)]
        return []

    def _boot(self) -> Iterator[Plan]:
        for device in sorted(self.site.devices):
            yield Plan(self.start, "online", device)

    def _manager(self, day: dt.date) -> Person | None:
        roster = self.site.config.roster
        swaps = [s.manager for s in roster.swaps if s.date == day] if roster else []
        person = self.site.people.get(swaps[-1] if swaps else self.site.rostered_manager(day) or "")
        return person if person is not None and _card(person) else None

    def _duty(self) -> Iterator[Plan]:
        rng, day = self._rng("duty"), self.site.calendar.day_of(self.start)
        if self._posts and any(self._manager(day + k * DAY) for k in range(7)):
            while True:
                yield from (p for p in self._duty_day(day, rng) if p.at >= self.start)
                day += DAY

    def _duty_day(self, day: dt.date, rng: random.Random) -> list[Plan]:
        """Both managers scan at the handover post before day_starts; the incoming one patrols
        ≈08:45–12:15 (key posts first) and ≈13:30–16:40, then makes an evening check."""
        ds, plans = self.site.calendar.day_start(day), []
        mgr, prev = self._manager(day), self._manager(day - DAY)
        handover = self.site.posts.get(self.site.config.duty.handover_post)
        for who, early in ((mgr, 5), (prev if prev != mgr else None, 0)):
            if who is not None and handover is not None and handover.readers:
                at = ds - rng.uniform(early, early + 23) * MIN
                plans.append(Plan(at, "scan", handover.readers[0], who.id))
        if mgr is None:
            return sorted(plans, key=lambda p: p.at)
        keys = [p for p in self._posts if p.key]
        sessions: list[tuple[float, float, list[Post]]] = [(15, 3.5, rng.sample(keys, len(keys)))]
        for begin, hours, first in [*sessions, (300, 3.2, []), (690, 0.6, [])]:
            t = ds + (begin + rng.uniform(-10, 10)) * MIN
            until, here = t + hours * 60 * MIN, ""
            loops = (rng.sample(self._posts, len(self._posts)) for _ in itertools.count())
            for post in itertools.chain(first, itertools.chain.from_iterable(loops)):
                if post.id == here and len(self._posts) > 1:
                    continue  # a new loop starting where the last one ended
                t += self._walk[(here, post.id)] if here else 2 * MIN
                if t > until:
                    break
                plans.append(Plan(t, "scan", rng.choice(post.readers), mgr.id))
                t, here = t + rng.uniform(3, 12) * MIN, post.id
        return sorted(plans, key=lambda p: p.at)

    def _round(self, post: Post) -> Iterator[Plan]:
        """Engineers with a round's role scan at its post every `every_minutes`, a bit early."""
        assert post.rounds is not None
        rng, every = self._rng("round", post.id), post.rounds.every_minutes
        who = [p.id for p in self._people if set(p.roles) & set(post.rounds.roles)]
        if not who or not post.readers:
            return
        t = self.start + every * rng.uniform(0.2, 0.6) * MIN
        for k in itertools.count():
            yield Plan(t, "scan", rng.choice(post.readers), who[k % len(who)])
            t += every * (1 - rng.uniform(0.04, 0.12)) * MIN

    def _guard(self, guard: Person, posts: list[Post]) -> Iterator[Plan]:
        rng = self._rng("guard", guard.id)
        t = self.start + rng.uniform(1, 30) * MIN
        for post in itertools.cycle(posts):
            yield Plan(t, "scan", rng.choice(post.readers), guard.id)
            t += rng.uniform(30, 60) * MIN

    def _interval(self, eq: Equipment) -> float:
        return min(self.reading_every, (eq.stale_after_seconds or math.inf) / 3)

    def _readings(self, eq: Equipment) -> Iterator[Plan]:
        rng, every = self._rng("readings", eq.id), self._interval(eq)
        t = self.start + dt.timedelta(seconds=rng.uniform(1, every))
        while True:
            yield Plan(t, "reading", eq.id)
            t += dt.timedelta(seconds=every * rng.uniform(0.9, 1.1))


def flood(site: Site, n: int, seed: int = 1, start: dt.datetime = FLOOD_START) -> list[SimEvent]:
    """`n` valid scans (known cards) and in-range readings 5 s apart under `estate/`, quickly."""
    rng, out = random.Random(f"{seed}:flood"), _Out(site, "estate", 0)
    readers = sorted(site.reader_post)
    cards = [c for p in site.people.values() if (c := _card(p))] if readers else []
    equipment = [e for e in site.equipment.values() if e.metrics]
    if not cards and not equipment:
        raise ValueError(f"site {site.id} has neither readers with cards nor equipment metrics")
    gauges = {(e.id, k): _Gauge(m, rng) for e in equipment for k, m in e.metrics.items()}
    last: dict[int, dt.datetime] = {}  # card → last scan, to keep taps a minute apart
    events: list[SimEvent] = []
    for i in range(n):
        at = start + dt.timedelta(seconds=5 * i)
        k = rng.randrange(len(cards)) if cards else -1
        if k >= 0 and (
            not equipment
            or at - last.get(k, dt.datetime.min.replace(tzinfo=dt.UTC)) > dt.timedelta(seconds=61)
        ):
            last[k] = at  # every card has its own reader: no travel between readers
            events.append(out.scan(at, readers[k % len(readers)], cards[k]))
        else:
            eq = equipment[i % len(equipment)]
            values = {m: gauges[(eq.id, m)].value(at) for m in eq.metrics}
            events.append(out.reading(at, eq.id, values))
    return events
