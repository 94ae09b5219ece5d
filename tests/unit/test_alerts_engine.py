"""The alert book (§5, §6) and the engine's ordering of events and deadlines."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys

import pytest

from gateway.alerts import AlertBook, alert_id
from gateway.config import Site
from gateway.events import DeviceStatus, Event, Reading, Scan
from gateway.rules.base import RuleContext, RuleId, Severity
from gateway.rules.engine import CHECK_ENV, Engine
from gateway.rules.registry import SPECS, closes_on_acknowledge

T0 = dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_one_open_alert_per_rule_and_subject() -> None:
    """A repeated condition updates the open alert; after closing, it raises a new one (§5)."""
    book = AlertBook("zcity")
    first = book.raise_("device.offline", "gr-2", "warning", at(0), "m1")
    again = book.raise_("device.offline", "gr-2", "warning", at(5), "m2", {"n": 2})
    assert (first.change, again.change) == ("open", "update")
    assert again.alert.id == first.alert.id and again.alert.raised_at == at(0)
    assert again.alert.details == {"n": 2}
    closed = book.clear("device.offline", "gr-2", at(10))
    assert (
        closed is not None and closed.alert.state == "closed" and closed.alert.cleared_at == at(10)
    )
    assert book.clear("device.offline", "gr-2", at(11)) is None
    reopened = book.raise_("device.offline", "gr-2", "warning", at(20), "m3")
    assert reopened.change == "open" and reopened.alert.id != first.alert.id


def test_acknowledge_keeps_open_or_closes() -> None:
    """Ack keeps a clearing rule open until it clears; it closes a non-clearing one (§6)."""
    book = AlertBook("zcity")
    a = book.raise_("device.offline", "gr-2", "warning", at(0), "m").alert
    b = book.raise_("scan.unknown_credential", "fd-1", "warning", at(0), "m").alert
    ack = book.acknowledge(a.id, at(1), "chen-jie", "checking")
    assert ack is not None and ack.alert.state == "acknowledged"
    assert ack.alert.acknowledged_by == "chen-jie" and ack.comment == "checking"
    assert book.get("device.offline", "gr-2") is not None
    closing = book.acknowledge(b.id, at(2), "chen-jie", close=True)
    assert closing is not None and closing.alert.state == "closed"
    assert book.get("scan.unknown_credential", "fd-1") is None
    assert book.acknowledge("no-such-id", at(3), "x") is None


def test_alert_raised_again_at_the_same_instant_gets_a_new_id() -> None:
    """offline, online, offline within one second: two alerts, two ids, two records."""
    book = AlertBook("zcity")
    first = book.raise_("device.offline", "gr-2", "warning", at(0), "m")
    book.clear("device.offline", "gr-2", at(0))
    second = book.raise_("device.offline", "gr-2", "warning", at(0), "m")
    assert second.change == "open" and second.alert.id != first.alert.id


def test_alert_ids_are_stable_and_distinct() -> None:
    """The same alert gets the same id in a replay and after a restart; others differ."""
    assert alert_id("s", "r", "x", at(0)) == alert_id("s", "r", "x", at(0))
    assert alert_id("s", "r", "x", at(0)) != alert_id("s", "r", "x", at(1))
    assert alert_id("s", "r", "x", at(0)) != alert_id("s", "r", "y", at(0))


class Deadline:
    """A test rule: raises "t.deadline" at a fixed instant unless an event came by then."""

    def __init__(self, when: dt.datetime) -> None:
        self.when: dt.datetime | None = when
        self.seen: list[dt.datetime] = []

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        self.seen.append(ctx.now)
        if self.when is not None and event.time <= self.when:
            self.when = None

    def next_deadline(self) -> dt.datetime | None:
        return self.when

    def on_deadline(self, ctx: RuleContext) -> None:
        ctx.raise_(RuleId.workorder_overdue, "x", Severity.warning, "late")
        self.when = None


def status(minutes: float, received: float | None = None) -> tuple[DeviceStatus, dt.datetime]:
    rec = at(received if received is not None else minutes)
    return DeviceStatus("gr-2", "online", at(minutes), rec), rec


def test_event_at_the_deadline_instant_is_on_time(zcity: Site) -> None:
    """A scan whose time equals a deadline counts as on time (§5)."""
    rule = Deadline(at(30))
    engine = Engine(zcity, [rule], AlertBook("zcity"), at(0))
    assert engine.process(*status(30)) == []
    assert engine.advance(at(60)) == []


def test_event_in_flight_across_the_deadline_counts_within_the_grace(zcity: Site) -> None:
    """Live: a scan stamped at the deadline and received 3 s later is on time (grace 5 s)."""
    rule = Deadline(at(30))
    engine = Engine(zcity, [rule], AlertBook("zcity"), at(0))
    assert engine.process(*status(30, received=30.05), dt.timedelta(seconds=5)) == []


def test_buffered_event_arrives_after_the_deadline_fired(zcity: Site) -> None:
    """Replay follows the receive time: the deadline fires before a late-delivered event."""
    rule = Deadline(at(30))
    engine = Engine(zcity, [rule], AlertBook("zcity"), at(0))
    (t,) = engine.process(*status(20, received=40))
    assert t.at == at(30) and rule.seen == [at(40)]


def test_deadline_before_an_event_fires_first_at_its_instant(zcity: Site) -> None:
    """Deadlines between two events fire at their own instant, before the later event."""
    rule = Deadline(at(30))
    engine = Engine(zcity, [rule], AlertBook("zcity"), at(0))
    (t,) = engine.process(*status(31))
    assert t.at == at(30) and t.alert.raised_at == at(30)
    assert rule.seen == [at(31)]


def test_advance_is_inclusive_and_clock_never_goes_back(zcity: Site) -> None:
    """`advance(t)` fires a deadline at exactly t; a late event does not move the clock back."""
    rule = Deadline(at(30))
    engine = Engine(zcity, [rule], AlertBook("zcity"), at(0))
    assert engine.advance(at(29)) == []
    assert len(engine.advance(at(30))) == 1
    engine.process(*status(5, received=40))  # buffered by the device, stamped in the past
    assert engine.now == at(40)
    engine.process(*status(38))  # out of order in the file: the clock does not go back
    assert engine.now == at(40)


def test_a_rule_that_does_not_move_its_deadline_is_caught(zcity: Site) -> None:
    """A stuck rule would spin the engine forever; it fails loudly instead."""

    class Stuck(Deadline):
        def on_deadline(self, ctx: RuleContext) -> None:
            pass

    engine = Engine(zcity, [Stuck(at(1))], AlertBook("zcity"), at(0))
    with pytest.raises(RuntimeError, match="did not move"):
        engine.advance(at(2))


# -- the engine's own bookkeeping: which rules see an event, cached deadlines ---------------


class ReadingsOnly(Deadline):
    """`Deadline`, taking only readings."""

    events = (Reading,)


def scan_at(minutes: float) -> tuple[Scan, dt.datetime]:
    when = at(minutes)
    return Scan("fd-1", "front-desk", "04A2", "nfc", "li-na", when, when), when


def test_an_event_goes_only_to_the_rules_that_take_its_type(zcity: Site) -> None:
    """A rule declaring `events` never sees another kind (and its deadline stands); a rule
    without the declaration sees everything."""
    picky, every = ReadingsOnly(at(10)), Deadline(at(10))
    engine = Engine(zcity, [picky, every], AlertBook("zcity"), at(0))
    engine.process(*scan_at(1))
    assert picky.seen == [] and every.seen == [at(1)]
    assert engine.next_deadline() == at(10) and every.when is None  # picky's still pending
    engine.process(Reading("tx-1", {"load_pct": 1.0}, at(2), at(2)), at(2))
    assert picky.seen == [at(2)] and engine.next_deadline() is None


class BookWatcher:
    """A rule whose deadline follows the book: the earliest shelve end, as ShelfExpiry."""

    events: tuple[type, ...] = ()
    watches_book = True

    def __init__(self, book: AlertBook) -> None:
        self.book = book
        self.fired: list[dt.datetime] = []

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        pass

    def next_deadline(self) -> dt.datetime | None:
        return self.book.shelf_expiry()

    def on_deadline(self, ctx: RuleContext) -> None:
        self.fired.append(ctx.now)
        ctx.transitions.extend(ctx.book.unshelve_due(ctx.now))


def test_a_rule_watching_the_book_sees_changes_made_outside_the_engine(zcity: Site) -> None:
    """A shelve applied by a command (straight on the book) moves the watcher's deadline: the
    cached deadline is read again because the book changed, and the shelve ends on time."""
    book = AlertBook("zcity")
    watcher = BookWatcher(book)
    engine = Engine(zcity, [watcher], book, at(0))
    assert engine.next_deadline() is None
    alert = book.raise_("device.offline", "gr-2", "warning", at(1), "m").alert
    book.shelve(alert.id, at(30), at(1), "chen-jie")
    assert engine.next_deadline() == at(30)
    out = engine.advance(at(40))
    assert watcher.fired == [at(30)] and [t.change for t in out] == ["unshelved"]


class Moved(Deadline):
    """`Deadline`, with a deadline someone changes from outside (as a restart seeds a rule)."""


def test_the_check_finds_a_deadline_changed_behind_the_engines_back(
    zcity: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the tests every engine compares its cache with the rules at each step: a rule state
    changed outside the engine without `invalidate()` fails loudly instead of firing late;
    after `invalidate()` the new deadline fires on time."""
    monkeypatch.setenv(CHECK_ENV, "1")
    rule = Moved(at(50))
    engine = Engine(zcity, [rule], AlertBook("zcity"), at(0))
    assert engine.next_deadline() == at(50)
    rule.when = at(20)
    with pytest.raises(AssertionError, match="stale"):
        engine.advance(at(30))
    engine.invalidate()
    assert [t.alert.rule for t in engine.advance(at(30))] == ["workorder.overdue"]


def test_with_flags_is_dataclasses_replace() -> None:
    """The pipeline's cheap copy of a scan must give exactly what `replace` gives."""
    scan, _ = scan_at(1)
    scan = dataclasses.replace(scan, seq=7, sent_ts=at(1), assurance="sun", sun_counter=3)
    copy = scan.with_flags(("duplicate_tap",))
    assert copy == dataclasses.replace(scan, flags=("duplicate_tap",))
    assert copy.proof is scan.proof and scan.flags == () and copy is not scan


# -- the registry: how each rule's alerts end (§5 "clears", §6) --------------------------------


def test_every_rule_id_declares_how_it_ends() -> None:
    """A rule id without a declaration would be closed (or not) by accident on acknowledgement."""
    assert set(SPECS) == set(RuleId)
    assert RuleId.incident_major == "incident.major"  # a StrEnum: JSON and the store see text
    assert json.dumps({"rule": RuleId.device_offline}) == '{"rule": "device.offline"}'


@pytest.mark.parametrize(
    ("rule", "closes"),
    [
        ("scan.unknown_credential", True),
        ("duty.unregistered_swap", True),
        ("patrol.hours_short", True),
        ("patrol.key_post_missed", True),
        ("incident.major", True),
        ("duty.absent", False),
        ("device.offline", False),
        ("round.missed", False),
        ("equipment.out_of_range", False),
        ("equipment.stale", False),
        ("patrol.hours_at_risk", False),
        ("patrol.key_post_at_risk", False),
        ("gateway.forward_lagging", False),
        ("workorder.overdue", False),
    ],
)
def test_acknowledging_closes_exactly_the_rules_that_do_not_clear(
    zcity: Site, rule: str, closes: bool
) -> None:
    """An ack closing a clearing alert would hide a live condition; the reverse, never close."""
    alert = AlertBook("zcity").raise_(rule, "x", "warning", at(0), "m").alert
    assert closes_on_acknowledge(alert, at(1), zcity) is closes


def test_overdue_handover_closes_on_acknowledgement_once_its_duty_day_ended(zcity: Site) -> None:
    """§5 rule 3: during D an ack leaves it to the completion; from D+1 day_starts it closes it."""
    day = dt.date(2026, 11, 27)
    alert = (
        AlertBook("zcity")
        .raise_("handover.overdue", day.isoformat(), "warning", at(0), "m", {"date": "2026-11-27"})
        .alert
    )
    end = zcity.calendar.day_start(day + dt.timedelta(days=1))
    assert closes_on_acknowledge(alert, end - dt.timedelta(microseconds=1), zcity) is False
    assert closes_on_acknowledge(alert, end, zcity) is True


def test_an_unknown_rule_closes_on_acknowledgement(zcity: Site) -> None:
    """A rule this version does not know can never clear: an ack must be able to close it."""
    alert = AlertBook("zcity").raise_("old.rule", "x", "warning", at(0), "m").alert
    assert closes_on_acknowledge(alert, at(1), zcity) is True


@pytest.mark.parametrize(
    "module",
    [
        "gateway.rules.base",
        "gateway.rules.engine",
        "gateway.rules.registry",
        "gateway.rules.duty",
        "gateway.rules.equipment",
        "gateway.rules.rounds",
        "gateway.rules.devices",
        "gateway.rules.status",
        "gateway.rules.flags",
    ],
)
def test_each_rules_module_imports_first_without_a_circle(module: str) -> None:
    """An import circle shows only when a module is the first one imported; try each first."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
