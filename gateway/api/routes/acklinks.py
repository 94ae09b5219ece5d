"""Acknowledge links from notifications (§9): one person, one alert, 24 h, without a login."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.api.acklinks import verify_ack_link
from gateway.api.deps import DeskDep, SiteDep, errors, not_found, run_command, unauthorized
from gateway.api.desk import Desk
from gateway.api.models import AckLinkCreate, AckLinkPublic, AlertPublic, CommandPublic
from gateway.commands import Command

router = APIRouter(prefix="/ack-link", tags=["alerts"])


def _check(desk: Desk, person: str, alert: str, expires: int, sig: str) -> None:
    if not verify_ack_link(desk.link_key, person, alert, expires, sig, desk.clock()):
        raise unauthorized("链接无效或已过期 / this link is not valid or has expired (24 h)")
    if person not in desk.site().people:
        raise unauthorized(f"链接的人员已不在站点中 / {person} is no longer in the site file")


@router.get("", responses=errors(401, 404))
def view(
    desk: DeskDep,
    site: SiteDep,
    alert: Annotated[str, Query(max_length=64)],
    person: Annotated[str, Query(max_length=64)],
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=128)],
) -> AckLinkPublic:
    """The alert a link is for, and whose link it is."""
    _check(desk, person, alert, expires, sig)
    record = desk.reads.alert(alert)
    if record is None:
        raise not_found(f"未知告警 / no alert with id {alert!r}")
    return AckLinkPublic(
        person=person, name=site.people[person].name, alert=AlertPublic.model_validate(record)
    )


@router.post("", responses=errors(401, 404, 409, 503))
def acknowledge(body: AckLinkCreate, desk: DeskDep, site: SiteDep) -> CommandPublic:
    """Acknowledge the link's alert as the link's person."""
    _check(desk, body.person, body.alert, body.expires, body.sig)
    if desk.reads.alert(body.alert) is None:
        raise not_found(f"未知告警 / no alert with id {body.alert!r}")
    args = {"id": body.alert, "comment": body.comment}
    return run_command(desk, site, Command("alert.ack", body.person, args))
