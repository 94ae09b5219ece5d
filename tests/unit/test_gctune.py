"""`gctune.long_run`: the collector's settings during a replay, and back as they were after."""

from __future__ import annotations

import gc

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
