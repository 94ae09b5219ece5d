"""Fewer full garbage collections during a long run of small events (docs/benchmarks.md).

Every message allocates a few dozen short-lived objects, and CPython's collector counts them: a
collection of the oldest generation walks every object alive (the site, the rules' tables, what
a replay remembers of its messages), which makes each message cost more the longer a run goes.
The short-lived objects need no cycle collection (reference counting frees them); the long-lived
ones are made once. So while a run goes on, what existed before it is set aside from the
collector (`gc.freeze`) and the oldest generation is collected rarely; the young ones still are,
so a cycle made by mistake is still freed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# The young generation is collected after this many allocations (CPython's default is 700),
# the middle one every 10 young collections, the oldest every `OLDEST_EVERY` middle ones.
YOUNG_EVERY = 10_000
OLDEST_EVERY = 100


@contextmanager
def long_run() -> Iterator[None]:
    """Collect the oldest generation rarely while the block runs; restore the settings after."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG_EVERY, 10, OLDEST_EVERY)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
