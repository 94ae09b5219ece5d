"""Instants and duty days (contract §1). Nothing here reads the wall clock."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

UTC = dt.UTC
_MS_EPOCH_THRESHOLD = 10**11  # contract §1: larger epochs are milliseconds
# Contract §1: instants before 2000 or from 2100 on are refused. Every instant taken is then
# one the engine, the store and the calendar can shift by days without overflowing.
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


class BadTime(ValueError):
    """A time value that cannot be read."""


def parse_instant(value: object, tz: dt.tzinfo) -> dt.datetime:
    """Read an ISO 8601 string or an epoch number; a naive ISO time is local to `tz`.

    The instant is in UTC and within [2000-01-01, 2100-01-01) UTC; anything else is `BadTime`.
    """
    if type(value) is str:
        try:  # the common case: ISO text as devices send it, read at once
            parsed = dt.datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=tz)
            instant = parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            instant = _read_instant(value, tz)  # not a time, out of range: the long way says
    else:
        instant = _read_instant(value, tz)
    if not EARLIEST <= instant < END:
        raise BadTime(
            f"{str(value)[:40]!r} is outside the years 2000–2099 that a time may take (§1)"
        )
    return instant


def _read_instant(value: object, tz: dt.tzinfo) -> dt.datetime:
    if isinstance(value, bool):
        raise BadTime("a time must be ISO 8601 text or epoch seconds, not true/false")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError as exc:
            raise BadTime(f"epoch {str(value)[:20]}… is out of range") from exc
        if not math.isfinite(seconds):
            raise BadTime("time is not a finite number")
        if abs(seconds) > _MS_EPOCH_THRESHOLD:
            seconds /= 1000.0
        try:
            return dt.datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise BadTime(f"epoch {value!r} is out of range") from exc
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise BadTime(
                f"{value[:40]!r} is not ISO 8601 (e.g. 2026-11-27T09:12:03+08:00)"
            ) from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError) as exc:  # year 1 or 9999 with an offset
            raise BadTime(f"{value[:40]!r} is out of range") from exc
    raise BadTime(f"a time must be ISO 8601 text or epoch seconds, not {type(value).__name__}")


def parse_clock(text: str) -> dt.time:
    """Read a configuration clock time "HH:MM" (or "H:MM", "HH:MM:SS")."""
    if len(text) >= 4 and text[1] == ":":
        text = "0" + text  # "8:30" is "08:30"
    try:
        value = dt.time.fromisoformat(text)
    except ValueError as exc:
        raise BadTime(f'{text!r} is not a clock time like "08:30"') from exc
    if value.tzinfo is not None:
        raise BadTime(f"{text!r}: clock times are local to the site; drop the offset")
    return value


def iso(instant: dt.datetime, tz: dt.tzinfo) -> str:
    """Format an instant in the site's zone with its offset, to the second."""
    local = instant.astimezone(tz)
    if local.microsecond:
        return local.isoformat(timespec="milliseconds")
    return local.isoformat(timespec="seconds")


class DutyCalendar:
    """Maps instants to duty days and clock times to deadlines within a duty day (§1)."""

    def __init__(self, tz: ZoneInfo, day_starts: dt.time) -> None:
        self.tz = tz
        self.day_starts = day_starts

    def local(self, date: dt.date, clock: dt.time) -> dt.datetime:
        """The instant of `clock` on calendar `date`, local time.

        Around a daylight-saving change: a clock time that occurs twice means its first
        occurrence; one that does not exist (skipped by the spring change) is read with the
        offset before the change, so it lands just after the gap ("02:30" → 03:30 summer time).
        """
        naive = dt.datetime.combine(date, clock)
        return naive.replace(tzinfo=self.tz).astimezone(UTC)

    def day_start(self, day: dt.date) -> dt.datetime:
        """The instant duty day `day` begins."""
        return self.local(day, self.day_starts)

    def day_of(self, instant: dt.datetime) -> dt.date:
        """The duty day D that contains `instant`: day_start(D) ≤ instant < day_start(D+1)."""
        day = instant.astimezone(self.tz).date()
        if instant < self.day_start(day):
            return day - dt.timedelta(days=1)
        if instant >= self.day_start(day + dt.timedelta(days=1)):
            return day + dt.timedelta(days=1)
        return day

    def deadline(self, day: dt.date, clock: dt.time) -> dt.datetime:
        """`clock` within duty day `day`: before day_starts means the next calendar date."""
        date = day if clock >= self.day_starts else day + dt.timedelta(days=1)
        return self.local(date, clock)
