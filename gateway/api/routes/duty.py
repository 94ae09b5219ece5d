"""The duty: roster and swaps (4.4), handovers (4.8), incidents (4.2), manual sign-offs (§10)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, status

from gateway.api.deps import (
    ActorDep,
    AdminDep,
    DeskDep,
    DutyManagerDep,
    SiteDep,
    aware,
    errors,
    field_error,
    forbidden,
    run_command,
)
from gateway.api.models import (
    CommandPublic,
    HandoverConfirmCreate,
    HandoverPublic,
    IncidentCreate,
    IncidentPublic,
    RosterDayPublic,
    RosterPublic,
    SignoffCreate,
    SwapCreate,
    SwapPublic,
)
from gateway.commands import MANUAL_WINDOW, Command
from gateway.config.models import Role
from gateway.timeutil import iso

router = APIRouter(tags=["duty"])

WEEK_PATTERN = r"^\d{4}-W\d{2}$"


@router.get("/roster", responses=errors(401))
def roster(
    desk: DeskDep,
    site: SiteDep,
    actor: ActorDep,
    week: Annotated[str | None, Query(pattern=WEEK_PATTERN, description="2026-W48")] = None,
) -> RosterPublic:
    """The duty manager of each day of an ISO week (default: this one), swaps included."""
    now = desk.clock()
    if week is None:
        year, number, _ = site.calendar.day_of(now).isocalendar()
    else:
        year, number = int(week[:4]), int(week[6:])
    try:
        monday = dt.date.fromisocalendar(year, number, 1)
    except ValueError:
        field_error("query", "week", "没有这一周 / no such ISO week")
    book = desk.reads.roster(site, now)
    days = []
    for offset in range(7):
        day = monday + dt.timedelta(days=offset)
        swap = book.swap_in_effect(day, max(now, site.calendar.day_start(day)))
        manager = book.manager(day, max(now, site.calendar.day_start(day)))
        who = site.people.get(manager) if manager else None
        days.append(
            RosterDayPublic(
                date=day,
                rostered=book.rostered(day),
                manager=manager,
                manager_name=who.name if who else None,
                swap=None
                if swap is None
                else SwapPublic(
                    manager=swap.manager,
                    registered_at=iso(swap.registered_at, site.tz),
                    late=swap.registered_at > site.calendar.day_start(day),
                ),
            )
        )
    return RosterPublic(week=f"{year}-W{number:02d}", days=days)


@router.post("/roster/swaps", responses=errors(401, 403, 409, 503))
def register_swap(body: SwapCreate, desk: DeskDep, site: SiteDep, actor: AdminDep) -> CommandPublic:
    """Register a swap now (admin, 4.4): it takes effect from this moment (§4)."""
    if not site.has_role(body.manager, [Role.duty_manager]):
        field_error("body", "manager", "不是值班经理 / not a person with the duty_manager role")
    args = {"date": body.date.isoformat(), "manager": body.manager}
    return run_command(desk, site, Command("swap.register", actor.person, args))


@router.delete("/roster/swaps/{date}", responses=errors(401, 403, 409, 503))
def cancel_swap(date: dt.date, desk: DeskDep, site: SiteDep, actor: AdminDep) -> CommandPublic:
    """Cancel a swap before its duty day starts (admin)."""
    args = {"date": date.isoformat()}
    return run_command(desk, site, Command("swap.cancel", actor.person, args))


@router.get("/handovers/{date}", responses=errors(401))
def handover(date: dt.date, desk: DeskDep, site: SiteDep, actor: ActorDep) -> HandoverPublic:
    """The two managers of the handover into duty day `date`, and their confirmations."""
    book = desk.reads.roster(site, desk.clock())
    at = max(desk.clock(), site.calendar.day_start(date))
    rows = [
        {"by": r.actor, "at": iso(r.applied_at, site.tz), "notes": r.body.get("notes", "")}
        for r in desk.reads.commands(("handover.confirm",))
        if r.body.get("date") == date.isoformat()
    ]
    return HandoverPublic(
        date=date,
        outgoing=book.manager(date - dt.timedelta(days=1), at),
        incoming=book.manager(date, at),
        confirmations=rows,
    )


@router.post("/handovers/{date}/confirm", responses=errors(401, 403, 409, 503))
def confirm_handover(
    date: dt.date, body: HandoverConfirmCreate, desk: DeskDep, site: SiteDep, actor: ActorDep
) -> CommandPublic:
    """Confirm one's own side of the handover into `date`, with notes (4.8): it stands for
    that manager's scan at the handover post (§5 rule 3)."""
    if not actor.has(Role.duty_manager):
        raise forbidden("需要角色 / this needs the role duty_manager")
    now = desk.clock()
    book = desk.reads.roster(site, now)
    parties = {book.manager(date - dt.timedelta(days=1), now), book.manager(date, now)}
    if actor.person not in parties:
        raise forbidden(
            f"只有交接双方可以确认 / only the two managers of the handover into {date} may "
            "confirm their side of it"
        )
    args = {"date": date.isoformat(), "notes": body.notes}
    return run_command(desk, site, Command("handover.confirm", actor.person, args))


@router.get("/incidents", responses=errors(401))
def incidents(desk: DeskDep, site: SiteDep, actor: ActorDep) -> list[IncidentPublic]:
    """Incidents reported, newest first."""
    return [
        IncidentPublic(
            id=str(r.body.get("id", "")),
            title=str(r.body.get("title", "")),
            major=bool(r.body.get("major", False)),
            where=r.body.get("where"),
            details=r.body.get("details"),
            reported_by=r.actor,
            at=iso(r.applied_at, site.tz),
            when=None
            if r.body.get("when") is None
            else iso(dt.datetime.fromisoformat(r.body["when"]), site.tz),
            told=r.body.get("told"),
        )
        for r in desk.reads.commands(("incident.report",))
    ]


@router.post("/incidents", status_code=status.HTTP_201_CREATED, responses=errors(401, 409, 503))
def report_incident(
    body: IncidentCreate, desk: DeskDep, site: SiteDep, actor: ActorDep
) -> CommandPublic:
    """Report an incident (anyone of the site); `major` raises `incident.major` (4.2)."""
    args: dict[str, object] = {"title": body.title, "major": body.major}
    if body.where is not None:
        args["where"] = body.where
    if body.details is not None:
        args["details"] = body.details
    if body.when is not None:
        args["when"] = aware(body.when, site).isoformat()
    if body.told is not None:
        args["told"] = body.told
    return run_command(desk, site, Command("incident.report", actor.person, args))


@router.post("/signoffs", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 409, 503))
def manual_signoff(
    body: SignoffCreate, desk: DeskDep, site: SiteDep, actor: DutyManagerDep
) -> CommandPublic:
    """A duty manager's sign-off by hand when a post's reader is broken: stored as a scan
    with reader and method `manual`, flagged `manual`, and counted (§10)."""
    if body.post not in site.posts:
        field_error("body", "post", "未知岗位 / no such post in the site file")
    time = aware(body.time, site)
    now = desk.clock()
    if not now - MANUAL_WINDOW <= time <= now:
        field_error("body", "time", "须在最近一小时内 / must be within the last hour")
    args = {"post": body.post, "time": time.isoformat(), "reason": body.reason}
    return run_command(desk, site, Command("scan.manual", actor.person, args))
