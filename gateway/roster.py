"""Who is duty manager when (3.6, 4.4): the weekly rotation, and swaps from their registration."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.config.site import Site
from gateway.events import SwapRegistered


@dataclass(frozen=True, order=True)
class Swap:
    """A registered swap: `manager` covers duty day `date` from `registered_at` on (§4)."""

    registered_at: dt.datetime
    date: dt.date
    manager: str
    source: str = "file"

    @classmethod
    def live(cls, event: SwapRegistered) -> Swap:
        """A swap registered on the command line or through the API."""
        return cls(event.time, event.date, event.manager, "live")


def file_swaps(site: Site) -> list[Swap]:
    """The swaps written in the site file."""
    roster = site.config.roster
    if roster is None:
        return []
    return [Swap(site.swap_registered_at(s.registered_at), s.date, s.manager) for s in roster.swaps]


class Roster:
    """The weekly roster and the swaps known so far; answers as of an instant."""

    def __init__(self, site: Site, swaps: list[Swap] | None = None) -> None:
        self.site = site
        self.swaps: list[Swap] = sorted(file_swaps(site) + list(swaps or []))
        self._by_day = _by_day(self.swaps)
        self._rostered: dict[dt.date, tuple[str | None]] = {}  # the weekly roster, per day

    def add(self, swap: Swap) -> None:
        """Register one more swap (from the command line or the API)."""
        self.swaps = sorted([*self.swaps, swap])
        self._by_day = _by_day(self.swaps)

    def rostered(self, day: dt.date) -> str | None:
        """The weekly roster's person for `day`, whatever the swaps say."""
        return self.site.rostered_manager(day)

    def swap_in_effect(self, day: dt.date, at: dt.datetime) -> Swap | None:
        """The latest swap for `day` registered at or before `at`."""
        swaps = self._by_day.get(day)
        if not swaps:
            return None
        effective = [s for s in swaps if s.registered_at <= at]
        return effective[-1] if effective else None

    def manager(self, day: dt.date, at: dt.datetime) -> str | None:
        """The duty manager of `day` as known at instant `at`."""
        if day not in self._by_day:  # no swap that day (most days): the roster's person
            known = self._rostered.get(day)
            if known is None:
                if len(self._rostered) > 64:
                    self._rostered.clear()
                known = self._rostered[day] = (self.rostered(day),)
            return known[0]
        swap = self.swap_in_effect(day, at)
        return swap.manager if swap is not None else self.rostered(day)


def _by_day(swaps: list[Swap]) -> dict[dt.date, list[Swap]]:
    """The swaps of each day, in registration order (the duty rules ask for every scan)."""
    out: dict[dt.date, list[Swap]] = {}
    for swap in swaps:
        out.setdefault(swap.date, []).append(swap)
    return out
