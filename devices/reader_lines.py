"""A line typed by an NFC or QR reader, turned into a contract scan (no port, no broker).

`classify_line` reads one line as a card UID or as QR text (the formats: docs/reader-bridge.md),
`parse_line` logs the lines it refuses; `gateway.payloads.scan` makes the contract §3 scan.
"""

from __future__ import annotations

import logging
import re
from typing import Literal

from gateway.config.models import normalize_uid
from gateway.ingest.decode import MAX_CREDENTIAL_CHARS

# The bridge's logger: every line `python -m devices.reader_bridge` logs carries one name.
log = logging.getLogger("devices.reader_bridge")

Method = Literal["nfc", "qr"]
DefaultMethod = Literal["auto", "nfc", "qr"]
_PREFIX = re.compile(r"(uid|nfc|qr)\s*[:=]\s*(.*)", re.IGNORECASE | re.DOTALL)


def classify_line(line: str, default_method: DefaultMethod = "auto") -> tuple[Method, str] | str:
    """`(method, credential)` for one line from a reader, or the reason it is not a scan.

    * `UID:`/`UID=`/`NFC:` + hex (any case, separators `:`/`-`/space) → nfc, upper-case hex.
    * `QR:`/`QR=` + text → qr, the text as it is (surrounding spaces removed).
    * a bare line: with `default_method="auto"`, 8–20 hex digits (even count, separators
      allowed: a 4-, 7- or 10-byte UID) → nfc, anything else → qr; `"nfc"` requires hex;
      `"qr"` takes the line as QR text.
    Control characters (NUL, STX/ETX framing, …) are dropped first; a line left empty is noise.
    """
    text = "".join(ch for ch in line.replace("\t", " ") if ch.isprintable()).strip()
    if not text:
        return "empty line (only spaces or control characters)"
    prefixed = _PREFIX.fullmatch(text)
    if prefixed is not None:
        kind, value = prefixed.group(1).lower(), prefixed.group(2).strip()
        method: Method = "qr" if kind == "qr" else "nfc"
    else:
        value = text
        uid = normalize_uid(text)
        if default_method == "auto":
            method = "nfc" if uid is not None and _uid_sized(uid) else "qr"
        else:
            method = default_method
    if not value:
        return f"{text!r}: nothing after the prefix"
    if method == "nfc":
        uid = normalize_uid(value)
        if uid is None:
            return f"{text[:60]!r}: a card UID must be hexadecimal (prefix QR: for QR text)"
        value = uid
    if len(value) > MAX_CREDENTIAL_CHARS:
        return f"{text[:60]!r}…: longer than {MAX_CREDENTIAL_CHARS} characters"
    return (method, value)


def parse_line(line: str, default_method: DefaultMethod = "auto") -> tuple[Method, str] | None:
    """`(method, credential)`, or None (with the reason logged) for reader noise."""
    result = classify_line(line, default_method)
    if isinstance(result, str):
        log.warning("忽略读卡器的一行 / ignored a reader line: %s", result)
        return None
    return result


def _uid_sized(uid: str) -> bool:
    return 8 <= len(uid) <= 20 and len(uid) % 2 == 0
