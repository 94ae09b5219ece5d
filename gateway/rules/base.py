"""What every rule is made of: its ids, how its alerts end, the `Rule` protocol and its context.

This module imports no rule, so every rule module, the engine and the registry can import it
without a circle.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from gateway.alerts.book import AlertBook, Transition
from gateway.config.models import Severity
from gateway.config.site import Site
from gateway.events import Event

__all__ = ["Clearing", "Rule", "RuleContext", "RuleId", "RuleSpec", "Severity"]


class RuleId(StrEnum):
    """The rule ids of contract §5 (and §8, §11), plus the project's early warnings.

    A `StrEnum`: each member is its string, so JSON, the store and comparisons with plain
    strings see "duty.absent" as before.
    """

    duty_absent = "duty.absent"
    duty_unregistered_swap = "duty.unregistered_swap"
    handover_overdue = "handover.overdue"
    patrol_hours_short = "patrol.hours_short"
    patrol_key_post_missed = "patrol.key_post_missed"
    patrol_hours_at_risk = "patrol.hours_at_risk"
    patrol_key_post_at_risk = "patrol.key_post_at_risk"
    round_missed = "round.missed"
    equipment_out_of_range = "equipment.out_of_range"
    equipment_stale = "equipment.stale"
    device_offline = "device.offline"
    scan_unknown_credential = "scan.unknown_credential"
    incident_major = "incident.major"
    gateway_forward_lagging = "gateway.forward_lagging"
    workorder_overdue = "workorder.overdue"


class Clearing(StrEnum):
    """How an alert of a rule ends (contract §5 "clears", §6)."""

    clears = "clears"  # closes by itself when the condition ends
    never = "never"  # a violation on record: closed by acknowledgement
    within_duty_day = "within_duty_day"  # clears; once its duty day ended, ack closes it too


@dataclass(frozen=True)
class RuleSpec:
    """What a rule declares about one alert it raises.

    `severity` is None where the site file decides (a metric's `severity`, rule 7).
    """

    id: RuleId
    severity: Severity | None
    clearing: Clearing


class RuleContext:
    """What a rule may do: read the site and the book, raise and clear alerts at `now`."""

    __slots__ = ("book", "now", "site", "transitions")  # one per event: made quickly

    def __init__(self, site: Site, book: AlertBook, now: dt.datetime) -> None:
        self.site = site
        self.book = book
        self.now = now
        self.transitions: list[Transition] = []

    def raise_(
        self,
        rule: RuleId,
        subject: str,
        severity: Severity,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Open (or update) the alert for (rule, subject) at `now`."""
        self.transitions.append(
            self.book.raise_(rule, subject, severity, self.now, message, details)
        )

    def clear(self, rule: RuleId, subject: str) -> None:
        """Close the alert for (rule, subject) at `now`, if one is open."""
        if self.book.get(rule, subject) is None:
            return  # the common case (an in-range reading, say): nothing to close
        transition = self.book.clear(rule, subject, self.now)
        if transition is not None:
            self.transitions.append(transition)


class Rule(Protocol):
    """A rule: reacts to events, and may ask to be woken at a deadline.

    The engine hands a rule each event with its *rule time* (contract §1): the earlier of its
    `ts` and its receive time, so a stamp slightly ahead never makes a message count later
    than it was handled.

    Optional class attributes tell the engine what a rule needs (see `Engine`): `events`, a
    tuple of the event classes it takes (without it, it takes every event); `deadlines = False`
    for a rule that never has one (the engine then does not ask after each event); `moved_by`,
    the event classes after which its deadline may move (without it, every one it takes); and
    `watches_book = True` for a rule whose next deadline follows the alert book rather than its
    own events. Otherwise `next_deadline` may change only in `on_event` and `on_deadline`.
    """

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        """Update state for one event; raise or clear through `ctx`."""

    def next_deadline(self) -> dt.datetime | None:
        """The next instant this rule must be woken, or None."""

    def on_deadline(self, ctx: RuleContext) -> None:
        """Called with `ctx.now` equal to the deadline returned by `next_deadline`."""
