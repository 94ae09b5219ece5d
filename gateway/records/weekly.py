"""The project head's weekly review pack for one ISO week (3.7, 4.4, contract §11).

Per duty day Monday to Sunday: the duty manager, patrol time against the quota, key posts
missed, absences and unregistered swaps with the configured fine (one fine per person and duty
day, whatever alerts the absence raised; a waived violation is shown with its reason and not
fined), late handovers; for the week: alerts by rule with the time to acknowledge, work orders
and complaints still open at its end, flagged scans, the roster and the reviews.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field

from gateway.records import ledger
from gateway.records.apply import duty_day
from gateway.records.source import AlertRow, ScanRow, Source
from gateway.records.worklog import WorkLog
from gateway.records.worklog import build as build_log

FINED = ("duty.absent", "duty.unregistered_swap")  # 4.4
WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


class BadWeek(ValueError):
    """A week that is not `YYYY-Www` or does not exist."""


def parse_week(text: str) -> tuple[dt.date, str]:
    """The Monday of an ISO week and its canonical name (`2026-W48`)."""
    match = WEEK.match(text)
    if match is None:
        raise BadWeek(f"周应写作 / write the week as 2026-W48, not {text!r}")
    try:
        monday = dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise BadWeek(f"没有这一周 / no such ISO week {text!r}") from None
    return monday, text


def week_of(day: dt.date) -> str:
    """The ISO week name of a date."""
    year, number, _ = day.isocalendar()
    return f"{year}-W{number:02d}"


@dataclass(frozen=True)
class Violation:
    """An absence or unregistered swap of one person on one duty day (4.4)."""

    rule: str
    person: str
    day: dt.date
    alert: str
    waiver: ledger.Waiver | None


@dataclass(frozen=True)
class Fine:
    """What one person is fined for one duty day: once, whatever the alerts (4.4)."""

    person: str
    day: dt.date
    yuan: float
    rules: tuple[str, ...]


@dataclass
class DayLine:
    """One duty day of the pack."""

    day: dt.date
    rostered: str | None
    manager: str | None
    patrol_minutes: int
    required_minutes: int
    key_missed: list[str]  # post names
    violations: list[Violation]
    fines: list[Fine]
    handover_late: bool
    handover_completed: dt.datetime | None
    flagged: int

    @property
    def short(self) -> bool:
        """Patrol time below the quota."""
        return self.patrol_minutes < self.required_minutes

    @property
    def fine_yuan(self) -> float:
        """The day's fines, everyone's."""
        return sum(f.yuan for f in self.fines)


@dataclass(frozen=True)
class RuleLine:
    """The week's alerts of one rule."""

    rule: str
    raised: int
    acknowledged: int
    mean_minutes_to_ack: float | None
    max_minutes_to_ack: float | None


@dataclass(frozen=True)
class RosterLine:
    """The roster of one day of the week (轮值表), with the swap that took effect."""

    day: dt.date
    rostered: str | None
    manager: str | None
    swap_registered_at: dt.datetime | None
    swap_late: bool


@dataclass(frozen=True)
class Manual:
    """A manual sign-off (§10), listed in the pack with its reason."""

    at: dt.datetime
    post: str
    person: str
    reason: str


@dataclass
class WeeklyPack:
    """Everything the weekly pack shows."""

    week: str
    monday: dt.date
    start: dt.datetime
    end: dt.datetime
    fine_yuan: float
    days: list[DayLine]
    by_rule: list[RuleLine]
    workorders_open: list[ledger.WorkOrder]
    workorders_opened: int
    workorders_closed: int
    complaints_open: list[ledger.Complaint]
    complaints_received: int
    complaints_called_back: int
    incidents: list[ledger.Incident]
    flags: dict[str, int]
    manual: list[Manual]
    roster: list[RosterLine]
    waived: list[ledger.Waiver]  # every violation waived, fined or not
    previous_review: ledger.Review | None
    review: ledger.Review | None
    previous_week: str
    logs: list[WorkLog] = field(default_factory=list)

    @property
    def fines(self) -> list[Fine]:
        """Every fine of the week."""
        return [f for d in self.days for f in d.fines]


def build(source: Source, week: str, now: dt.datetime | None = None) -> WeeklyPack:
    """The pack of an ISO week as the store has it (up to `now`, default: all)."""
    monday, week = parse_week(week)
    site = source.site
    cal = site.calendar
    fine = site.config.duty.absence_fine_yuan
    start = cal.day_start(monday)
    end = cal.day_start(monday + dt.timedelta(days=7))
    known = end if now is None else min(end, now + ledger.INSTANT)
    records = ledger.load(source.db, known)
    everything = ledger.load(source.db, ledger.FAR_FUTURE if now is None else now + ledger.INSTANT)
    alerts = source.alerts(start, end)
    roster = source.roster(known)
    logs = [build_log(source, monday + dt.timedelta(days=i), now) for i in range(7)]
    days = [_day(source, log, alerts, records, fine) for log in logs]
    scans = source.scans(start, end)
    previous = week_of(monday - dt.timedelta(days=7))
    return WeeklyPack(
        week=week,
        monday=monday,
        start=start,
        end=end,
        fine_yuan=fine,
        days=days,
        by_rule=_by_rule(alerts),
        workorders_open=[o for o in records.workorders.values() if o.open_at(known)],
        workorders_opened=sum(start <= o.opened_at < end for o in records.workorders.values()),
        workorders_closed=sum(
            o.closed_at is not None and start <= o.closed_at < end
            for o in records.workorders.values()
        ),
        complaints_open=[c for c in records.complaints.values() if c.open_at(known)],
        complaints_received=sum(start <= c.received_at < end for c in records.complaints.values()),
        complaints_called_back=sum(
            c.callback_at is not None and start <= c.callback_at < end
            for c in records.complaints.values()
        ),
        incidents=[i for i in records.incidents if start <= i.at < end],
        flags=_flags(scans),
        manual=_manual(source, start, end),
        roster=[
            RosterLine(
                day=log.day,
                rostered=log.rostered,
                manager=log.manager,
                swap_registered_at=None if swap is None else swap.registered_at,
                swap_late=swap is not None and swap.registered_at > log.start,
            )
            for log in logs
            for swap in [roster.swap_in_effect(log.day, max(known, log.end))]
        ],
        waived=[v for v in records.waivers if monday <= v.date < monday + dt.timedelta(days=7)],
        previous_review=everything.review(previous),
        review=everything.review(week),
        previous_week=previous,
        logs=logs,
    )


def _day(
    source: Source, log: WorkLog, alerts: list[AlertRow], records: ledger.Ledger, fine: float
) -> DayLine:
    def of_day(rule: str) -> list[AlertRow]:
        site = source.site
        return [
            a
            for a in alerts
            if a.rule == rule
            and duty_day(site, a.rule, a.subject, a.details, a.raised_at.timestamp()) == log.day
        ]

    violations = [
        Violation(a.rule, a.subject, log.day, a.id, records.waiver(a.rule, a.subject, log.day))
        for rule in FINED
        for a in of_day(rule)
    ]
    fines = []
    for person in sorted({v.person for v in violations}):
        counted = tuple(v.rule for v in violations if v.person == person and v.waiver is None)
        if counted:
            fines.append(Fine(person, log.day, fine, counted))
    return DayLine(
        day=log.day,
        rostered=log.rostered,
        manager=log.manager,
        patrol_minutes=log.patrol_minutes,
        required_minutes=log.required_minutes,
        key_missed=[k.name for k in log.key_posts if k.signed_at is None],
        violations=violations,
        fines=fines,
        handover_late=log.handover.overdue is not None,
        handover_completed=log.handover.completed_at,
        flagged=len(log.flagged),
    )


def _by_rule(alerts: list[AlertRow]) -> list[RuleLine]:
    out = []
    for rule in sorted({a.rule for a in alerts}):
        mine = [a for a in alerts if a.rule == rule]
        waits = [
            a.to_acknowledge.total_seconds() / 60 for a in mine if a.to_acknowledge is not None
        ]
        out.append(
            RuleLine(
                rule=rule,
                raised=len(mine),
                acknowledged=len(waits),
                mean_minutes_to_ack=sum(waits) / len(waits) if waits else None,
                max_minutes_to_ack=max(waits) if waits else None,
            )
        )
    return out


def _flags(scans: list[ScanRow]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for scan in scans:
        counts.update(scan.flags)
    return dict(sorted(counts.items()))


def _manual(source: Source, start: dt.datetime, end: dt.datetime) -> list[Manual]:
    out = []
    for row in source.manual_signoffs():
        time = dt.datetime.fromisoformat(row.body["time"])
        if start <= time < end:
            post, reason = str(row.body["post"]), str(row.body.get("reason", ""))
            out.append(Manual(time, post, row.actor, reason))
    return out
