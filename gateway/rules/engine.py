"""One engine for live and replay: events in event order, deadlines on an injected clock.

Ordering (contract §5): a scan or reading whose time equals a deadline counts as on time, so an
event at instant t is handled before the deadlines at t fire; deadlines before t fire first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TypeVar

from gateway.alerts.book import AlertBook, Transition
from gateway.config.site import Site
from gateway.events import DeviceStatus, Event, Reading, Scan
from gateway.rules.base import Rule, RuleContext

T = TypeVar("T")


def rule_time(event: Event, at: dt.datetime) -> Event:
    """`event` with its time no later than its receive time (or `at`, for a command)."""
    received = event.received_at if isinstance(event, Scan | Reading | DeviceStatus) else at
    if event.time <= received:
        return event
    return dataclasses.replace(event, time=received)


class Engine:
    """Feeds events and time to the rules; returns the alert transitions they cause."""

    def __init__(self, site: Site, rules: list[Rule], book: AlertBook, start: dt.datetime) -> None:
        self.site = site
        self.rules = rules
        self.book = book
        self.now = start
        # Every deadline before fired_through[0] has fired, and the one at it too if [1].
        self.fired_through: tuple[dt.datetime, bool] = (start, False)

    def process(
        self, event: Event, at: dt.datetime, grace: dt.timedelta = dt.timedelta(0)
    ) -> list[Transition]:
        """Handle one event received at `at`; its transitions happen at `at`.

        First the deadlines before `at − grace` fire: the clock is the receive time, so a scan
        a reader buffered while offline and delivers an hour late finds that hour's deadlines
        decided, as it would live, and changes what it still can (it clears an absence, say).
        Then the deadlines within the grace but before the event's own time fire: a scan
        stamped 09:00:00 that arrives a second later counts as on time for 09:00 (§5), and one
        stamped 09:00:01 comes after the 09:00 deadline, whenever it arrives.

        The rules see the event at its rule time (§1): the earlier of its `ts` and its receive
        time. A stamp slightly ahead of the gateway's clock is kept for the record, but what
        the message completes or clears happens when it is handled, never later.
        """
        event = rule_time(event, at)
        first, second = at - grace, min(at, event.time)
        out = self._advance(first, inclusive=False)
        if second > first:  # otherwise nothing is left before it: the first pass fired it all
            out += self._advance(second, inclusive=False)
        self.now = max(self.now, at)
        ctx = RuleContext(self.site, self.book, self.now)
        for rule in self.rules:
            rule.on_event(ctx, event)
        return out + ctx.transitions

    def advance(self, to: dt.datetime) -> list[Transition]:
        """Move the clock to `to`, firing every deadline up to and including it."""
        return self._advance(to, inclusive=True)

    def find(self, kind: type[T]) -> T | None:
        """The rule of a given class, if the engine has one (for status displays)."""
        return next((r for r in self.rules if isinstance(r, kind)), None)

    def next_deadline(self) -> dt.datetime | None:
        """The earliest pending deadline of any rule."""
        pending = [d for d in (r.next_deadline() for r in self.rules) if d is not None]
        return min(pending, default=None)

    def _advance(self, to: dt.datetime, inclusive: bool) -> list[Transition]:
        """Fire the deadlines before `to` (and at it, if `inclusive`), each at its instant.

        A deadline that a late event placed before the mark already passed (a round scan
        delivered late, say) fires at the engine's present instead: transitions never go back
        in time.
        """
        passed = self.fired_through[0]
        out: list[Transition] = []
        rules = self.rules
        while True:
            # The earliest due deadline, the first rule's on a tie (a plain loop: this runs
            # twice for every event).
            when: dt.datetime | None = None
            index = -1
            for i, rule in enumerate(rules):
                d = rule.next_deadline()
                if d is None or not (d < to or (inclusive and d == to)):
                    continue
                if when is None or d < when:
                    when, index = d, i
            if when is None:
                break
            self.now = max(self.now, when)
            ctx = RuleContext(self.site, self.book, when if when >= passed else self.now)
            self.rules[index].on_deadline(ctx)
            out += ctx.transitions
            if self.rules[index].next_deadline() == when:
                raise RuntimeError(
                    f"rule {type(self.rules[index]).__name__} did not move its deadline"
                )
        self.now = max(self.now, to)
        self.fired_through = max(self.fired_through, (to, inclusive))
        return out

    def catch_up(self, through: tuple[dt.datetime, bool]) -> list[Transition]:
        """Fire the deadlines up to a `fired_through` mark (used to rebuild after a restart)."""
        return self._advance(*through)
