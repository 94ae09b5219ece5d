"""Rotating signed QR codes (contract §3 `auth`): `credential~step~mac`, RFC 6238 style.

`step` is the number of 30-second steps since the epoch; `mac` is HMAC-SHA256 with the person's
secret over `credential~step` (UTF-8), cut to its first 16 bytes (RFC 2104 allows a truncation
to half the hash) and written in lower-case hex. A code is accepted within one step of the
scan's `ts`, so a screenshot stops working within about a minute.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass

STEP_SECONDS = 30
WINDOW_STEPS = 1  # ±1 step around the scan's time
MAC_BYTES = 16
_SIGNED = re.compile(r"^(?P<credential>.+)~(?P<step>[0-9]{1,12})~(?P<mac>[0-9A-Fa-f]{32})$")


@dataclass(frozen=True)
class SignedQr:
    """A QR text split into the person's plain credential and its proof."""

    credential: str
    step: int
    mac: str


def step_of(at: dt.datetime) -> int:
    """The 30-second step an instant falls in."""
    return int(at.timestamp()) // STEP_SECONDS


def mac(secret: bytes, credential: str, step: int) -> str:
    """The code's MAC: HMAC-SHA256 over `credential~step`, first 16 bytes, hex."""
    digest = hmac.new(secret, f"{credential}~{step}".encode(), hashlib.sha256).digest()
    return digest[:MAC_BYTES].hex()


def code(secret: bytes, credential: str, at: dt.datetime) -> str:
    """The text the person's phone shows at `at`."""
    step = step_of(at)
    return f"{credential}~{step}~{mac(secret, credential, step)}"


def parse(text: str) -> SignedQr | None:
    """The parts of a signed QR text, or None for a plain one."""
    found = _SIGNED.match(text)
    if found is None:
        return None
    return SignedQr(found["credential"], int(found["step"]), found["mac"].lower())


def verify(secret: bytes, signed: SignedQr, at: dt.datetime) -> str | None:
    """None when the code is genuine and of `at`'s time (±1 step); else what is wrong."""
    if not hmac.compare_digest(mac(secret, signed.credential, signed.step), signed.mac):
        return "wrong_mac"
    if abs(signed.step - step_of(at)) > WINDOW_STEPS:
        return "qr_step"
    return None
