"""Rules 6–8 of contract §5 at and around every boundary."""

from __future__ import annotations

import datetime as dt

from gateway.config import Site
from gateway.events import Reading, Scan
from gateway.rules.base import Rule
from gateway.rules.equipment import EquipmentRules
from gateway.rules.rounds import Rounds
from tests.unit.ruleharness import Driver, make_site

DAY = "2026-11-23"


def equipment(site: Site, start: dt.datetime) -> list[Rule]:
    return [EquipmentRules(site, start)]


def rounds(site: Site, start: dt.datetime) -> list[Rule]:
    return [Rounds(site, start)]


def eq_driver(stale: bool = False) -> Driver:
    """Equipment rules on the base site; staleness off unless asked, so it doesn't interleave."""
    site = make_site()
    if not stale:
        tx = site.config.equipment[0].model_dump()
        tx["stale_after_seconds"] = None
        site = make_site(equipment=[tx])
    return Driver(site, f"{DAY} 08:00", equipment)


def test_duration_reached_exactly_raises_at_that_instant() -> None:
    """for_seconds: raised at first-out + duration, even with no reading at that instant."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00:00", temp=96)
    d.reading("tx", f"{DAY} 10:00:30", temp=99)
    assert d.until(f"{DAY} 10:00:59") == []
    assert d.until(f"{DAY} 10:01:00") == [
        ("11-23 10:01:00", "equipment.out_of_range", "tx.temp", "open")
    ]
    assert d.reading("tx", f"{DAY} 10:02:00", temp=95) == [
        ("11-23 10:02:00", "equipment.out_of_range", "tx.temp", "closed")
    ]


def test_an_unlatched_boolean_off_its_expected_value_raises_at_once_and_clears_back() -> None:
    """A boolean metric without latch (a generator's "ready") is out when it differs from
    `expect`, with no duration, and clears when it comes back; a number inside a numeric
    metric's limits beside it changes nothing."""
    tx = make_site().config.equipment[0].model_dump()
    tx["stale_after_seconds"] = None
    tx["metrics"]["ready"] = {"expect": True}
    d = Driver(make_site(equipment=[tx]), f"{DAY} 08:00", equipment)
    assert d.reading("tx", f"{DAY} 10:00", ready=True, load=50.0) == []
    assert d.reading("tx", f"{DAY} 10:05", ready=False, load=50.0) == [
        ("11-23 10:05:00", "equipment.out_of_range", "tx.ready", "open")
    ]
    assert d.reading("tx", f"{DAY} 10:06", ready=False) == []
    assert d.reading("tx", f"{DAY} 10:10", ready=True) == [
        ("11-23 10:10:00", "equipment.out_of_range", "tx.ready", "closed")
    ]


def test_back_inside_at_the_duration_instant_is_in_time() -> None:
    """A reading back inside stamped exactly at first-out + duration prevents the alert."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00:00", temp=96)
    assert d.reading("tx", f"{DAY} 10:01:00", temp=95) == []
    assert d.until(f"{DAY} 11:00") == []


def test_short_excursion_does_not_raise_and_restarts_the_count() -> None:
    """Out, back, out again: the duration counts from the second excursion."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00:00", temp=96)
    d.reading("tx", f"{DAY} 10:00:50", temp=80)
    d.reading("tx", f"{DAY} 10:00:55", temp=97)
    d.until(f"{DAY} 10:01:54")
    assert [r for r in d.rows if r[1] == "equipment.out_of_range"] == []
    d.until(f"{DAY} 10:01:55")
    assert d.rows[-1] == ("11-23 10:01:55", "equipment.out_of_range", "tx.temp", "open")


def test_limit_itself_is_inside() -> None:
    """max: 85 means 85 is fine and 85.01 is not (for_seconds 0 raises at once)."""
    d = eq_driver()
    assert d.reading("tx", f"{DAY} 10:00", load=85) == []
    assert d.reading("tx", f"{DAY} 10:01", load=85.01) == [
        ("11-23 10:01:00", "equipment.out_of_range", "tx.load", "open")
    ]


def test_hysteresis_less_exactly_more() -> None:
    """Back by less than the hysteresis stays open; exactly or more clears (max side)."""
    for value, clears in ((81, False), (80, True), (79.5, True)):
        d = eq_driver()
        d.reading("tx", f"{DAY} 10:00", load=88)
        out = d.reading("tx", f"{DAY} 10:05", load=value)
        assert (
            out == [("11-23 10:05:00", "equipment.out_of_range", "tx.load", "closed")]
        ) is clears


def test_hysteresis_on_the_min_side() -> None:
    """min: 10, hysteresis 2: 11.9 keeps it open, 12 clears."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00", low=9)
    assert d.reading("tx", f"{DAY} 10:01", low=11.9) == []
    assert d.reading("tx", f"{DAY} 10:02", low=12)[0][3] == "closed"


def test_repeated_out_values_update_one_alert() -> None:
    """While open, more out-of-range readings do not raise another alert."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00", load=88)
    d.reading("tx", f"{DAY} 10:01", load=90)
    d.reading("tx", f"{DAY} 10:02", load=95)
    assert [r[3] for r in d.rows] == ["open"]


def test_latch_needs_an_engineer_on_site_after_the_value_is_back() -> None:
    """leak latches: only an engineer's scan at the equipment's post, after it is back, clears."""
    d = eq_driver()
    assert d.reading("tx", f"{DAY} 12:00", leak=True)[0][3] == "open"
    assert d.scan("eng", "pr", f"{DAY} 12:05") == []  # still leaking: the scan does not clear
    assert d.reading("tx", f"{DAY} 12:10", leak=False) == []  # back, but latched
    assert d.scan("sec", "pr", f"{DAY} 12:15") == []  # not an engineering role
    assert d.scan("eng", "mc", f"{DAY} 12:20") == []  # an engineer, but at another post
    assert d.scan("eng", "pr", f"{DAY} 12:30") == [
        ("11-23 12:30:00", "equipment.out_of_range", "tx.leak", "closed")
    ]


def test_latch_rearmed_when_value_goes_out_again_before_the_check() -> None:
    """Back, then out again: the on-site scan must wait for the next return."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 12:00", leak=True)
    d.reading("tx", f"{DAY} 12:10", leak=False)
    d.reading("tx", f"{DAY} 12:15", leak=True)
    assert d.scan("eng", "pr", f"{DAY} 12:20") == []
    d.reading("tx", f"{DAY} 12:25", leak=False)
    assert d.scan("eng", "pr", f"{DAY} 12:30")[0][3] == "closed"


def test_stale_before_the_first_reading_counts_from_start() -> None:
    """No reading at all: stale at start + stale_after_seconds; a reading clears it."""
    d = eq_driver(stale=True)
    assert d.until(f"{DAY} 08:09:59") == []
    assert d.until(f"{DAY} 08:10") == [("11-23 08:10:00", "equipment.stale", "tx", "open")]
    assert d.reading("tx", f"{DAY} 08:15", temp=50) == [
        ("11-23 08:15:00", "equipment.stale", "tx", "closed")
    ]
    assert d.until(f"{DAY} 08:25")[-1] == ("11-23 08:25:00", "equipment.stale", "tx", "open")


def test_reading_exactly_at_the_stale_instant_is_in_time() -> None:
    """A reading stamped at last + stale_after is on time."""
    d = eq_driver(stale=True)
    d.reading("tx", f"{DAY} 08:05", temp=50)
    assert d.reading("tx", f"{DAY} 08:15", temp=50) == []
    assert d.until(f"{DAY} 08:24:59") == []


def test_rounds_boundaries_and_roles() -> None:
    """Due every_minutes after the last qualifying scan (or the start); other roles don't count."""
    d = Driver(make_site(), f"{DAY} 08:00", rounds)
    assert d.scan("eng", "pr", f"{DAY} 10:00") == []  # exactly when due: on time
    assert d.scan("sec", "pr", f"{DAY} 11:00") == []  # a guard's scan is not the round
    assert d.until(f"{DAY} 12:00") == [("11-23 12:00:00", "round.missed", "power", "open")]
    assert d.until(f"{DAY} 14:00") == []  # raised once per missed round
    assert d.scan("eng", "pr", f"{DAY} 14:30") == [
        ("11-23 14:30:00", "round.missed", "power", "closed")
    ]
    assert d.until(f"{DAY} 16:29") == []
    assert d.until(f"{DAY} 16:30") == [("11-23 16:30:00", "round.missed", "power", "open")]


def test_round_counts_from_start_when_no_scan_yet() -> None:
    """Before any round, the count starts when the gateway (or the replay) started."""
    d = Driver(make_site(), f"{DAY} 09:17", rounds)
    assert d.until(f"{DAY} 11:17") == [("11-23 11:17:00", "round.missed", "power", "open")]


def test_buffered_readings_delivered_late_do_not_flap_stale() -> None:
    """A meter delivering what it buffered is heard when it delivers: one stale, one clear."""
    d = eq_driver(stale=True)
    d.reading("tx", f"{DAY} 08:05", temp=50)
    late = d.t(f"{DAY} 08:40")
    for minute in (6, 7, 8):
        t = d.t(f"{DAY} 08:{minute:02d}")
        d.event(Reading("tx", {"temp": 50.0}, t, late), late)
    d.until(f"{DAY} 08:45")
    stale = [r for r in d.rows if r[1] == "equipment.stale"]
    assert stale == [
        ("11-23 08:15:00", "equipment.stale", "tx", "open"),
        ("11-23 08:40:00", "equipment.stale", "tx", "closed"),
    ]


def test_late_round_scan_that_is_overdue_again_keeps_the_alert_open() -> None:
    """A round scan delivered late, already overdue again: no close-and-reopen, in time order."""
    d = Driver(make_site(), f"{DAY} 09:00", rounds)
    d.scan("eng", "pr", f"{DAY} 10:00")
    d.until(f"{DAY} 12:00")  # opened at 12:00 (due since the 10:00 round)
    t = d.t(f"{DAY} 10:30")
    person = d.site.person_for("qr", "ENG")
    assert person is not None
    d.event(
        Scan("pr", "power", "ENG", "qr", person.id, t, d.t(f"{DAY} 12:45")), d.t(f"{DAY} 12:45")
    )
    d.until(f"{DAY} 13:00")
    assert d.rows == [("11-23 12:00:00", "round.missed", "power", "open")]
    d.scan("eng", "pr", f"{DAY} 13:10")
    assert d.rows[-1] == ("11-23 13:10:00", "round.missed", "power", "closed")


# -- latch: the engineer's check must come after the value is back (§5 rule 7) ----------------

LEAK = "equipment.out_of_range"


def test_latch_scan_stamped_before_the_value_came_back_never_clears() -> None:
    """Issue 8 item 4: leak 10:00, dry 10:05, a scan stamped 10:04 delivered 10:06 stays open."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00", leak=True)
    d.reading("tx", f"{DAY} 10:05", leak=False)
    assert d.scan("eng", "pr", f"{DAY} 10:04", received=f"{DAY} 10:06") == []
    d.until(f"{DAY} 10:09")
    assert d.scan("eng", "pr", f"{DAY} 10:10") == [("11-23 10:10:00", LEAK, "tx.leak", "closed")]


def test_latch_scan_handled_before_the_back_reading_of_the_same_instant() -> None:
    """The scan first, then the reading stamped at the same instant: it clears at that reading."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00", leak=True)
    assert d.scan("eng", "pr", f"{DAY} 10:05") == []
    assert d.reading("tx", f"{DAY} 10:05", leak=False) == [
        ("11-23 10:05:00", LEAK, "tx.leak", "closed")
    ]


def test_latch_late_back_reading_stamped_before_the_scan_clears_when_handled() -> None:
    """Dry since 10:08 (delivered 10:12); the engineer checked at 10:10: closed at 10:12."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00", leak=True)
    assert d.scan("eng", "pr", f"{DAY} 10:10") == []
    assert d.reading("tx", f"{DAY} 10:08", received=f"{DAY} 10:12", leak=False) == [
        ("11-23 10:12:00", LEAK, "tx.leak", "closed")
    ]


def test_latch_late_back_reading_stamped_after_the_scan_does_not_clear() -> None:
    """The value came back at 10:11, after the 10:10 check: still latched, whenever it arrives."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00", leak=True)
    d.scan("eng", "pr", f"{DAY} 10:10")
    assert d.reading("tx", f"{DAY} 10:11", received=f"{DAY} 10:12", leak=False) == []
    assert d.until(f"{DAY} 11:00") == []


def test_latch_a_reading_that_left_the_band_since_voids_an_earlier_return() -> None:
    """Back 10:05, out again 10:07 (delivered after the 10:08 check): not cleared by it."""
    d = eq_driver()
    d.reading("tx", f"{DAY} 10:00", leak=True)
    d.reading("tx", f"{DAY} 10:05", leak=False)
    d.reading("tx", f"{DAY} 10:07", received=f"{DAY} 10:07:30", leak=True)
    assert d.scan("eng", "pr", f"{DAY} 10:08") == []
    assert d.reading("tx", f"{DAY} 10:09", leak=False) == []  # back after the check
    assert d.scan("eng", "pr", f"{DAY} 10:09") == [("11-23 10:09:00", LEAK, "tx.leak", "closed")]


def test_latch_on_a_numeric_metric_needs_the_hysteresis_band() -> None:
    """Latched load (max 85, hysteresis 5): 82 is inside but not back; 80 is back."""
    site = make_site()
    tx = site.config.equipment[0].model_dump()
    tx["stale_after_seconds"] = None
    tx["metrics"]["load"]["latch"] = True
    d = Driver(make_site(equipment=[tx]), f"{DAY} 08:00", equipment)
    d.reading("tx", f"{DAY} 10:00", load=90)
    d.reading("tx", f"{DAY} 10:05", load=80)
    d.reading("tx", f"{DAY} 10:06", load=82)  # left the band again
    assert d.scan("eng", "pr", f"{DAY} 10:07") == []
    assert d.reading("tx", f"{DAY} 10:08", load=79) == []
    assert d.scan("eng", "pr", f"{DAY} 10:08")[0][1:] == (LEAK, "tx.load", "closed")
