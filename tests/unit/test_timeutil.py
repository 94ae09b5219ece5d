"""Instants and duty days (contract §1)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.timeutil import BadTime, DutyCalendar, parse_clock, parse_instant

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
UTC = dt.UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T09:12:03+08:00", dt.datetime(2026, 11, 27, 1, 12, 3, tzinfo=UTC)),
        ("2026-11-27T01:12:03Z", dt.datetime(2026, 11, 27, 1, 12, 3, tzinfo=UTC)),
        ("2026-11-27T09:12:03", dt.datetime(2026, 11, 27, 1, 12, 3, tzinfo=UTC)),  # site-local
        (1795741923, dt.datetime(2026, 11, 27, 1, 12, 3, tzinfo=UTC)),
        (1795741923.5, dt.datetime(2026, 11, 27, 1, 12, 3, 500000, tzinfo=UTC)),
        (1795741923000, dt.datetime(2026, 11, 27, 1, 12, 3, tzinfo=UTC)),  # milliseconds
    ],
)
def test_parse_instant(value: object, expected: dt.datetime) -> None:
    """Every form §1 allows is read to the same instant."""
    assert parse_instant(value, SH) == expected


@pytest.mark.parametrize(
    "value", [True, "yesterday", "", None, [1], float("nan"), 10**30, 10**400, -(10**400)]
)
def test_parse_instant_refuses(value: object) -> None:
    """Anything else is a BadTime with a reason, never another exception."""
    with pytest.raises(BadTime):
        parse_instant(value, SH)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59.999999Z",
        "2100-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",  # past the end of datetime once in UTC
        "0001-01-01T00:00:00+23:59",  # before its start once in UTC
        "0001-01-01T00:00:00",  # naive: read in the site's zone
        "2026-11-27T09:12:03+99:00",
        -1,
        0,
        946684799.999,
        4102444800,
        253402300800,  # year 10000
    ],
)
def test_instants_outside_2000_to_2100_are_refused(value: object) -> None:
    """§1: an instant the engine and the store cannot handle wedged a site (issue 8, item 1)."""
    with pytest.raises(BadTime, match=r"2000|ISO 8601|range"):
        parse_instant(value, SH)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2000-01-01T00:00:00Z", dt.datetime(2000, 1, 1, tzinfo=UTC)),
        (946684800, dt.datetime(2000, 1, 1, tzinfo=UTC)),
        ("2099-12-31T23:59:59.999999Z", dt.datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_the_ends_of_the_range(value: object, expected: dt.datetime) -> None:
    """2000-01-01T00:00Z is the first instant taken, the last microsecond of 2099 the last."""
    assert parse_instant(value, SH) == expected


@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.datetimes().map(str)))
def test_parse_instant_never_raises_anything_but_bad_time(value: object) -> None:
    """Whatever a device sends, a refusal (BadTime) or an instant in range, never a crash."""
    try:
        got = parse_instant(value, SH)
    except BadTime:
        return
    assert dt.datetime(2000, 1, 1, tzinfo=UTC) <= got < dt.datetime(2100, 1, 1, tzinfo=UTC)


def test_parse_clock() -> None:
    """Clock times are local and plain."""
    assert parse_clock("08:30") == dt.time(8, 30)
    assert parse_clock("8:30") == dt.time(8, 30)
    assert parse_clock("18:00:30") == dt.time(18, 0, 30)
    for bad in ("8.30", "25:00", "08:30+08:00"):
        with pytest.raises(BadTime):
            parse_clock(bad)


def test_duty_day_boundaries() -> None:
    """08:29:59 belongs to yesterday's duty day, 08:30 to today's (3.6)."""
    cal = DutyCalendar(SH, dt.time(8, 30))
    before = dt.datetime(2026, 11, 27, 8, 29, 59, tzinfo=SH)
    at = dt.datetime(2026, 11, 27, 8, 30, tzinfo=SH)
    assert cal.day_of(before) == dt.date(2026, 11, 26)
    assert cal.day_of(at) == dt.date(2026, 11, 27)
    assert cal.day_start(dt.date(2026, 11, 27)) == at


def test_deadline_after_midnight_is_next_calendar_date() -> None:
    """A "02:00" deadline of duty day D is on D+1 (§1)."""
    cal = DutyCalendar(SH, dt.time(8, 30))
    day = dt.date(2026, 11, 27)
    assert cal.deadline(day, dt.time(2, 0)) == dt.datetime(2026, 11, 28, 2, 0, tzinfo=SH)
    assert cal.deadline(day, dt.time(18, 0)) == dt.datetime(2026, 11, 27, 18, 0, tzinfo=SH)


def test_daylight_saving_day_is_shorter() -> None:
    """In a zone with DST the duty day is 23 hours on the spring-forward date."""
    cal = DutyCalendar(NY, dt.time(8, 30))
    start = cal.day_start(dt.date(2026, 3, 7))
    end = cal.day_start(dt.date(2026, 3, 8))
    assert end - start == dt.timedelta(hours=23)


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    st.sampled_from([SH, NY, ZoneInfo("Europe/Berlin"), ZoneInfo("Australia/Lord_Howe")]),
    st.times(),
)
def test_every_instant_lies_in_its_duty_day(
    instant: dt.datetime, tz: ZoneInfo, starts: dt.time
) -> None:
    """day_of(t) is the duty day whose interval contains t, in any zone and any boundary."""
    cal = DutyCalendar(tz, starts.replace(microsecond=0))
    day = cal.day_of(instant)
    assert cal.day_start(day) <= instant < cal.day_start(day + dt.timedelta(days=1))


BERLIN = ZoneInfo("Europe/Berlin")


def test_day_start_in_the_spring_gap_lands_after_it() -> None:
    """A duty day starting at 02:30 on the spring-forward date starts at 03:30 summer time, and
    an instant just before that still belongs to the previous day."""
    cal = DutyCalendar(BERLIN, dt.time(2, 30))
    start = cal.day_start(dt.date(2026, 3, 29))
    assert start == dt.datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)
    assert cal.day_of(dt.datetime(2026, 3, 29, 3, 10, tzinfo=BERLIN)) == dt.date(2026, 3, 28)
    assert cal.day_of(start) == dt.date(2026, 3, 29)


def test_day_start_in_the_autumn_fold_is_the_first_occurrence() -> None:
    """02:30 happens twice on the fall-back date: the day starts at the first, and the second
    02:10 (after the start) belongs to the new day."""
    cal = DutyCalendar(BERLIN, dt.time(2, 0))
    start = cal.day_start(dt.date(2026, 10, 25))
    assert start == dt.datetime(2026, 10, 25, 0, 0, tzinfo=dt.UTC)  # 02:00 summer time
    second_pass = dt.datetime(2026, 10, 25, 1, 10, tzinfo=dt.UTC)  # 02:10 winter time
    assert cal.day_of(second_pass) == dt.date(2026, 10, 25)
