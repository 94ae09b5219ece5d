"""Rules 1–5 of contract §5 (clauses 3.6, 4.3, 4.4, 4.8, 4.9) at and around each boundary."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.alerts import AlertBook
from gateway.config import Site
from gateway.events import HandoverConfirmed, Scan, SwapRegistered
from gateway.roster import Roster
from gateway.rules.base import Rule
from gateway.rules.duty import DutyRules
from gateway.rules.patrol_time import patrol_time, sessions
from tests.unit.ruleharness import BASE, Driver, make_site

# 2026-11-24 is a Tuesday: bob's duty day; the outgoing manager (Monday) is ann.
TUE = "2026-11-24"
WED = "2026-11-25"


def duty(early: bool = False) -> Any:
    def build(site: Site, start: dt.datetime) -> list[Rule]:
        return [DutyRules(site, Roster(site), start, early_warnings=early)]

    return build


def only(rows: list[tuple[str, str, str, str]], *rules: str) -> list[tuple[str, str, str, str]]:
    return [r for r in rows if r[1] in rules]


def handover_ok(d: Driver, day: str = TUE) -> None:
    d.scan("ann", "mc", f"{day} 08:20")
    d.scan("bob", "mc", f"{day} 08:40")


# -- duty.absent -----------------------------------------------------------------------------


def test_check_in_exactly_at_the_deadline_is_on_time() -> None:
    """A first scan at 09:00:00 sharp is not an absence."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "fd", f"{TUE} 09:00")
    d.until(f"{TUE} 10:00")
    assert only(d.rows, "duty.absent") == []


def test_check_in_window_opens_30_minutes_before_day_start() -> None:
    """08:00:00 counts, 07:59:59 does not; the absence clears at the first later scan."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "fd", f"{TUE} 08:00")
    d.until(f"{TUE} 10:00")
    assert only(d.rows, "duty.absent") == []
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "fd", f"{TUE} 07:59:59")
    d.until(f"{TUE} 09:00")
    assert only(d.rows, "duty.absent") == [("11-24 09:00:00", "duty.absent", "bob", "open")]
    d.scan("bob", "fd", f"{TUE} 09:20")
    assert only(d.rows, "duty.absent")[-1] == ("11-24 09:20:00", "duty.absent", "bob", "closed")


def swap_site(registered_at: str, date: str = TUE, manager: str = "cat") -> Site:
    roster = dict(BASE["roster"])
    roster["swaps"] = [{"date": date, "manager": manager, "registered_at": registered_at}]
    return make_site(roster=roster)


def test_swap_registered_before_day_start_moves_the_duty() -> None:
    """A swap registered beforehand: the stand-in must check in, the rostered person need not."""
    d = Driver(swap_site(f"{TUE}T08:29:59+08:00"), f"{TUE} 07:00", duty())
    d.until(f"{TUE} 09:00")
    assert only(d.rows, "duty.absent", "duty.unregistered_swap") == [
        ("11-24 09:00:00", "duty.absent", "cat", "open")
    ]


def test_swap_registered_exactly_at_day_start_is_not_late() -> None:
    """Registered at 08:30:00 is not *after* day_starts: no unregistered_swap."""
    d = Driver(swap_site(f"{TUE}T08:30:00+08:00"), f"{TUE} 07:00", duty())
    d.scan("cat", "fd", f"{TUE} 08:45")
    d.until(f"{TUE} 12:00")
    assert only(d.rows, "duty.absent", "duty.unregistered_swap") == []


def test_swap_registered_after_day_start_is_a_violation_and_covers_the_absence() -> None:
    """Late swap: raised at its registration instant; the rostered person's absence clears."""
    d = Driver(swap_site(f"{TUE}T09:30:00+08:00"), f"{TUE} 07:00", duty())
    d.until(f"{TUE} 12:00")
    assert only(d.rows, "duty.absent", "duty.unregistered_swap") == [
        ("11-24 09:00:00", "duty.absent", "bob", "open"),
        ("11-24 09:30:00", "duty.absent", "bob", "closed"),
        ("11-24 09:30:00", "duty.unregistered_swap", "bob", "open"),
    ]


def test_late_swap_registered_before_the_gateway_started_is_not_raised() -> None:
    """(a) applies only if the gateway (or the replay) was running at the registration."""
    d = Driver(swap_site(f"{TUE}T08:45:00+08:00"), f"{TUE} 08:50", duty())
    d.scan("cat", "fd", f"{TUE} 08:55")
    d.until(f"{TUE} 12:00")
    assert only(d.rows, "duty.absent", "duty.unregistered_swap") == []


def test_unannounced_stand_in_at_the_handover_post() -> None:
    """(b): rostered absent, another duty manager signed at the handover post → both raised."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("cat", "mc", f"{TUE} 08:45")
    d.until(f"{TUE} 09:00")
    assert sorted(only(d.rows, "duty.absent", "duty.unregistered_swap")) == [
        ("11-24 09:00:00", "duty.absent", "bob", "open"),
        ("11-24 09:00:00", "duty.unregistered_swap", "bob", "open"),
    ]


def test_outgoing_manager_at_the_handover_post_is_not_a_stand_in() -> None:
    """(b) excludes the outgoing manager, who is there to hand over."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("ann", "mc", f"{TUE} 08:45")
    d.until(f"{TUE} 09:00")
    assert only(d.rows, "duty.unregistered_swap") == []
    assert only(d.rows, "duty.absent") == [("11-24 09:00:00", "duty.absent", "bob", "open")]


def test_stand_in_elsewhere_than_the_handover_post_is_not_case_b() -> None:
    """(b) needs the scan at a reader of the handover post."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("cat", "fd", f"{TUE} 08:45")
    d.until(f"{TUE} 09:00")
    assert only(d.rows, "duty.unregistered_swap") == []


# -- handover.overdue ------------------------------------------------------------------------


def test_handover_complete_before_the_deadline() -> None:
    """Both managers at the handover post from 08:00 on: complete, nothing raised."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    handover_ok(d)
    d.until(f"{TUE} 12:00")
    assert only(d.rows, "handover.overdue") == []


def test_handover_overdue_then_completed() -> None:
    """Only the incoming manager by 09:00: raised (subject: the date); the other signing clears."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "mc", f"{TUE} 08:40")
    d.scan("ann", "mc", f"{TUE} 07:59")  # before the window: does not count
    d.until(f"{TUE} 09:00")
    assert only(d.rows, "handover.overdue") == [("11-24 09:00:00", "handover.overdue", TUE, "open")]
    d.scan("ann", "mc", f"{TUE} 09:05")
    assert only(d.rows, "handover.overdue")[-1] == (
        "11-24 09:05:00",
        "handover.overdue",
        TUE,
        "closed",
    )


def test_one_person_outgoing_and_incoming_needs_one_scan() -> None:
    """When the same manager has both days, one scan at the handover post completes it."""
    roster = dict(BASE["roster"])
    roster["weekly"] = {**roster["weekly"], "tue": "ann"}
    d = Driver(make_site(roster=roster), f"{TUE} 07:00", duty())
    d.scan("ann", "mc", f"{TUE} 08:50")
    d.until(f"{TUE} 12:00")
    assert only(d.rows, "handover.overdue", "duty.absent") == []


# -- patrol.hours_short ----------------------------------------------------------------------


def patrol(d: Driver, day: str, minutes: list[int], who: str = "bob") -> None:
    """Scans by `who` at 10:00 + each offset (minutes)."""
    base = dt.datetime.fromisoformat(f"{day} 10:00")
    for m in minutes:
        d.scan(who, "fd", (base + dt.timedelta(minutes=m)).isoformat(sep=" "))


def test_four_hours_exactly_is_enough() -> None:
    """Sessions joined by gaps of exactly 30 min; 240 min → no alert."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    handover_ok(d)
    patrol(d, TUE, list(range(0, 241, 30)))
    d.until(f"{TUE} 18:00")
    assert only(d.rows, "patrol.hours_short") == []


def test_gap_one_minute_over_splits_the_session() -> None:
    """A 31-minute gap ends the session: 0–120 and 151–271 = 240 min minus the gap → short."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    handover_ok(d)
    patrol(d, TUE, [0, 30, 60, 90, 120, 151, 181, 211, 241])
    d.until(f"{TUE} 18:00")
    (row,) = only(d.rows, "patrol.hours_short")
    assert row == ("11-24 18:00:00", "patrol.hours_short", "bob", "open")
    alert = next(t.alert for t in d.transitions if t.alert.rule == "patrol.hours_short")
    assert alert.details["patrol_minutes"] == 210 and alert.severity == "critical"


def test_scan_at_the_patrol_deadline_counts() -> None:
    """A scan at 18:00:00 sharp still extends the session (an event at a deadline is on time)."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    handover_ok(d)
    base = dt.datetime.fromisoformat(f"{TUE} 14:00")
    for m in range(0, 241, 20):
        d.scan("bob", "fd", (base + dt.timedelta(minutes=m)).isoformat(sep=" "))
    d.until(f"{TUE} 18:30")
    assert only(d.rows, "patrol.hours_short") == []


def test_only_the_duty_managers_scans_count() -> None:
    """Another person's patrol does not fill the duty manager's quota."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    handover_ok(d)
    patrol(d, TUE, list(range(0, 300, 20)), who="cat")
    d.until(f"{TUE} 18:00")
    assert only(d.rows, "patrol.hours_short") == [
        ("11-24 18:00:00", "patrol.hours_short", "bob", "open")
    ]


# -- patrol.key_post_missed ------------------------------------------------------------------


def test_key_posts_window_is_day_start_to_deadline() -> None:
    """A key post signed at 08:29 (before day_starts) is missed; 08:30 and 18:00 count."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("ann", "mc", f"{TUE} 08:20")
    d.scan("bob", "mc", f"{TUE} 08:29")
    d.scan("bob", "fd", f"{TUE} 18:00")
    d.until(f"{TUE} 18:00")
    assert only(d.rows, "patrol.key_post_missed") == [
        ("11-24 18:00:00", "patrol.key_post_missed", "monitoring-center", "open")
    ]
    alert = next(t.alert for t in d.transitions if t.alert.rule == "patrol.key_post_missed")
    assert alert.message == "MC was not inspected today"


def test_key_post_signed_by_someone_else_is_missed() -> None:
    """Only the duty manager's scan is the signature (4.3)."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    handover_ok(d)
    d.scan("ann", "fd", f"{TUE} 10:00")
    d.until(f"{TUE} 18:00")
    assert only(d.rows, "patrol.key_post_missed") == [
        ("11-24 18:00:00", "patrol.key_post_missed", "front", "open")
    ]


# -- calendars -------------------------------------------------------------------------------


def test_duty_day_crossing_midnight() -> None:
    """day_starts 20:00 with a 02:00 deadline: the deadline is on the next calendar date."""
    site = make_site(
        duty={
            "day_starts": "20:00",
            "check_in_deadline": "20:30",
            "handover_deadline": "20:30",
            "patrol_deadline": "02:00",
            "key_posts_deadline": "02:00",
            "min_patrol_hours": 1,
        }
    )
    d = Driver(site, f"{TUE} 19:00", duty())
    d.scan("ann", "mc", f"{TUE} 19:40")
    d.scan("bob", "mc", f"{TUE} 19:45")  # handover: before day_starts, not a key-post signature
    d.scan("bob", "mc", f"{TUE} 20:10")
    d.scan("bob", "fd", f"{TUE} 23:00")
    d.until(f"{WED} 01:59")
    assert only(d.rows, "patrol.hours_short", "patrol.key_post_missed") == []
    d.until(f"{WED} 02:00")
    assert only(d.rows, "patrol.hours_short", "patrol.key_post_missed") == [
        ("11-25 02:00:00", "patrol.hours_short", "bob", "open")
    ]


def test_site_in_another_time_zone() -> None:
    """Deadlines follow the site's zone: 09:00 in New York is 14:00 UTC in November."""
    site = make_site(site={"timezone": "America/New_York"})
    d = Driver(site, f"{TUE} 07:00", duty())
    d.until(f"{TUE} 09:00")
    absent = next(t for t in d.transitions if t.alert.rule == "duty.absent")
    assert absent.at == dt.datetime(2026, 11, 24, 14, 0, tzinfo=dt.UTC)


# -- early warnings --------------------------------------------------------------------------


def test_early_warnings_before_the_deadlines() -> None:
    """Off unless asked; on: key posts warned lead minutes before, patrol when the quota slips."""
    d = Driver(make_site(), f"{TUE} 07:00", duty(early=False))
    handover_ok(d)
    d.until(f"{TUE} 17:59")
    assert only(d.rows, "patrol.key_post_at_risk", "patrol.hours_at_risk") == []

    d = Driver(make_site(), f"{TUE} 07:00", duty(early=True))
    handover_ok(d)  # bob signs the monitoring center at 08:40
    d.until(f"{TUE} 13:00")
    # 18:00 − 4 h quota − 60 min lead = 13:00, with nothing patrolled yet.
    assert only(d.rows, "patrol.hours_at_risk") == [
        ("11-24 13:00:00", "patrol.hours_at_risk", "bob", "open")
    ]
    d.until(f"{TUE} 17:00")
    assert only(d.rows, "patrol.key_post_at_risk") == [
        ("11-24 17:00:00", "patrol.key_post_at_risk", "front", "open")
    ]
    d.scan("bob", "fd", f"{TUE} 17:10")
    assert only(d.rows, "patrol.key_post_at_risk")[-1][3] == "closed"


def test_hours_warning_moves_later_as_patrol_time_grows() -> None:
    """3 h 20 done by 12:00 (08:40–12:00): the warning comes at 18:00 − 40 min − 60 min."""
    d = Driver(make_site(), f"{TUE} 07:00", duty(early=True))
    handover_ok(d)
    base = dt.datetime.fromisoformat(f"{TUE} 09:00")
    for m in range(0, 181, 20):
        d.scan("bob", "fd", (base + dt.timedelta(minutes=m)).isoformat(sep=" "))
    d.until(f"{TUE} 16:19:59")
    assert only(d.rows, "patrol.hours_at_risk") == []
    d.until(f"{TUE} 16:20")
    assert only(d.rows, "patrol.hours_at_risk") == [
        ("11-24 16:20:00", "patrol.hours_at_risk", "bob", "open")
    ]


# -- session arithmetic (property tests) -----------------------------------------------------

T = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
minutes = st.lists(st.integers(min_value=0, max_value=24 * 60), max_size=40)
GAP = dt.timedelta(minutes=30)


def times(ms: list[int]) -> list[dt.datetime]:
    return [T + dt.timedelta(minutes=m) for m in ms]


@given(minutes)
def test_sessions_partition_the_scans(ms: list[int]) -> None:
    """Sessions are ordered, separated by more than the gap, and cover every scan."""
    ss = sessions(times(ms), GAP)
    for (_, end), (start, _) in itertools.pairwise(ss):
        assert start - end > GAP
    for t in times(ms):
        assert any(a <= t <= b for a, b in ss)
    assert patrol_time(times(ms), GAP) == sum((b - a for a, b in ss), dt.timedelta(0))


@given(minutes, st.permutations(list(range(10))))
def test_patrol_time_ignores_order_and_is_bounded(ms: list[int], _: list[int]) -> None:
    """Order does not matter; patrol time never exceeds last − first."""
    assert patrol_time(times(ms), GAP) == patrol_time(times(sorted(ms, reverse=True)), GAP)
    if ms:
        assert patrol_time(times(ms), GAP) <= times([max(ms)])[0] - times([min(ms)])[0]


@given(minutes, st.integers(min_value=0, max_value=24 * 60))
def test_one_more_scan_never_reduces_patrol_time(ms: list[int], extra: int) -> None:
    """Monotonic: a scan can only add patrol time (the early warning relies on it)."""
    assert patrol_time(times([*ms, extra]), GAP) >= patrol_time(times(ms), GAP)


# -- arrival order, late deliveries, swaps that complete things --------------------------------


def test_scan_just_after_the_deadline_clears_it_within_the_live_grace() -> None:
    """Live grace: a scan stamped 09:00:01 is after the deadline: raised at 09:00, then cleared."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("ann", "mc", f"{TUE} 08:40")
    t = d.t(f"{TUE} 09:00:01")
    person = d.site.person_for("qr", "BOB")
    assert person is not None
    scan = Scan("mc", "monitoring-center", "BOB", "qr", person.id, t, t)
    d._keep(d.engine.process(scan, t, dt.timedelta(seconds=2)))
    assert sorted(only(d.rows, "duty.absent", "handover.overdue")) == [
        ("11-24 09:00:00", "duty.absent", "bob", "open"),
        ("11-24 09:00:00", "handover.overdue", TUE, "open"),
        ("11-24 09:00:01", "duty.absent", "bob", "closed"),
        ("11-24 09:00:01", "handover.overdue", TUE, "closed"),
    ]


def test_swap_for_another_day_does_not_cover_todays_absence() -> None:
    """A swap registered for tomorrow leaves today's duty.absent open."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.until(f"{TUE} 09:00")
    d.event(SwapRegistered(dt.date(2026, 11, 25), "cat", d.t(f"{TUE} 10:00")))
    assert only(d.rows, "duty.absent") == [("11-24 09:00:00", "duty.absent", "bob", "open")]


def test_swap_that_completes_the_handover_clears_it_at_registration() -> None:
    """The stand-in and the outgoing manager signed; the late swap completes the handover."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("ann", "mc", f"{TUE} 08:40")
    d.scan("cat", "mc", f"{TUE} 08:45")
    d.until(f"{TUE} 09:00")
    d.event(SwapRegistered(dt.date(2026, 11, 24), "cat", d.t(f"{TUE} 09:20")))
    assert ("11-24 09:20:00", "handover.overdue", TUE, "closed") in d.rows
    assert ("11-24 09:20:00", "duty.absent", "bob", "closed") in d.rows


def test_deadline_exactly_at_the_start_fires() -> None:
    """A replay whose first message is at 09:00 still decides the 09:00 deadlines."""
    d = Driver(make_site(), f"{TUE} 09:00", duty())
    d.until(f"{TUE} 09:00")
    assert sorted(only(d.rows, "duty.absent", "handover.overdue")) == [
        ("11-24 09:00:00", "duty.absent", "bob", "open"),
        ("11-24 09:00:00", "handover.overdue", TUE, "open"),
    ]


def test_site_without_roster_misses_no_key_posts() -> None:
    """No roster, no duty manager: nobody's signature is missing."""
    d = Driver(make_site(roster=None), f"{TUE} 07:00", duty())
    d.until(f"{WED} 12:00")
    assert d.rows == []


# -- trusted skew: a stamp slightly ahead counts at its receive time (§1) ---------------------


def test_scan_stamped_ahead_counts_at_its_receive_time_for_the_check_in() -> None:
    """Received 08:59, stamped 09:01: on time for 09:00; the deadline must not fire as absent."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("ann", "mc", f"{TUE} 08:20")
    d.scan("bob", "mc", f"{TUE} 09:01", received=f"{TUE} 08:59")
    d.until(f"{TUE} 12:00")
    assert only(d.rows, "duty.absent", "handover.overdue") == []


def test_scan_stamped_ahead_adds_no_patrol_time_after_its_receive_time() -> None:
    """A session 10:00 → received 13:59 (stamped 14:01) is 3:59, not 4:01: hours_short fires."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    handover_ok(d)
    patrol(d, TUE, [0, 30, 60, 90, 120, 150, 180, 210, 220])
    d.scan("bob", "fd", f"{TUE} 14:01", received=f"{TUE} 13:59")
    d.until(f"{TUE} 18:00")
    assert only(d.rows, "patrol.hours_short") == [
        ("11-24 18:00:00", "patrol.hours_short", "bob", "open")
    ]


def test_completing_scan_stamped_ahead_clears_when_it_is_handled() -> None:
    """Stamped 09:11, received 09:10: the overdue handover closes at 09:10, not at the next
    message."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "mc", f"{TUE} 08:40")
    d.until(f"{TUE} 09:05")
    d.scan("ann", "mc", f"{TUE} 09:11", received=f"{TUE} 09:10")
    assert only(d.rows, "handover.overdue") == [
        ("11-24 09:00:00", "handover.overdue", TUE, "open"),
        ("11-24 09:10:00", "handover.overdue", TUE, "closed"),
    ]


# -- handover completion: at the scan, confirmation or swap that completes it (rule 3) ------

MON = "2026-11-23"
THU = "2026-11-26"


def overdue(d: Driver) -> list[tuple[str, str, str, str]]:
    return [r for r in d.rows if r[1] == "handover.overdue" and r[2] == TUE]


def test_handover_completed_by_a_scan_on_the_next_duty_day_clears_then() -> None:
    """Issue 8: only the scan's own duty day was re-checked, so this one never cleared."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "mc", f"{TUE} 08:40")
    d.until(f"{WED} 09:20")
    d.scan("ann", "mc", f"{WED} 09:30")
    assert overdue(d) == [
        ("11-24 09:00:00", "handover.overdue", TUE, "open"),
        ("11-25 09:30:00", "handover.overdue", TUE, "closed"),
    ]


def test_handover_completed_days_later_still_clears() -> None:
    """The scans of the day are long pruned by then; the parties who signed are not forgotten."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "mc", f"{TUE} 08:40")
    d.until(f"{THU} 20:00")
    d.scan("ann", "mc", f"{THU} 20:05")
    assert overdue(d)[-1] == ("11-26 20:05:00", "handover.overdue", TUE, "closed")


def test_handover_that_never_completes_stays_open_past_its_day() -> None:
    """It is closed by acknowledgement (§6), not by the day ending nor by other days' scans."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "mc", f"{TUE} 08:40")
    d.scan("ann", "fd", f"{TUE} 10:00")  # the outgoing manager, but not at the handover post
    d.scan("bob", "mc", f"{WED} 08:40")
    d.until(f"{THU} 12:00")
    assert overdue(d) == [("11-24 09:00:00", "handover.overdue", TUE, "open")]


def test_late_swap_for_the_day_before_completes_the_handover_at_once() -> None:
    """Cat covered Monday (registered late, Tuesday 09:20): the outgoing manager is cat, who
    signed at 08:45, so the handover into Tuesday completes at the swap."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "mc", f"{TUE} 08:40")
    d.scan("cat", "mc", f"{TUE} 08:45")
    d.until(f"{TUE} 09:10")
    d.event(SwapRegistered(dt.date(2026, 11, 23), "cat", d.t(f"{TUE} 09:20")))
    assert overdue(d) == [
        ("11-24 09:00:00", "handover.overdue", TUE, "open"),
        ("11-24 09:20:00", "handover.overdue", TUE, "closed"),
    ]


def test_confirmation_stands_for_that_managers_scan_only() -> None:
    """The incoming manager's confirmation does not complete the outgoing one's side."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "mc", f"{TUE} 08:40")
    d.until(f"{TUE} 09:10")
    d.event(HandoverConfirmed(dt.date(2026, 11, 24), "bob", d.t(f"{TUE} 09:15")))
    assert overdue(d) == [("11-24 09:00:00", "handover.overdue", TUE, "open")]
    d.event(HandoverConfirmed(dt.date(2026, 11, 24), "ann", d.t(f"{TUE} 09:30")))
    assert overdue(d)[-1] == ("11-24 09:30:00", "handover.overdue", TUE, "closed")


def test_confirmation_before_the_deadline_completes_it_in_time() -> None:
    """The outgoing manager confirms through the API instead of scanning: nothing is raised."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    d.scan("bob", "mc", f"{TUE} 08:40")
    d.event(HandoverConfirmed(dt.date(2026, 11, 24), "ann", d.t(f"{TUE} 08:50")))
    d.until(f"{TUE} 12:00")
    assert overdue(d) == []


def test_handover_parties_as_known_at_an_instant() -> None:
    """What the confirmation command checks its actor against: outgoing and incoming managers."""
    d = Driver(make_site(), f"{TUE} 07:00", duty())
    rules = d.engine.find(DutyRules)
    assert rules is not None
    tue = dt.date(2026, 11, 24)
    assert rules.handover_parties(tue, d.t(f"{TUE} 09:00")) == ("ann", "bob")
    d.event(SwapRegistered(dt.date(2026, 11, 23), "cat", d.t(f"{TUE} 09:20")))
    assert rules.handover_parties(tue, d.t(f"{TUE} 09:10")) == ("ann", "bob")
    assert rules.handover_parties(tue, d.t(f"{TUE} 09:20")) == ("cat", "bob")
    bare = make_site(roster=None)
    assert DutyRules(bare, Roster(bare), d.start, False).handover_parties(tue, d.start) == (
        None,
        None,
    )


def test_handover_left_open_before_a_restart_still_clears_when_completed() -> None:
    """A restart hands the rules the stored book: its open handover must still clear."""
    d = Driver(make_site(), f"{WED} 07:00", duty())
    book = AlertBook(d.site.id)
    book.raise_("handover.overdue", TUE, "warning", d.t(f"{TUE} 09:00"), "m", {"date": TUE})
    d.engine.book = book
    d.scan("bob", "mc", f"{WED} 08:40")
    d.scan("ann", "mc", f"{WED} 09:30")
    assert overdue(d) == [("11-25 09:30:00", "handover.overdue", TUE, "closed")]


# -- the early warnings clear by themselves (they are declared so) --------------------------


def test_early_warnings_are_closed_by_their_deadline_at_the_latest() -> None:
    """They are declared clearing, so an ack leaves them open: each must close on its own."""
    d = Driver(make_site(), f"{TUE} 07:00", duty(early=True))
    handover_ok(d)
    d.until(f"{TUE} 18:00")
    rows = only(d.rows, "patrol.key_post_at_risk", "patrol.hours_at_risk")
    assert sorted(r[2:] for r in rows) == sorted(
        [("bob", "open"), ("bob", "closed"), ("front", "open"), ("front", "closed")]
    )


def test_hours_warning_of_a_manager_swapped_out_still_closes_at_the_deadline() -> None:
    """Bob was warned at 13:00, then cat took the day over: bob's warning must not stay open."""
    d = Driver(make_site(), f"{TUE} 07:00", duty(early=True))
    handover_ok(d)
    d.until(f"{TUE} 13:30")
    d.event(SwapRegistered(dt.date(2026, 11, 24), "cat", d.t(f"{TUE} 14:00")))
    d.until(f"{TUE} 18:00")
    bob = [r for r in d.rows if r[1] == "patrol.hours_at_risk" and r[2] == "bob"]
    assert bob == [
        ("11-24 13:00:00", "patrol.hours_at_risk", "bob", "open"),
        ("11-24 18:00:00", "patrol.hours_at_risk", "bob", "closed"),
    ]


def test_site_without_roster_warns_of_no_key_post() -> None:
    """Nobody's signature is missing, so nothing is at risk (it would never close)."""
    d = Driver(make_site(roster=None), f"{TUE} 07:00", duty(early=True))
    d.until(f"{WED} 12:00")
    assert d.rows == []
