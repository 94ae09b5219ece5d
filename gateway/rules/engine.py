"""One engine for live and replay: events in event order, deadlines on an injected clock.

Ordering (contract §5): a scan or reading whose time equals a deadline counts as on time, so an
event at instant t is handled before the deadlines at t fire; deadlines before t fire first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import Any, TypeVar

from gateway.alerts.book import AlertBook, Transition
from gateway.config.site import Site
from gateway.events import DeviceStatus, Event, Reading, Scan
from gateway.rules.base import Rule, RuleContext

T = TypeVar("T")
_MESSAGES = frozenset((Scan, Reading, DeviceStatus))  # the events with a receive time
# For each type of event: the rules that take it, those of them with deadlines (with their
# index), and whether it is a message (has a receive time).
_Takers = tuple[list[Rule], list[tuple[int, Rule]], bool]


def rule_time(event: Event, at: dt.datetime) -> Event:
    """`event` with its time no later than its receive time (or `at`, for a command)."""
    received = event.received_at if type(event) in _MESSAGES else at  # type: ignore[union-attr]
    if event.time <= received:
        return event
    return dataclasses.replace(event, time=received)


# Set (to anything) in the tests: the engine then checks its cache of the rules' deadlines
# against every rule's own answer before each step, and fails loudly on a difference.
CHECK_ENV = "PATROL_GATEWAY_CHECK_ENGINE"


class Engine:
    """Feeds events and time to the rules; returns the alert transitions they cause.

    Two things keep the work per event small whatever the site's size (docs/benchmarks.md):

    * an event goes only to the rules that take its type (`Rule.events`; a rule without it
      takes every event), and its rules' deadlines are read again only where it may move
      them (`Rule.moved_by`);
    * the rules' next deadlines are cached, one per rule, with the earliest of them: a rule's
      entry is read again after it handled an event or a deadline; the rules whose deadlines
      follow the alert book (`Rule.watches_book`: shelve ends, escalation stages) after the
      book changed, whoever changed it; every rule after `invalidate()`, which whoever changes
      a rule's state from outside the engine must call. So an event with no deadline due
      costs one comparison, not a question to every rule.
    """

    def __init__(self, site: Site, rules: list[Rule], book: AlertBook, start: dt.datetime) -> None:
        self.site = site
        self.rules = rules
        self.book = book
        self.now = start
        # Every deadline before fired_through[0] has fired, and the one at it too if [1].
        self.fired_through: tuple[dt.datetime, bool] = (start, False)
        self._takes: dict[type, _Takers] = {}
        self._ctx = RuleContext(site, book, start)
        self._found: dict[type, Any] = {}
        self._due: list[dt.datetime | None] = [None] * len(rules)
        self._earliest: dt.datetime | None = None
        self._stale = True  # every rule's deadline must be read again
        self._book_seen = -1  # the book's version when the watchers were last read
        self._watchers = [i for i, r in enumerate(rules) if getattr(r, "watches_book", False)]
        self._check = bool(os.environ.get(CHECK_ENV))

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
        found = self._takes.get(type(event))
        if found is None:
            found = self._takes[type(event)] = self._takers(event)
        takers, timed, message = found
        time = event.time
        if time > (event.received_at if message else at):  # type: ignore[union-attr]
            event = rule_time(event, at)
            time = event.time
        first = at - grace if grace else at
        second = time if time < at else at
        if (  # _refresh() has nothing to do in the common case: asked here, without the call
            self._stale
            or self._earliest is _UNKNOWN
            or self._book_seen != self.book.version
            or self._check
        ):
            self._refresh()
        earliest = self._earliest
        if earliest is None or (earliest >= first and earliest >= second):
            # Nothing is due before the event (the common case): only the marks move.
            last = second if second > first else first
            if last > self.fired_through[0]:  # as (last, False) > fired_through
                self.fired_through = (last, False)
            out: list[Transition] = []
        else:
            out = self._advance(first, inclusive=False)
            if second > first:  # otherwise nothing is left before it: the first pass fired all
                out += self._advance(second, inclusive=False)
        if at > self.now:
            self.now = at
        ctx = self._ctx  # one for every event (no rule keeps it), a new list when it was used
        if ctx.book is not self.book:
            ctx = self._ctx = RuleContext(self.site, self.book, self.now)
        ctx.now = self.now
        for rule in takers:
            rule.on_event(ctx, event)
        due = self._due
        for i, rule in timed:
            moved = rule.next_deadline()
            if moved != due[i]:  # most events leave a rule's deadline where it was
                self._moved(i, moved)
        made = ctx.transitions
        if not made:
            return out
        ctx.transitions = []
        return out + made if out else made

    def _takers(self, event: Event) -> _Takers:
        """The rules that take events of `event`'s type, those of them with deadlines, and
        whether such events have a receive time (messages; commands do not)."""
        takers = [
            (i, r)
            for i, r in enumerate(self.rules)
            if (kinds := getattr(r, "events", None)) is None or isinstance(event, kinds)
        ]
        timed = [
            (i, r)
            for i, r in takers
            if getattr(r, "deadlines", True)
            and ((moves := getattr(r, "moved_by", None)) is None or isinstance(event, moves))
        ]
        return [r for _, r in takers], timed, type(event) in _MESSAGES

    def _moved(self, i: int, d: dt.datetime | None) -> None:
        """Rule `i`'s deadline is now `d`: keep the earliest without asking every rule."""
        old = self._due[i]
        if d == old:
            return
        self._due[i] = d
        earliest = self._earliest
        if earliest is _UNKNOWN:
            return
        if d is not None and (earliest is None or d < earliest):
            self._earliest = d
        elif old == earliest:
            self._earliest = _UNKNOWN  # the earliest moved later: find the new one

    def advance(self, to: dt.datetime) -> list[Transition]:
        """Move the clock to `to`, firing every deadline up to and including it."""
        return self._advance(to, inclusive=True)

    def invalidate(self) -> None:
        """A rule's state changed outside `process`/`advance` (a restart's seeding, a reload):
        ask every rule for its deadline again before the next step."""
        self._stale = True

    def find(self, kind: type[T]) -> T | None:
        """The rule of a given class, if the engine has one (for status displays)."""
        if kind not in self._found:
            self._found[kind] = next((r for r in self.rules if isinstance(r, kind)), None)
        found: T | None = self._found[kind]
        return found

    def next_deadline(self) -> dt.datetime | None:
        """The earliest pending deadline of any rule."""
        self._refresh()
        return self._earliest

    def _refresh(self) -> None:
        """Bring the cached deadlines up to date (see the class's docstring)."""
        due = self._due
        if self._stale:
            self._due = due = [r.next_deadline() for r in self.rules]
            self._stale = False
            self._book_seen = self.book.version
            self._earliest = _UNKNOWN
        elif self._book_seen != self.book.version:
            self._book_seen = self.book.version
            for i in self._watchers:
                self._moved(i, self.rules[i].next_deadline())
        if self._earliest is _UNKNOWN:
            self._earliest = min((d for d in due if d is not None), default=None)
        if self._check:
            fresh = [r.next_deadline() for r in self.rules]
            if fresh != due or self._earliest != min((d for d in fresh if d), default=None):
                names = [type(r).__name__ for r in self.rules]
                cached = list(zip(names, due, strict=True))
                said = list(zip(names, fresh, strict=True))
                raise AssertionError(
                    f"engine deadline cache is stale: cached {cached}, rules say {said}"
                )

    def _advance(self, to: dt.datetime, inclusive: bool) -> list[Transition]:
        """Fire the deadlines before `to` (and at it, if `inclusive`), each at its instant.

        A deadline that a late event placed before the mark already passed (a round scan
        delivered late, say) fires at the engine's present instead: transitions never go back
        in time.
        """
        self._refresh()
        out: list[Transition] = []
        when = self._earliest
        if when is not None and (when < to or (inclusive and when == to)):
            passed = self.fired_through[0]
            due = self._due
            while when is not None and (when < to or (inclusive and when == to)):
                index = due.index(when)  # the first rule's on a tie
                rule = self.rules[index]
                self.now = max(self.now, when)
                ctx = RuleContext(self.site, self.book, when if when >= passed else self.now)
                rule.on_deadline(ctx)
                out += ctx.transitions
                moved = rule.next_deadline()
                if moved == when:
                    raise RuntimeError(f"rule {type(rule).__name__} did not move its deadline")
                self._moved(index, moved)
                self._refresh()
                when = self._earliest
        if to > self.now:
            self.now = to
        mark = (to, inclusive)
        if mark > self.fired_through:
            self.fired_through = mark
        return out

    def catch_up(self, through: tuple[dt.datetime, bool]) -> list[Transition]:
        """Fire the deadlines up to a `fired_through` mark (used to rebuild after a restart)."""
        return self._advance(*through)


# The cached earliest deadline must be computed again (None means "no deadline").
_UNKNOWN: Any = object()
