"""The replay bench's time budget: it looks at the clock every thousand records, and counts them."""

from __future__ import annotations

from tests.bench import Budget


def test_budget_passes_every_record_in_order_and_counts_them() -> None:
    """A miscount would misstate the replay's events/s (2,500 is not a multiple of 1,000)."""
    budget = Budget(iter(range(2500)), seconds=3600)  # type: ignore[arg-type]
    assert list(budget) == list(range(2500))
    assert (budget.taken, budget.cut) == (2500, False)


def test_a_spent_budget_stops_and_says_so() -> None:
    """A slow replay is cut and reported as cut, with what was taken before the cut."""
    budget = Budget(iter(range(5000)), seconds=-1)  # type: ignore[arg-type]
    assert list(budget) == []
    assert (budget.taken, budget.cut) == (0, True)
