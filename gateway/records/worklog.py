"""The duty manager's work log of one duty day (值班经理工作日志, 3.4, 4.3, 4.8, 4.10).

Generated from the record (sign-offs, patrol time, key posts, handover, alerts and who handled
them, flagged scans, the power room's rounds) plus what people wrote (calls, findings,
handover items and cautions, work orders, complaints, incidents).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from gateway.config.site import Site
from gateway.records import ledger
from gateway.records.source import AlertRow, ScanRow, Source, patrol_minutes

CHECK_IN_LEAD = dt.timedelta(minutes=30)  # the handover window opens 30 min early (§5 rule 3)


@dataclass(frozen=True)
class KeyPost:
    """A key post (4.3) and when the duty manager first signed there, if they did."""

    post: str
    name: str
    signed_at: dt.datetime | None


@dataclass(frozen=True)
class HandoverSide:
    """One manager of a handover and when they signed or confirmed it."""

    person: str | None
    at: dt.datetime | None
    notes: str = ""


@dataclass(frozen=True)
class Handover:
    """The handover into the duty day (4.8): both managers, and whether it was late."""

    outgoing: HandoverSide
    incoming: HandoverSide
    overdue: AlertRow | None  # handover.overdue of the day, if it was raised

    @property
    def completed_at(self) -> dt.datetime | None:
        """When the second of the two signed (None while one is missing)."""
        if self.outgoing.at is None or self.incoming.at is None:
            return None
        return max(self.outgoing.at, self.incoming.at)


@dataclass(frozen=True)
class Round:
    """One engineer's round at a plant room (篇5 e) and the readings there at that time."""

    post: str
    at: dt.datetime
    person: str | None
    readings: dict[str, float]  # "equipment.metric" → value


@dataclass
class WorkLog:
    """Everything the work log of `day` shows."""

    day: dt.date
    start: dt.datetime
    end: dt.datetime
    rostered: str | None
    manager: str | None
    signoffs: list[ScanRow]
    patrol_minutes: int
    required_minutes: int
    sessions: list[tuple[dt.datetime, dt.datetime]]
    key_posts: list[KeyPost]
    handover: Handover
    alerts: list[AlertRow]
    flagged: list[ScanRow]
    entries: list[ledger.LogEntry]
    workorders_carried: list[ledger.WorkOrder]  # open at the start: re-check on patrol (4.10)
    workorders_opened: list[ledger.WorkOrder]
    workorders_closed: list[ledger.WorkOrder]
    complaints_carried: list[ledger.Complaint]
    complaints_received: list[ledger.Complaint]
    complaints_called_back: list[ledger.Complaint]
    incidents: list[ledger.Incident]
    next_handover: list[str] = field(default_factory=list)  # items for the next manager
    rounds: list[Round] = field(default_factory=list)

    @property
    def short(self) -> bool:
        """Patrol time below the quota (4.3)."""
        return self.patrol_minutes < self.required_minutes


def build(source: Source, day: dt.date, now: dt.datetime | None = None) -> WorkLog:
    """The work log of duty day `day` as the store has it (up to `now`, default: all)."""
    site = source.site
    cal = site.calendar
    duty = site.config.duty
    start, end = cal.day_start(day), cal.day_start(day + dt.timedelta(days=1))
    known = end if now is None else min(end, now + ledger.INSTANT)
    roster = source.roster(known)
    manager = roster.manager(day, known)
    outgoing = roster.manager(day - dt.timedelta(days=1), known)
    scans = source.scans(start - CHECK_IN_LEAD, end)
    in_day = [s for s in scans if s.time >= start]
    mine = [s for s in in_day if s.person == manager and s.counts]
    patrol_deadline = cal.deadline(day, site.clock("patrol_deadline"))
    minutes, parts = patrol_minutes(
        [s for s in mine if s.time <= patrol_deadline],
        dt.timedelta(minutes=duty.patrol_max_gap_minutes),
    )
    key_deadline = cal.deadline(day, site.clock("key_posts_deadline"))
    key_posts = [
        KeyPost(
            post.id,
            post.name,
            next((s.time for s in mine if s.post == post.id and s.time <= key_deadline), None),
        )
        for post in site.config.posts
        if post.key
    ]
    records = ledger.load(source.db, known)
    alerts = source.alerts(start, end)
    handover = _handover(site, day, scans, records, alerts, outgoing, manager)
    carried_orders = [o for o in records.workorders.values() if o.open_at(start)]
    carried_complaints = [c for c in records.complaints.values() if c.open_at(start)]
    log = WorkLog(
        day=day,
        start=start,
        end=end,
        rostered=roster.rostered(day),
        manager=manager,
        signoffs=[s for s in in_day if s.person == manager],
        patrol_minutes=minutes,
        required_minutes=int(duty.min_patrol_hours * 60),
        sessions=parts,
        key_posts=key_posts,
        handover=handover,
        alerts=alerts,
        flagged=[s for s in in_day if s.flags],
        entries=[e for e in records.entries if e.day == day],
        workorders_carried=carried_orders,
        workorders_opened=[o for o in records.workorders.values() if start <= o.opened_at < end],
        workorders_closed=[
            o
            for o in records.workorders.values()
            if o.closed_at is not None and start <= o.closed_at < end
        ],
        complaints_carried=carried_complaints,
        complaints_received=[
            c for c in records.complaints.values() if start <= c.received_at < end
        ],
        complaints_called_back=[
            c
            for c in records.complaints.values()
            if c.callback_at is not None and start <= c.callback_at < end
        ],
        incidents=[i for i in records.incidents if start <= i.at < end],
    )
    log.next_handover = [
        *(f"工作任务单 {o.id}：{o.title}" for o in records.workorders.values() if o.open_at(known)),
        *(f"投诉 {c.id}：{c.what}" for c in records.complaints.values() if c.open_at(known)),
        *(e.text for e in log.entries if e.kind in ("handover", "caution")),
    ]
    log.rounds = _rounds(source, in_day)
    return log


def _handover(
    site: Site,
    day: dt.date,
    scans: list[ScanRow],
    records: ledger.Ledger,
    alerts: list[AlertRow],
    outgoing: str | None,
    incoming: str | None,
) -> Handover:
    post = site.config.duty.handover_post
    opens = site.calendar.day_start(day) - CHECK_IN_LEAD

    def side(person: str | None) -> HandoverSide:
        if person is None:
            return HandoverSide(None, None)
        signed = [s.time for s in scans if s.person == person and s.post == post and s.counts]
        confirmed = [c for c in records.confirmations if c.date == day and c.by == person]
        times = [t for t in signed if t >= opens] + [c.at for c in confirmed]
        notes = "；".join(c.notes for c in confirmed if c.notes)
        return HandoverSide(person, min(times, default=None), notes)

    overdue = next(
        (a for a in alerts if a.rule == "handover.overdue" and a.subject == day.isoformat()),
        None,
    )
    return Handover(side(outgoing), side(incoming), overdue)


def _rounds(source: Source, scans: list[ScanRow]) -> list[Round]:
    site = source.site
    out = []
    for scan in scans:
        post = site.posts.get(scan.post)
        if post is None or post.rounds is None or not scan.counts:
            continue
        if not site.has_role(scan.person, post.rounds.roles):
            continue
        values: dict[str, float] = {}
        for eq in site.equipment.values():
            if eq.post == post.id:
                for metric, (value, _) in source.readings_before(eq.id, scan.time).items():
                    values[f"{eq.id}.{metric}"] = value
        out.append(Round(post.id, scan.time, scan.person, values))
    return out
