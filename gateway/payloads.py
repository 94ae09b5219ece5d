"""The device → gateway payloads of contract §3, encoded in one place: scan, reading, status.

The gateway owns the contract's shapes (`gateway.ingest.decode` reads them); the reader bridge,
the meter poller, the simulator, the bench and the tests build what they publish here, so a
sender cannot drift from the decoder (style.md habit 7). JSON is compact UTF-8
(`separators=(",", ":")`, Chinese kept as is). An encoder refuses what the decoder would
refuse (a naive time, a bool or negative `seq`, a non-finite value) with `ValueError`: a device
must not send what the gateway cannot store. Tests that need hostile payloads build them by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict

from gateway.timeutil import iso

__all__ = [
    "Auth",
    "BridgeProof",
    "Instant",
    "Method",
    "ReadingBody",
    "ScanBody",
    "State",
    "SunProof",
    "encode",
    "reading",
    "reading_body",
    "scan",
    "scan_body",
    "status",
    "timestamp",
]

Method = Literal["nfc", "qr"]
State = Literal["online", "offline"]
# An event time: an aware datetime (sent as ISO 8601 with its offset) or epoch seconds (§1).
Instant = dt.datetime | int | float
Stamp = str | int | float  # an `Instant` as the payload carries it


class SunProof(TypedDict):
    """An NTAG 424 DNA tag's SUN message as the reader read it (hex)."""

    picc: str
    cmac: str


class BridgeProof(TypedDict):
    """The reader bridge's HMAC-SHA256 over a stored scan's credential, method, ts and seq."""

    mac: str


class Auth(TypedDict, total=False):
    """A scan's optional proof that the tap is genuine (§3 `auth`)."""

    sun: SunProof
    bridge: BridgeProof


class ScanBody(TypedDict):
    """A scan as JSON (§3); keys in the contract's order."""

    credential: str
    method: Method
    ts: NotRequired[Stamp]
    seq: NotRequired[int]
    auth: NotRequired[Auth]


class ReadingBody(TypedDict):
    """A reading as JSON (§3); keys in the contract's order."""

    ts: NotRequired[Stamp]
    values: dict[str, float | bool]
    seq: NotRequired[int]


def timestamp(ts: Instant) -> Stamp:
    """`ts` as a payload carries it: ISO 8601 with the datetime's own offset (to the second, or
    the millisecond when it has a fraction), or the epoch number unchanged."""
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"ts {ts.isoformat()} has no time zone: say whose local time it is")
        return iso(ts, ts.tzinfo)
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise ValueError(f"ts must be a datetime or epoch seconds, not {type(ts).__name__}")
    if not math.isfinite(ts):
        raise ValueError(f"ts {ts} is not a finite number")
    return ts


def scan_body(
    credential: str,
    method: Method,
    *,
    ts: Instant | None = None,
    seq: int | None = None,
    auth: Auth | None = None,
) -> ScanBody:
    """A scan (§3) as a JSON object; `ts`, `seq` and `auth` are left out when None."""
    if method not in ("nfc", "qr"):
        raise ValueError(f'method must be "nfc" or "qr", not {method!r}')
    if not credential.strip():
        raise ValueError("credential is empty")
    body: ScanBody = {"credential": credential, "method": method}
    if ts is not None:
        body["ts"] = timestamp(ts)
    if seq is not None:
        body["seq"] = _seq(seq)
    if auth is not None:
        body["auth"] = auth
    return body


def reading_body(
    values: Mapping[str, float | bool], *, ts: Instant | None = None, seq: int | None = None
) -> ReadingBody:
    """A reading (§3) as a JSON object: metric → number or boolean, at one instant."""
    if not values:
        raise ValueError("a reading needs at least one value")
    for name, value in values.items():
        if not isinstance(value, bool | int | float) or not math.isfinite(value):
            raise ValueError(f"metric {name!r}: {value!r} is not a finite number or a boolean")
    body: ReadingBody = (
        {"values": dict(values)} if ts is None else {"ts": timestamp(ts), "values": dict(values)}
    )
    if seq is not None:
        body["seq"] = _seq(seq)
    return body


def encode(body: ScanBody | ReadingBody) -> bytes:
    """A payload's JSON bytes: compact, UTF-8, Chinese kept, NaN refused."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def scan(
    credential: str,
    method: Method,
    *,
    ts: Instant | None = None,
    seq: int | None = None,
    auth: Auth | None = None,
) -> bytes:
    """A scan payload for `{root}/{site}/reader/{reader}/scan`."""
    return encode(scan_body(credential, method, ts=ts, seq=seq, auth=auth))


def reading(
    values: Mapping[str, float | bool], *, ts: Instant | None = None, seq: int | None = None
) -> bytes:
    """A reading payload for `{root}/{site}/equipment/{equipment}/reading`."""
    return encode(reading_body(values, ts=ts, seq=seq))


def status(state: State) -> bytes:
    """A device status for `{root}/{site}/device/{device}/status` (retained; the last will
    says `offline`): the plain text every broker tool shows as it is."""
    if state not in ("online", "offline"):
        raise ValueError(f'state must be "online" or "offline", not {state!r}')
    return state.encode()


def _seq(seq: int) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise ValueError(f"seq must be an integer from 0 to 2^63-1, not {seq!r}")
    return seq
