"""Who is asking (§10): a bearer token, or the page's session cookie made from one.

A session cookie is `{token id}.{expires}.{mac}`, an HMAC-SHA256 with a key the process draws at
start: the API writes nothing to log someone in, revoking the token ends its sessions at once
(the token is looked up on every request), and a restart ends every session (the page logs in
again with the token it keeps). The cookie is HttpOnly and SameSite=Strict, so another site
cannot make a browser act with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

from gateway.config.models import Role
from gateway.config.site import Site

SESSION_COOKIE = "patrol_session"
SESSION_TTL = dt.timedelta(hours=12)

# A duty manager, the project head or the general manager may act on any alert (§10).
ACT_ON_ANY_ALERT = frozenset({Role.duty_manager, Role.project_head, Role.general_manager})


@dataclass(frozen=True)
class Actor:
    """The person a request acts for, with their roles from the site file."""

    person: str
    name: str
    roles: frozenset[str]
    token_id: str | None  # None for an acknowledge link

    def has(self, *roles: str) -> bool:
        """Holds one of `roles`."""
        return any(r in self.roles for r in roles)


def actor_for(site: Site, person: str, token_id: str | None) -> Actor | None:
    """The actor for a person id of the site, or None if the site no longer has them."""
    who = site.people.get(person)
    if who is None:
        return None
    return Actor(person, who.name, frozenset(str(r) for r in who.roles), token_id)


def _mac(key: bytes, token_id: str, expires: int) -> str:
    return hmac.new(key, f"{token_id}|{expires}".encode(), hashlib.sha256).hexdigest()


def session_value(key: bytes, token_id: str, now: dt.datetime) -> tuple[str, int]:
    """A session cookie's value for a token, and its lifetime in seconds."""
    expires = int((now + SESSION_TTL).timestamp())
    return f"{token_id}.{expires}.{_mac(key, token_id, expires)}", int(SESSION_TTL.total_seconds())


def session_token_id(key: bytes, value: str, now: dt.datetime) -> str | None:
    """The token id a genuine, unexpired session cookie names, else None."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    token_id, expires_text, mac = parts
    expires = int(expires_text)
    if now.timestamp() > expires or not hmac.compare_digest(_mac(key, token_id, expires), mac):
        return None
    return token_id
