"""Patrol sessions (4.3, contract §5 rule 4): pure arithmetic over scan times."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable


def sessions(
    times: Iterable[dt.datetime], max_gap: dt.timedelta
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Split scan times into sessions where two consecutive scans are more than `max_gap` apart."""
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for t in sorted(times):
        if out and t - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], t)
        else:
            out.append((t, t))
    return out


def patrol_time(times: Iterable[dt.datetime], max_gap: dt.timedelta) -> dt.timedelta:
    """The sum of the sessions' lengths (first to last scan of each)."""
    return sum((end - start for start, end in sessions(times, max_gap)), dt.timedelta(0))
