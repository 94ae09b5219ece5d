"""Alerts (§6): list and filter, one with its history; acknowledge, comment, shelve.

Who may act (§10): a duty manager, the project head or the general manager on any alert; anyone
on an alert they were notified of. Every action goes through the worker, the single writer.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from gateway.api.auth import ACT_ON_ANY_ALERT, Actor
from gateway.api.deps import (
    ActorDep,
    DeskDep,
    SiteDep,
    aware,
    errors,
    field_error,
    forbidden,
    not_found,
    run_command,
)
from gateway.api.desk import Desk
from gateway.api.models import (
    AckCreate,
    AlertDetailPublic,
    AlertPublic,
    CommandPublic,
    CommentCreate,
    ShelveCreate,
)
from gateway.commands import MAX_SHELVE, Command

router = APIRouter(prefix="/alerts", tags=["alerts"])

StateFilter = Literal["open", "acknowledged", "closed", "active"]


@router.get("", responses=errors(401))
def list_alerts(
    desk: DeskDep,
    site: SiteDep,
    actor: ActorDep,
    state: Annotated[StateFilter | None, Query(description="active = not closed")] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[dt.datetime | None, Query(description="raised at or after")] = None,
    until: Annotated[dt.datetime | None, Query(description="raised before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AlertPublic]:
    """Alerts, newest first."""
    rows = desk.reads.alerts(
        state,
        rule,
        None if since is None else aware(since, site),
        None if until is None else aware(until, site),
        limit,
    )
    return [AlertPublic.model_validate(r) for r in rows]


def _existing(desk: Desk, ident: str) -> dict[str, object]:
    record = desk.reads.alert(ident)
    if record is None:
        raise not_found(f"未知告警 / no alert with id {ident!r}")
    return record


@router.get("/{alert_id}", responses=errors(401, 404))
def get_alert(alert_id: str, desk: DeskDep, site: SiteDep, actor: ActorDep) -> AlertDetailPublic:
    """One alert's record and every transition of it."""
    record = _existing(desk, alert_id)
    return AlertDetailPublic.model_validate(
        {**record, "history": desk.reads.alert_history(alert_id, site.tz)}
    )


def _may_act(desk: Desk, actor: Actor, alert_id: str) -> None:
    if actor.has(*ACT_ON_ANY_ALERT) or desk.notified(alert_id, actor.person):
        return
    raise forbidden(
        "只有值班经理、项目负责人、总经理或收到通知的人可以处理此告警 / only a duty manager, "
        "the project head, the general manager or someone notified of it may act on this alert"
    )


_ACT = errors(401, 403, 404, 409, 503)


@router.post("/{alert_id}/ack", responses=_ACT)
def acknowledge(
    alert_id: str, body: AckCreate, desk: DeskDep, site: SiteDep, actor: ActorDep
) -> CommandPublic:
    """Acknowledge (closes a rule that does not clear, §6)."""
    _existing(desk, alert_id)
    _may_act(desk, actor, alert_id)
    args = {"id": alert_id, "comment": body.comment}
    return run_command(desk, site, Command("alert.ack", actor.person, args))


@router.post("/{alert_id}/comment", responses=_ACT)
def comment(
    alert_id: str, body: CommentCreate, desk: DeskDep, site: SiteDep, actor: ActorDep
) -> CommandPublic:
    """Comment on an alert."""
    _existing(desk, alert_id)
    _may_act(desk, actor, alert_id)
    args = {"id": alert_id, "comment": body.comment}
    return run_command(desk, site, Command("alert.comment", actor.person, args))


@router.post("/{alert_id}/shelve", responses=_ACT)
def shelve(
    alert_id: str, body: ShelveCreate, desk: DeskDep, site: SiteDep, actor: ActorDep
) -> CommandPublic:
    """Shelve until an instant at most 24 h ahead: open, but no notification until then."""
    _existing(desk, alert_id)
    _may_act(desk, actor, alert_id)
    until = aware(body.until, site)
    now = desk.clock()
    if not now < until <= now + MAX_SHELVE:
        field_error("body", "until", "须在现在之后 24 小时内 / must be after now and within 24 h")
    args = {"id": alert_id, "until": until.isoformat(), "comment": body.comment}
    return run_command(desk, site, Command("alert.shelve", actor.person, args))
