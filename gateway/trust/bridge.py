"""The reader bridge's signature on a scan it stored while offline (contract §3 `auth.bridge`).

HMAC-SHA256 with the reader's bridge key over the scan's `credential`, `method`, `ts` and `seq`
exactly as sent, serialised as the compact JSON array `["04A2…","nfc","2026-…",1234]` (`null`
for an absent `ts` or `seq`), so the gateway checks the very values it received.
"""

from __future__ import annotations

import hashlib
import hmac
import json


def signed_text(credential: object, method: object, ts: object, seq: object) -> bytes:
    """The bytes the bridge MAC covers."""
    return json.dumps(
        [credential, method, ts, seq], separators=(",", ":"), ensure_ascii=False
    ).encode()


def mac(key: bytes, credential: object, method: object, ts: object, seq: object) -> str:
    """The bridge MAC in hex."""
    return hmac.new(key, signed_text(credential, method, ts, seq), hashlib.sha256).hexdigest()


def verify(key: bytes, text: bytes, given: str) -> bool:
    """True if `given` is the bridge MAC of `text` under `key`."""
    expected = hmac.new(key, text, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.lower())
