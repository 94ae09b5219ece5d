"""Check and apply the record commands (§11) for the single writer (`Pipeline._apply`).

A record command changes no rule state except work orders, whose opening and closing the
`workorder.overdue` rule follows (`process` hands it the event). Everything else is the
command itself, stored by the pipeline with its actor and time; `ledger` reads it back.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Mapping

from gateway.alerts.book import Transition
from gateway.commands import Command, CommandError
from gateway.config.models import Role
from gateway.config.site import Site
from gateway.events import Event, WorkOrderClosed, WorkOrderOpened
from gateway.records import ledger

APPLIES = frozenset(
    {
        "workorder.open",
        "workorder.close",
        "complaint.receive",
        "complaint.callback",
        "log.add",
        "violation.waive",
        "review.write",
    }
)
# The violations of the duty manager system a project head may waive (4.4, 4.3, 4.8).
VIOLATIONS = (
    "duty.absent",
    "duty.unregistered_swap",
    "patrol.hours_short",
    "patrol.key_post_missed",
    "handover.overdue",
)

Process = Callable[[Event], list[Transition]]


def duty_day(
    site: Site, rule: str, subject: str, details: Mapping[str, object], raised: float
) -> dt.date:
    """The duty day a violation belongs to: its `details.date`, a subject that is a date, or
    the duty day it was raised in."""
    for text in (details.get("date"), subject):
        try:
            return dt.date.fromisoformat(str(text))
        except ValueError:
            continue
    return site.calendar.day_of(dt.datetime.fromtimestamp(raised, dt.UTC))


def apply(
    command: Command, at: dt.datetime, site: Site, db: sqlite3.Connection, process: Process
) -> tuple[list[Transition], str]:
    """Apply one record command at `at`; raise CommandError saying why it cannot apply."""
    action, args, by = command.action, command.args, command.by
    records = ledger.load(db)
    ident = str(args.get("id", ""))
    if action == "workorder.open":
        if ident in records.workorders:
            raise CommandError(f"工作任务单 {ident} 已存在 / work order {ident} exists already")
        alert = args.get("alert")
        if alert and db.execute("SELECT 1 FROM alerts WHERE id = ?", (alert,)).fetchone() is None:
            raise CommandError(f"未知告警 / no alert with id {alert!r}")
        due = command.instant("due") if "due" in args else None
        transitions = process(WorkOrderOpened(ident, due, str(args["title"]), at))
        return transitions, f"已开工作任务单 / work order {ident} opened"
    if action == "workorder.close":
        order = records.workorders.get(ident)
        if order is None:
            raise CommandError(f"未知工作任务单 / no work order {ident!r}")
        if order.closed_at is not None:
            raise CommandError(f"工作任务单 {ident} 已关闭 / work order {ident} is closed already")
        transitions = process(WorkOrderClosed(ident, at))
        return transitions, f"已关闭工作任务单 / work order {ident} closed"
    if action == "complaint.receive":
        if ident in records.complaints:
            raise CommandError(f"投诉 {ident} 已存在 / complaint {ident} exists already")
        return [], f"已登记投诉 / complaint {ident} received, owner {by}"
    if action == "complaint.callback":
        complaint = records.complaints.get(ident)
        if complaint is None:
            raise CommandError(f"未知投诉 / no complaint {ident!r}")
        if complaint.callback_at is not None:
            raise CommandError(f"投诉 {ident} 已回访 / complaint {ident} was called back already")
        return [], f"已回访 / complaint {ident} called back"
    if action == "log.add":
        post = args.get("post")
        if post and post not in site.posts:
            raise CommandError(f"未知岗位 / unknown post {post!r}")
        if "date" not in args:
            args["date"] = site.calendar.day_of(at).isoformat()
        return [], f"已记入工作日志 / entry added to the work log of {args['date']}"
    if not site.has_role(by, [Role.project_head]):
        raise CommandError(f"需要角色 / {action} needs the role project_head")
    if action == "review.write":
        return [], f"已批示 / review of {args['week']} recorded"
    _waive(command, site, db, records)
    return [], "已免罚 / violation waived"


def _waive(command: Command, site: Site, db: sqlite3.Connection, records: ledger.Ledger) -> None:
    rule, subject, day = str(command.args["rule"]), str(command.args["subject"]), command.date()
    if rule not in VIOLATIONS:
        raise CommandError(
            f"{rule} 不是可免罚的违规 / not a violation: one of {', '.join(VIOLATIONS)}"
        )
    found = any(
        duty_day(site, rule, subject, json.loads(details), raised) == day
        for details, raised in db.execute(
            "SELECT json_extract(record, '$.details'), raised_at FROM alerts"
            " WHERE rule = ? AND subject = ?",
            (rule, subject),
        )
    )
    if not found:
        raise CommandError(f"没有此违规 / no {rule} for {subject} on {day}")
    if records.waiver(rule, subject, day) is not None:
        raise CommandError(f"已免罚 / {rule} for {subject} on {day} is waived already")
