"""Fewer full garbage collections during a long run of small events (docs/benchmarks.md).

Every message allocates a few dozen short-lived objects, and CPython's collector counts them: a
collection of the oldest generation walks every object alive (the site, the rules' tables, what
a replay remembers of its messages), which makes each message cost more the longer a run goes.
The short-lived objects need no cycle collection (reference counting frees them); the long-lived
ones are made once. So while a run goes on, what lived before it is set aside from the
collector (`gc.freeze`, after one collection: garbage set aside would be kept) and the oldest
generation is collected rarely; the young ones still are, so a cycle made by mistake is still
freed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# The young generation is collected after this many allocations (CPython's default is 700),
# the middle one every 10 young collections, the oldest every `OLDEST_EVERY` middle ones.
YOUNG_EVERY = 10_000
OLDEST_EVERY = 100


class _Runs:
    """How many runs are going, and the settings from before the first of them."""

    count = 0
    before: tuple[int, int, int] = (700, 10, 10)


@contextmanager
def long_run() -> Iterator[None]:
    """Collect the oldest generation rarely while the block runs; the settings come back when
    the last of the runs going at once ends (replays are generators: they may interleave)."""
    if _Runs.count == 0:
        _Runs.before = gc.get_threshold()
        # Garbage first (an earlier replay's rules and alerts, in cycles): frozen, it would
        # stay for the whole run, and a process replaying again and again would keep them all.
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_EVERY, 10, OLDEST_EVERY)
    _Runs.count += 1
    try:
        yield
    finally:
        _Runs.count -= 1
        if _Runs.count == 0:
            gc.set_threshold(*_Runs.before)
            gc.unfreeze()
