"""Signed acknowledge links (§9, §10): valid 24 h, for one person and one alert only.

The key is a random secret kept in the store's meta (`ack_link_key`), made when the gateway
starts (or on first use), so the notifier that signs links and the HTTP API that verifies them
agree without configuration. The link's format and signature are `gateway/api/acklinks.py`'s
(the page at `/` reads `?ack=ALERT&p=PERSON&x=EXPIRES&s=SIG`); this module only adds the key.
"""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse

from gateway.api.acklinks import LINK_TTL, make_ack_link, sign
from gateway.api.acklinks import verify_ack_link as _verify
from gateway.store.sqlite import SqliteStore

KEY_META = "ack_link_key"
VALID = LINK_TTL


def link_key(store: SqliteStore) -> bytes:
    """The store's signing key, made (and committed) on first use."""
    text = store.meta(KEY_META)
    if text is None:
        text = secrets.token_hex(32)
        store.set_meta(KEY_META, text)
        store.commit()
    return bytes.fromhex(text)


def sign_ack_link(key: bytes, person: str, alert_id: str, expires: dt.datetime) -> str:
    """The query of an acknowledge link: `ack=…&p=…&x=…&s=…`."""
    stamp = int(expires.timestamp())
    return urllib.parse.urlencode(
        {"ack": alert_id, "p": person, "x": stamp, "s": sign(key, person, alert_id, stamp)}
    )


def verify_ack_link(
    key: bytes, person: str, alert_id: str, expires: int, sig: str, now: dt.datetime
) -> bool:
    """True when the link was signed with `key` for this person and alert and has not expired."""
    return _verify(key, person, alert_id, expires, sig, now)


def ack_url(public_url: str, key: bytes, person: str, alert_id: str, now: dt.datetime) -> str:
    """The full link a person follows to acknowledge one alert without logging in."""
    return make_ack_link(public_url, key, person, alert_id, now)


def alert_url(public_url: str, alert_id: str) -> str:
    """The duty desk page, where the alert is listed while it is open."""
    del alert_id  # the board lists every open alert; it has no page per alert
    return f"{public_url.rstrip('/')}/"
