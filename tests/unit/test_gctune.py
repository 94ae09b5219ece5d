"""`gctune.long_run`: the collector's settings during a replay, and back as they were after."""

from __future__ import annotations

import gc
import weakref

from gateway import gctune


def test_settings_during_and_after_interleaved_runs() -> None:
    """Replays are generators and may interleave: the settings must hold until the last run
    ends and then come back as they were (a process left collecting rarely would grow, one
    set back too early would slow the other run)."""
    before = gc.get_threshold()
    tuned = (gctune.YOUNG_EVERY, 10, gctune.OLDEST_EVERY)
    first, second = gctune.long_run(), gctune.long_run()
    first.__enter__()
    assert gc.get_threshold() == tuned
    assert gc.get_freeze_count() > 0  # what existed before is set aside
    second.__enter__()
    first.__exit__(None, None, None)
    assert gc.get_threshold() == tuned  # the second run still goes
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_settings_come_back_after_a_failure() -> None:
    """A replay that fails (a bad file) must not leave the process tuned."""
    before = gc.get_threshold()
    try:
        with gctune.long_run():
            raise ValueError("the replay failed")
    except ValueError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


class _Node:
    me: _Node


def test_garbage_from_before_a_run_is_freed_not_set_aside() -> None:
    """A replay's rules and alerts end as garbage in cycles. Frozen by the next replay, they
    stayed for its whole run: a bench replaying five times grew by 70 MB a round, and slowed."""
    gc.disable()  # keep the cycle until the run starts, as a process between collections does
    try:
        node = _Node()
        node.me = node
        ref = weakref.ref(node)
        del node
        assert ref() is not None
        with gctune.long_run():
            assert ref() is None
    finally:
        gc.enable()
