"""FastAPI dependencies: the desk, the actor (401), roles (403), command submission (409, 503).

Aliases (`DeskDep`, `ActorDep`, …) keep the routes free of `Depends(...)` plumbing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from gateway.api.auth import SESSION_COOKIE, Actor, actor_for, session_token_id
from gateway.api.desk import Desk
from gateway.api.models import CommandPublic
from gateway.commands import Command, CommandError, parse
from gateway.config.models import Role
from gateway.config.site import Site
from gateway.timeutil import iso


def get_desk(request: Request) -> Desk:
    """The desk the app was built with."""
    desk: Desk = request.app.state.desk
    return desk


DeskDep = Annotated[Desk, Depends(get_desk)]


def get_site(desk: DeskDep) -> Site:
    """The site as the gateway runs it now."""
    return desk.site()


SiteDep = Annotated[Site, Depends(get_site)]

_bearer = HTTPBearer(auto_error=False, description="a token from `patrol-gateway token issue`")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="the page's session (POST /session)"
)


def unauthorized(detail: str) -> HTTPException:
    """401 with the Bearer challenge."""
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_actor(
    desk: DeskDep,
    site: SiteDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    session: Annotated[str | None, Depends(_cookie)],
) -> Actor:
    """The person of a bearer token or a session cookie; 401 otherwise."""
    if bearer is not None:
        row = desk.reads.token(bearer.credentials)
    elif session:
        ident = session_token_id(desk.session_key, session, dt.datetime.now(dt.UTC))
        if ident is None:
            raise unauthorized("会话无效或已过期 / the session is not valid or has expired")
        row = desk.reads.token_by_id(ident)
    else:
        raise unauthorized("需要令牌 / a token is required (Authorization: Bearer TOKEN)")
    if row is None or not row.valid:
        raise unauthorized("令牌无效或已撤销 / the token is not valid or was revoked")
    actor = actor_for(site, row.person, row.id)
    if actor is None:
        raise unauthorized(f"令牌的人员已不在站点中 / {row.person} is no longer in the site file")
    return actor


ActorDep = Annotated[Actor, Depends(get_actor)]


def forbidden(detail: str) -> HTTPException:
    """403."""
    return HTTPException(status.HTTP_403_FORBIDDEN, detail)


def role(*roles: Role) -> Callable[[Actor], Actor]:
    """A dependency that lets through only holders of one of `roles` (403 otherwise)."""
    names = ", ".join(roles)

    def check(actor: ActorDep) -> Actor:
        if not actor.has(*roles):
            raise forbidden(f"需要角色 / this needs the role {names}")
        return actor

    return check


AdminDep = Annotated[Actor, Depends(role(Role.admin))]
DutyManagerDep = Annotated[Actor, Depends(role(Role.duty_manager))]


def not_found(detail: str) -> HTTPException:
    """404."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail)


def field_error(where: str, name: str, message: str) -> NoReturn:
    """A 422 that names the field, shaped like FastAPI's own validation errors."""
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": [where, name], "msg": message, "type": "value_error"}],
    )


def aware(value: dt.datetime, site: Site) -> dt.datetime:
    """An instant: one without an offset is site-local time (§1)."""
    return value.replace(tzinfo=site.tz) if value.tzinfo is None else value


def run_command(desk: Desk, site: Site, command: Command) -> CommandPublic:
    """Hand a command to the single writer and wait for its outcome (409 refused, 503 busy).

    The command is read back through `commands.parse`, as the command line's and a replay's
    are, so it is stored in the same shape (an incident gets its id there)."""
    try:
        command = parse(command.body(), site.tz)
    except CommandError as exc:
        field_error("body", command.action, str(exc))
    outcome = desk.submit(command).wait(desk.command_timeout)
    if outcome is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "网关繁忙，稍后再试 / the gateway did not apply it in time; it may still do so",
        )
    if not outcome.ok:
        raise HTTPException(status.HTTP_409_CONFLICT, outcome.message)
    alerts: list[dict[str, Any]] = [
        {**t.alert.to_json(site.tz), "change": t.change, "at": iso(t.at, site.tz)}
        for t in outcome.transitions
    ]
    return CommandPublic(
        ok=True, message=outcome.message, command_id=outcome.command_id, alerts=alerts
    )


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route may answer."""
    from gateway.api.models import ErrorPublic

    return {code: {"model": ErrorPublic} for code in codes}
