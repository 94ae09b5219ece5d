"""Signed acknowledge links (§9, §10): one person, one alert, 24 hours, no login.

A link carries `person`, `alert`, `expires` (epoch seconds) and `sig`, the HMAC-SHA256 of
`person|alert|expires` with the site's link key (`ack_link_key` in the store's meta, made when
the gateway starts; or in the secrets file, `{data}/secrets.yaml` or `PATROL_SECRETS`). The
notifier signs links with `make_ack_link` (through gateway/notify/links.py); the API checks
them with `verify_ack_link`. Without a key no link is accepted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import pathlib
from urllib.parse import urlencode

import yaml

LINK_TTL = dt.timedelta(hours=24)
KEY_NAME = "ack_link_key"


def secrets_file(data: pathlib.Path) -> pathlib.Path:
    """Where the secrets file is: `PATROL_SECRETS`, else `{data}/secrets.yaml` (§7)."""
    named = os.environ.get("PATROL_SECRETS")
    return pathlib.Path(named) if named else data / "secrets.yaml"


def load_link_key(data: pathlib.Path) -> bytes | None:
    """The link key: the store's (`ack_link_key` in its meta, made when the gateway starts, the
    one the notifier signs with), else the secrets file's (text of 16 characters or more)."""
    from gateway.store.sqlite import SqliteStore, find_store

    try:
        store = SqliteStore(find_store(data), readonly=True)
    except (FileNotFoundError, OSError):
        store = None
    if store is not None:
        try:
            text = store.meta(KEY_NAME)
        finally:
            store.close()
        if text:
            return bytes.fromhex(text)
    path = secrets_file(data)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    value = loaded.get(KEY_NAME) if isinstance(loaded, dict) else None
    if not isinstance(value, str) or len(value) < 16:
        return None
    return value.encode()


def sign(key: bytes, person: str, alert: str, expires: int) -> str:
    """The link's signature (hex)."""
    body = f"{person}|{alert}|{expires}".encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def make_ack_link(base_url: str, key: bytes, person: str, alert: str, now: dt.datetime) -> str:
    """The page's address that acknowledges `alert` as `person`, valid for 24 h from `now`."""
    expires = int((now + LINK_TTL).timestamp())
    query = urlencode(
        {"ack": alert, "p": person, "x": expires, "s": sign(key, person, alert, expires)}
    )
    return f"{base_url.rstrip('/')}/?{query}"


def verify_ack_link(
    key: bytes | None, person: str, alert: str, expires: int, sig: str, now: dt.datetime
) -> bool:
    """True for a link signed with `key` for this person and alert that has not expired."""
    if key is None or now.timestamp() > expires:
        return False
    if expires - now.timestamp() > LINK_TTL.total_seconds() + 60:
        return False  # no link lives longer than 24 h, whoever signed it
    return hmac.compare_digest(sign(key, person, alert, expires), sig)
