"""A validated site file with the look-ups the gateway needs, built once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from gateway.config.models import (
    WEEKDAYS,
    Equipment,
    Metric,
    Person,
    Post,
    SiteConfig,
    normalize_uid,
)
from gateway.timeutil import DutyCalendar, parse_clock, parse_instant

ZERO = dt.timedelta(0)


class Site:
    """Read-only indexes over one `SiteConfig`."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.id = config.site.id
        self.name = config.site.name
        self.tz: ZoneInfo = config.site.tz
        self.calendar = DutyCalendar(self.tz, parse_clock(config.duty.day_starts))
        self.people: dict[str, Person] = {p.id: p for p in config.people}
        self.posts: dict[str, Post] = {p.id: p for p in config.posts}
        self.equipment: dict[str, Equipment] = {e.id: e for e in config.equipment}
        self.reader_post: dict[str, Post] = {r: p for p in config.posts for r in p.readers}
        self.credentials: dict[str, Person] = {c: p for p in config.people for c in p.credentials}
        self.max_clock_skew = dt.timedelta(seconds=config.duty.max_clock_skew_seconds)
        self._holders: dict[Iterable[str], frozenset[str]] = {}
        self._pairs: dict[tuple[str, str], dt.timedelta] = {}
        walking = config.walking
        self._walk_default = dt.timedelta(minutes=walking.default_minutes)
        self._walk: dict[frozenset[str], dt.timedelta] = {
            frozenset(leg.between): dt.timedelta(minutes=leg.minutes) for leg in walking.legs
        }

    @property
    def devices(self) -> set[str]:
        """Every id that may publish a device status: readers and equipment."""
        return set(self.reader_post) | set(self.equipment)

    def person_for(self, method: str, credential: str) -> Person | None:
        """The person a presented credential belongs to, or None (contract §3 normalisation)."""
        if method == "nfc":
            uid = normalize_uid(credential)
            return None if uid is None else self.credentials.get(f"nfc:{uid}")
        return self.credentials.get(f"{method}:{credential}")

    def metric(self, equipment: str, metric: str) -> Metric | None:
        """A declared metric of a declared equipment, or None."""
        eq = self.equipment.get(equipment)
        return None if eq is None else eq.metrics.get(metric)

    def walking_time(self, a: str, b: str) -> dt.timedelta:
        """The least time to walk between posts `a` and `b` (zero within one post)."""
        if a == b:
            return ZERO
        pair = self._pairs.get((a, b))
        if pair is None:  # asked for every scan: each ordered pair is looked up once
            pair = self._pairs[(a, b)] = self._walk.get(frozenset((a, b)), self._walk_default)
        return pair

    def has_role(self, person: str | None, roles: Iterable[str]) -> bool:
        """True if `person` holds any of `roles` (the rules ask for every scan: the holders of
        each set of roles asked for are found once)."""
        if not person:
            return False
        key = roles if type(roles) in (tuple, frozenset) else tuple(roles)
        holders = self._holders.get(key)
        if holders is None:
            holders = self._holders[key] = frozenset(
                p.id for p in self.people.values() if any(r in p.roles for r in key)
            )
        return person in holders

    def clock(self, name: str) -> dt.time:
        """A `duty` clock time by key name."""
        return parse_clock(getattr(self.config.duty, name))

    def rostered_manager(self, day: dt.date) -> str | None:
        """The weekly roster's person for duty day `day`, before swaps."""
        roster = self.config.roster
        return None if roster is None else roster.weekly[WEEKDAYS[day.weekday()]]

    def swap_registered_at(self, registered_at: str) -> dt.datetime:
        """A swap's registration instant (naive times are site-local)."""
        return parse_instant(registered_at, self.tz)
