"""Injected faults for the site simulator: which ones, how often, and how each one unfolds.

Every kind of fault has its own seeded actor, which plans occurrences one after another (never
two of a kind at once) at an expected rate per simulated day. A fault on equipment is an
`Excursion`: one metric leaves its range along a shape — it moves out, stays out, comes back —
long enough for `equipment.out_of_range` (contract §5 rule 7) to be raised, then long enough
back inside for it to clear:

* `leak` — a leak sensor (`expect: false`) reads true for a while; the alert latches, so once
  it is dry an engineer comes and scans at the equipment's post, which clears it;
* `transformer_overheat` — a winding temperature ramps above `max`, stays there longer than
  `for_seconds`, then cools down;
* `battery_sag` — a starter battery voltage drifts slowly below `min` and stays low until an
  engineer comes (a scan at the post); the charger then brings it back;
* `out_of_range` — any other metric with limits steps out and back (an engineer checks if it
  latches);
* `unknown_card` — a card nobody owns, at a random reader;
* `reader_offline` — a reader goes offline (it buffers scans), then comes back online.

The equipment faults find their metric by name (`Fault.metric`) on any equipment of the site
that has it with the right kind of limit; a site without one simply never has that fault.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway.config import Site
from gateway.config.models import ENGINEERING_ROLES, Equipment, Metric

MIN = dt.timedelta(minutes=1)
FAULT_NAMES = (
    "unknown_card",
    "reader_offline",
    "leak",
    "transformer_overheat",
    "battery_sag",
    "out_of_range",
)

_NEEDS: dict[str, Callable[[Metric], bool]] = {  # what a named equipment fault needs of its metric
    "leak": lambda m: m.expect is not None,  # a boolean, to turn the other way
    "transformer_overheat": lambda m: m.max is not None,  # a maximum, to climb above
    "battery_sag": lambda m: m.min is not None,  # a minimum, to sag below
}


@dataclass(frozen=True)
class Fault:
    """One kind of fault: how often, how long, on which metric, and whether it happens at all."""

    per_day: float  # expected occurrences per simulated day
    minutes: tuple[float, float] = (0.0, 0.0)  # how long the reader is off / the value is out
    metric: str = ""  # the metric it acts on, on every equipment that has it
    on: bool = True


@dataclass(frozen=True)
class FaultConfig:
    """Injected faults, each on or off, at a rate per simulated day (0 or `on=False`: never)."""

    unknown_card: Fault = Fault(4.0)
    reader_offline: Fault = Fault(2.0, (10.0, 40.0))
    leak: Fault = Fault(1.0, (5.0, 20.0), "leak")
    transformer_overheat: Fault = Fault(1.0, (10.0, 30.0), "winding_temp_c")
    battery_sag: Fault = Fault(1.0, (20.0, 60.0), "battery_v")  # low until an engineer comes
    out_of_range: Fault = Fault(1.0, (5.0, 25.0))  # any other metric with limits
    scale: float = 1.0  # multiplies every rate (0: no faults at all)
    first_within_minutes: float | None = None  # each fault's first one by then (for a demo)

    @classmethod
    def none(cls) -> FaultConfig:
        """No faults at all."""
        return cls(scale=0.0)

    @classmethod
    def only(cls, *names: str, scale: float = 1.0) -> FaultConfig:
        """The named faults at their default rates, every other one off."""
        unknown = set(names) - set(FAULT_NAMES)
        if unknown:
            raise ValueError(f"no fault {sorted(unknown)}; faults are {', '.join(FAULT_NAMES)}")
        base = cls(scale=scale)
        off: dict[str, Any] = {
            n: dataclasses.replace(base.fault(n), on=False) for n in FAULT_NAMES if n not in names
        }
        return dataclasses.replace(base, **off)

    def fault(self, name: str) -> Fault:
        """The fault called `name` (one of FAULT_NAMES)."""
        if name not in FAULT_NAMES:
            raise ValueError(f"no fault {name!r}")
        found: Fault = getattr(self, name)
        return found

    def rate(self, name: str) -> float:
        """Expected occurrences of `name` per simulated day, 0 when it is off."""
        fault = self.fault(name)
        return fault.per_day * self.scale if fault.on else 0.0


@dataclass(frozen=True)
class Excursion:
    """One metric out of its range: from `start` it moves out, is at its worst from `worst` to
    `recover`, then comes back, inside again (and forgotten) from `end`."""

    fault: str
    equipment: str
    metric: str
    start: dt.datetime
    worst: dt.datetime
    recover: dt.datetime
    end: dt.datetime
    direction: int = 1  # +1: above max, -1: below min (booleans: the other value)
    depth: float = 1.0  # how far out, 1–2 (the gauge turns it into a value)

    def weight(self, at: dt.datetime) -> float:
        """How far along the excursion is at `at`: 0 normal … 1 at its worst."""
        if at < self.start or at >= self.end:
            return 0.0
        if at < self.worst:
            return (at - self.start) / (self.worst - self.start)
        if at < self.recover:
            return 1.0
        return 1.0 - (at - self.recover) / (self.end - self.recover)


@dataclass(frozen=True)
class Plan:
    """One thing that happens at `at`, as an actor planned it."""

    at: dt.datetime
    action: str  # scan | unknown | reading | offline | online | force | release
    target: str  # a reader or an equipment
    person: str | None = None
    data: str = ""  # the credential of `unknown`
    fault: str = ""  # the fault a scan or status is part of
    excursion: Excursion | None = None  # of `force` / `release`


class FaultPlanner:
    """One actor per enabled fault; each yields `Plan`s in time order, forever."""

    def __init__(
        self,
        site: Site,
        config: FaultConfig,
        start: dt.datetime,
        rng: Callable[..., random.Random],
        reading_seconds: Callable[[Equipment], float],
    ) -> None:
        self.site, self.config, self.start = site, config, start
        self._rng, self._every = rng, reading_seconds
        self._engineers = [
            p for p in site.people.values() if set(p.roles) & ENGINEERING_ROLES and p.credentials
        ]

    def actors(self) -> list[Iterator[Plan]]:
        """Every fault's actor, in FAULT_NAMES order."""
        plan: dict[str, Callable[[dt.datetime, random.Random], list[Plan]]] = {
            "unknown_card": self._unknown_card,
            "reader_offline": self._reader_offline,
            "leak": self._leak,
            "transformer_overheat": self._overheat,
            "battery_sag": self._battery_sag,
            "out_of_range": self._out_of_range,
        }
        return [self._actor(name, plan[name]) for name in FAULT_NAMES]

    # -- where faults can happen -------------------------------------------------------------

    def targets(self, name: str) -> list[tuple[Equipment, str, Metric]]:
        """(equipment, metric name, metric) the fault `name` can act on, in a stable order."""
        taken = {self.config.fault(n).metric for n in _NEEDS}
        found: list[tuple[Equipment, str, Metric]] = []
        for eq in sorted(self.site.equipment.values(), key=lambda e: e.id):
            for metric_name, metric in eq.metrics.items():
                if name in _NEEDS:
                    wanted = metric_name == self.config.fault(name).metric
                    if wanted and _NEEDS[name](metric):
                        found.append((eq, metric_name, metric))
                elif name == "out_of_range" and metric_name not in taken:
                    limited = metric.min is not None or metric.max is not None
                    if metric.expect is not None or limited:
                        found.append((eq, metric_name, metric))
        return found

    # -- actors --------------------------------------------------------------------------------

    def _actor(
        self, name: str, occurrence: Callable[[dt.datetime, random.Random], list[Plan]]
    ) -> Iterator[Plan]:
        rate, rng = self.config.rate(name), self._rng("fault", name)
        readers = name in ("unknown_card", "reader_offline")
        if rate <= 0 or not (self.site.reader_post if readers else self.targets(name)):
            return
        t, first = self.start, self.config.first_within_minutes
        while True:
            if first is not None:
                t += first * rng.uniform(0.15, 1.0) * MIN
                first = None
            else:
                t += dt.timedelta(days=rng.expovariate(rate))
            plans = sorted(occurrence(t, rng), key=lambda p: p.at)
            yield from plans
            t = max([t, *(p.at for p in plans)])

    def _unknown_card(self, t: dt.datetime, rng: random.Random) -> list[Plan]:
        uid = "04" + f"{rng.getrandbits(48):012X}"
        reader = rng.choice(sorted(self.site.reader_post))
        if f"nfc:{uid}" in self.site.credentials:
            return []
        return [Plan(t, "unknown", reader, data=uid, fault="unknown_card")]

    def _reader_offline(self, t: dt.datetime, rng: random.Random) -> list[Plan]:
        reader = rng.choice(sorted(self.site.reader_post))
        back = t + rng.uniform(*self.config.reader_offline.minutes) * MIN
        return [Plan(t, "offline", reader), Plan(back, "online", reader)]

    def _leak(self, t: dt.datetime, rng: random.Random) -> list[Plan]:
        """Wet for a while (long enough to raise), dry again, then an engineer checks."""
        eq, metric_name, metric = rng.choice(self.targets("leak"))
        dry = t + self._out_for(eq, metric, "leak", rng)
        exc = Excursion("leak", eq.id, metric_name, t, t, dry, dry)
        plans = [Plan(t, "force", eq.id, excursion=exc), Plan(dry, "release", eq.id, excursion=exc)]
        return plans + self._check(eq, dry + self._after_back(eq, rng), "leak", rng)

    def _overheat(self, t: dt.datetime, rng: random.Random) -> list[Plan]:
        """Ramps above max, stays there longer than for_seconds, then cools down."""
        eq, metric_name, metric = rng.choice(self.targets("transformer_overheat"))
        hot = t + rng.uniform(10, 30) * MIN
        cooling = hot + self._out_for(eq, metric, "transformer_overheat", rng)
        cool = cooling + rng.uniform(15, 40) * MIN
        exc = Excursion(
            "transformer_overheat", eq.id, metric_name, t, hot, cooling, cool, 1, rng.uniform(1, 2)
        )
        return [Plan(t, "force", eq.id, excursion=exc), Plan(cool, "release", eq.id, excursion=exc)]

    def _battery_sag(self, t: dt.datetime, rng: random.Random) -> list[Plan]:
        """Drifts slowly below min, stays low until an engineer comes, then charges back."""
        eq, metric_name, metric = rng.choice(self.targets("battery_sag"))
        low = t + rng.uniform(30, 90) * MIN
        visit = low + self._out_for(eq, metric, "battery_sag", rng)
        charged = visit + rng.uniform(10, 30) * MIN
        exc = Excursion(
            "battery_sag", eq.id, metric_name, t, low, visit, charged, -1, rng.uniform(1, 2)
        )
        plans = [Plan(t, "force", eq.id, excursion=exc)]
        plans += self._check(eq, visit, "battery_sag", rng)
        return [*plans, Plan(charged, "release", eq.id, excursion=exc)]

    def _out_of_range(self, t: dt.datetime, rng: random.Random) -> list[Plan]:
        """Any other limited metric: out (above max if it has one, else below min) and back."""
        eq, metric_name, metric = rng.choice(self.targets("out_of_range"))
        back = t + self._out_for(eq, metric, "out_of_range", rng)
        direction = 1 if metric.max is not None else -1
        exc = Excursion(
            "out_of_range", eq.id, metric_name, t, t, back, back, direction, rng.uniform(1, 2)
        )
        plans = [
            Plan(t, "force", eq.id, excursion=exc),
            Plan(back, "release", eq.id, excursion=exc),
        ]
        if metric.latch:
            plans += self._check(eq, back + self._after_back(eq, rng), "out_of_range", rng)
        return plans

    # -- helpers -------------------------------------------------------------------------------

    def _out_for(
        self, eq: Equipment, metric: Metric, name: str, rng: random.Random
    ) -> dt.timedelta:
        """How long the value stays out: the fault's minutes, and always long enough that
        readings show it out for more than `for_seconds`."""
        lo, hi = self.config.fault(name).minutes
        seconds = max(rng.uniform(lo, hi) * 60, metric.for_seconds + 3 * self._every(eq))
        return dt.timedelta(seconds=seconds)

    def _after_back(self, eq: Equipment, rng: random.Random) -> dt.timedelta:
        """When an engineer arrives after the value is back: after a reading has shown it."""
        return max(rng.uniform(5, 20) * MIN, dt.timedelta(seconds=2 * self._every(eq)))

    def _check(self, eq: Equipment, at: dt.datetime, fault: str, rng: random.Random) -> list[Plan]:
        """An engineer scans at the equipment's post (an on-site check clears a latch). The
        post's round roles go first: the generator room's strong-current engineer."""
        post = self.site.posts[eq.post]
        round_roles = set(post.rounds.roles) if post.rounds else set()
        who = [p for p in self._engineers if set(p.roles) & round_roles] or self._engineers
        if not who or not post.readers:
            return []
        person = rng.choice(who)
        return [Plan(at, "scan", rng.choice(post.readers), person.id, fault=fault)]
