"""The records as they stand at an instant, folded from the applied commands (§11).

Reads go through the store's query side on any connection to the store: the worker's (inside
its transaction, to check a command before applying it, and the work-order rule's) or a
read-only one (the API, the command line's reports).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from gateway.store.read import Queries

RECORD_ACTIONS = (
    "workorder.open",
    "workorder.close",
    "complaint.receive",
    "complaint.callback",
    "incident.report",
    "log.add",
    "violation.waive",
    "review.write",
    "handover.confirm",
)
FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
# "Up to and including now" is "before now + INSTANT": a record applied at the present counts.
INSTANT = dt.timedelta(microseconds=1)


def _opt_instant(text: object) -> dt.datetime | None:
    return None if text in (None, "") else dt.datetime.fromisoformat(str(text))


@dataclass
class WorkOrder:
    """工作任务单 ZJWY/KF/BG-024."""

    id: str
    title: str
    opened_at: dt.datetime
    opened_by: str
    department: str = ""
    where: str = ""
    due: dt.datetime | None = None
    alert: str | None = None
    closed_at: dt.datetime | None = None
    closed_by: str | None = None
    result: str = ""

    def open_at(self, at: dt.datetime) -> bool:
        """Opened by `at` and not closed by then."""
        return self.opened_at <= at and (self.closed_at is None or self.closed_at > at)


@dataclass
class Complaint:
    """投诉处理表 ZJWY/KF/BG-026: owned by whoever took it (3.5), closed by the callback (4.7)."""

    id: str
    what: str
    received_at: dt.datetime
    owner: str
    who: str = ""
    how: str = ""
    where: str = ""
    callback_at: dt.datetime | None = None
    callback_by: str | None = None
    result: str = ""

    def open_at(self, at: dt.datetime) -> bool:
        """Received by `at` and not called back by then."""
        return self.received_at <= at and (self.callback_at is None or self.callback_at > at)


@dataclass(frozen=True)
class Incident:
    """事件报告表 ZJWY/KF/BG-027."""

    id: str
    title: str
    major: bool
    at: dt.datetime
    by: str
    where: str = ""
    details: str = ""
    when: dt.datetime | None = None
    told: str = ""


@dataclass(frozen=True)
class LogEntry:
    """An entry the duty manager writes in the work log (3.4 calls, 4.5 findings, 4.8)."""

    day: dt.date
    kind: str
    text: str
    at: dt.datetime
    by: str
    post: str = ""
    follow_up: str = ""
    photo: str = ""  # a photo of a finding (4.5): its name under {data}/photos


@dataclass(frozen=True)
class Waiver:
    """A violation the project head waived, with the reason (4.4: not fined)."""

    rule: str
    subject: str
    date: dt.date
    reason: str
    at: dt.datetime
    by: str


@dataclass(frozen=True)
class Review:
    """The project head's review (批示) of a week (3.7)."""

    week: str
    text: str
    at: dt.datetime
    by: str


@dataclass(frozen=True)
class Confirmation:
    """A manager's confirmation of their side of a handover, with notes (4.8)."""

    date: dt.date
    by: str
    at: dt.datetime
    notes: str


@dataclass
class Ledger:
    """Every record applied before an instant."""

    workorders: dict[str, WorkOrder] = field(default_factory=dict)
    complaints: dict[str, Complaint] = field(default_factory=dict)
    incidents: list[Incident] = field(default_factory=list)
    entries: list[LogEntry] = field(default_factory=list)
    waivers: list[Waiver] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    confirmations: list[Confirmation] = field(default_factory=list)

    def waiver(self, rule: str, subject: str, date: dt.date) -> Waiver | None:
        """The waiver of one violation, if the project head waived it."""
        return next(
            (w for w in self.waivers if (w.rule, w.subject, w.date) == (rule, subject, date)),
            None,
        )

    def review(self, week: str) -> Review | None:
        """The newest review of an ISO week (`2026-W48`)."""
        found = [r for r in self.reviews if r.week == week]
        return found[-1] if found else None


def load(db: sqlite3.Connection, until: dt.datetime = FAR_FUTURE) -> Ledger:
    """The records as they stood just before `until`."""
    ledger = Ledger()
    for row in Queries(db).applied_commands(RECORD_ACTIONS, until):
        fold(ledger, row.action, row.body, row.actor, row.applied_at)
    return ledger


def fold(ledger: Ledger, action: str, body: dict[str, Any], by: str, at: dt.datetime) -> None:
    """Add one applied command to the ledger."""

    def text(name: str) -> str:
        return str(body.get(name) or "")

    if action == "workorder.open":
        ledger.workorders[text("id")] = WorkOrder(
            id=text("id"),
            title=text("title"),
            opened_at=at,
            opened_by=by,
            department=text("department"),
            where=text("where"),
            due=_opt_instant(body.get("due")),
            alert=body.get("alert") or None,
        )
    elif action == "workorder.close":
        order = ledger.workorders.get(text("id"))
        if order is not None:
            order.closed_at, order.closed_by, order.result = at, by, text("comment")
    elif action == "complaint.receive":
        ledger.complaints[text("id")] = Complaint(
            id=text("id"),
            what=text("what"),
            received_at=at,
            owner=by,
            who=text("who"),
            how=text("how"),
            where=text("where"),
        )
    elif action == "complaint.callback":
        complaint = ledger.complaints.get(text("id"))
        if complaint is not None:
            complaint.callback_at, complaint.callback_by = at, by
            complaint.result = text("comment")
    elif action == "incident.report":
        ledger.incidents.append(
            Incident(
                id=text("id"),
                title=text("title"),
                major=bool(body.get("major", False)),
                at=at,
                by=by,
                where=text("where"),
                details=text("details"),
                when=_opt_instant(body.get("when")),
                told=text("told"),
            )
        )
    elif action == "log.add":
        ledger.entries.append(
            LogEntry(
                day=dt.date.fromisoformat(text("date")),
                kind=text("kind"),
                text=text("text"),
                at=at,
                by=by,
                post=text("post"),
                follow_up=text("follow_up"),
                photo=text("photo"),
            )
        )
    elif action == "violation.waive":
        ledger.waivers.append(
            Waiver(
                text("rule"),
                text("subject"),
                dt.date.fromisoformat(text("date")),
                text("reason"),
                at,
                by,
            )
        )
    elif action == "review.write":
        ledger.reviews.append(Review(text("week"), text("text"), at, by))
    elif action == "handover.confirm":
        day = dt.date.fromisoformat(text("date"))
        ledger.confirmations.append(Confirmation(day, by, at, text("notes")))
