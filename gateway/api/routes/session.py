"""Logging in from the page: a token becomes a session cookie (an EventSource sends no header)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Response, status

from gateway.api.auth import SESSION_COOKIE, Actor, actor_for, session_value
from gateway.api.deps import ActorDep, DeskDep, SiteDep, errors, unauthorized
from gateway.api.models import MayPublic, MePublic, SessionCreate
from gateway.config.models import Role
from gateway.config.site import Site

router = APIRouter(tags=["session"])


def me(site: Site, actor: Actor) -> MePublic:
    """Who the actor is and what the page may offer them."""
    from gateway.api.auth import ACT_ON_ANY_ALERT

    return MePublic(
        person=actor.person,
        name=actor.name,
        roles=sorted(actor.roles),
        may=MayPublic(
            ack_any=actor.has(*ACT_ON_ANY_ALERT),
            swap=actor.has(Role.admin),
            handover=actor.has(Role.duty_manager),
            signoff=actor.has(Role.duty_manager),
        ),
        locale=site.config.site.locale,
        site=site.id,
        site_name=site.name,
    )


@router.post("/session", responses=errors(401))
def login(body: SessionCreate, desk: DeskDep, site: SiteDep, response: Response) -> MePublic:
    """Turn a token into the page's session cookie (HttpOnly, SameSite=Strict)."""
    row = desk.reads.token(body.token)
    actor = None if row is None or not row.valid else actor_for(site, row.person, row.id)
    if row is None or actor is None:
        raise unauthorized("令牌无效或已撤销 / the token is not valid or was revoked")
    value, max_age = session_value(desk.session_key, row.id, dt.datetime.now(dt.UTC))
    response.set_cookie(
        SESSION_COOKIE, value, max_age=max_age, httponly=True, samesite="strict", path="/"
    )
    return me(site, actor)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
def logout(response: Response) -> None:
    """Forget the session cookie (the token itself stays valid until revoked)."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


@router.get("/me", responses=errors(401))
def whoami(actor: ActorDep, site: SiteDep) -> MePublic:
    """The person the token or session acts for, and what they may do."""
    return me(site, actor)
