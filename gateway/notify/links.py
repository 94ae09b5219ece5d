"""Signed acknowledge links (§9, §10): valid 24 h, for one person and one alert only.

The key is a random secret kept in the store's meta (`ack_link_key`), made on first use, so the
gateway and the HTTP API of the same store agree on it without configuration.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import urllib.parse

from gateway.store.sqlite import SqliteStore

KEY_META = "ack_link_key"
VALID = dt.timedelta(hours=24)


def link_key(store: SqliteStore) -> bytes:
    """The store's signing key, made (and committed) on first use."""
    text = store.meta(KEY_META)
    if text is None:
        text = secrets.token_hex(32)
        store.set_meta(KEY_META, text)
        store.commit()
    return bytes.fromhex(text)


def _mac(key: bytes, person: str, alert_id: str, expires: int) -> str:
    message = f"ack|{person}|{alert_id}|{expires}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_ack_link(key: bytes, person: str, alert_id: str, expires: dt.datetime) -> str:
    """The query of an acknowledge link: `person=…&alert=…&expires=…&sig=…`."""
    stamp = int(expires.timestamp())
    return urllib.parse.urlencode(
        {
            "person": person,
            "alert": alert_id,
            "expires": stamp,
            "sig": _mac(key, person, alert_id, stamp),
        }
    )


def verify_ack_link(
    key: bytes, person: str, alert_id: str, expires: int, sig: str, now: dt.datetime
) -> bool:
    """True when the link was signed with `key` for this person and alert and has not expired."""
    if now.timestamp() > expires:
        return False
    return hmac.compare_digest(_mac(key, person, alert_id, expires), sig)


def ack_url(public_url: str, key: bytes, person: str, alert_id: str, now: dt.datetime) -> str:
    """The full link a person follows to acknowledge one alert without logging in."""
    query = sign_ack_link(key, person, alert_id, now + VALID)
    return f"{public_url}/ack?{query}"


def alert_url(public_url: str, alert_id: str) -> str:
    """The alert on the web page."""
    return f"{public_url}/alerts/{alert_id}"
