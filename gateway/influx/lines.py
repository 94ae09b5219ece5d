"""InfluxDB line protocol, written by hand so every re-send is byte for byte the same point.

`measurement,tag=v,tag=v field=1i,field="text" 1764500000123456789`: tags sorted by key (what
InfluxDB does itself), an empty tag left out (line protocol has no empty tag value), integers
with `i`, strings quoted. A float that is not finite has no line-protocol form and is left out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

Field = bool | int | float | str
NS_PER_US = 1_000
ID_SPREAD = 1_000_000  # §8: the row id modulo this, in nanoseconds, is added to the time

_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": " "})
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " "})


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _field(value: Field) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return _quote(value)


def timestamp_ns(seconds: float | dt.datetime, row_id: int = 0) -> int:
    """An instant in nanoseconds (to the microsecond), plus the row id's spread (§8).

    Rounding to the microsecond first makes the same stored float give the same integer at
    every re-send; the spread (< 1 ms) keeps two events of one instant two points.
    """
    if isinstance(seconds, dt.datetime):
        seconds = seconds.timestamp()
    return round(seconds * 1_000_000) * NS_PER_US + row_id % ID_SPREAD


def line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, Field], ns: int
) -> str | None:
    """One point in line protocol, or None when no field has a value."""
    body = ",".join(
        f"{k.translate(_TAG)}={v}"
        for k, v in ((k, _field(v)) for k, v in sorted(fields.items()))
        if v is not None
    )
    if not body:
        return None
    head = measurement.translate(_MEASUREMENT)
    for key, value in sorted(tags.items()):
        if value != "":
            head += f",{key.translate(_TAG)}={value.translate(_TAG)}"
    return f"{head} {body} {ns}"
