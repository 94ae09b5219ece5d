"""Clocks the composition roots inject; rules never read one themselves."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass


def wall_clock() -> dt.datetime:
    """The real time."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ScaledClock:
    """Simulated time: `start` at the real instant `anchor` (epoch s), then `speed`× real time.

    Two processes given the same three values share one simulated time, so a gateway that is
    killed and restarted with them carries on where it was (the live restart test does this).
    """

    start: dt.datetime
    speed: float
    anchor: float

    def __call__(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(time.time() - self.anchor) * self.speed)
