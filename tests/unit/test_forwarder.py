"""The forwarder base (gateway/forward.py): bounded batches, and cheap retries while failing."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import gateway.forward as forward
from gateway.forward import DeliveryFailed, Forwarder
from gateway.store.sqlite import SqliteStore


class Numbers(Forwarder):
    """Forwards the numbers 1…N; the outside system refuses the first `failures` attempts."""

    batch_size = 100

    def __init__(self, path: pathlib.Path, total: int, failures: int) -> None:
        super().__init__(path, "numbers")
        self.total = total
        self.failures = failures
        self.attempts: list[int] = []  # the size of each batch tried
        self.delivered: list[int] = []

    def fetch(self, store: SqliteStore, after: int, limit: int) -> list[tuple[int, Any]]:
        return [(n, n) for n in range(after + 1, min(after + limit, self.total) + 1)]

    def deliver(self, rows: list[Any]) -> None:
        self.attempts.append(len(rows))
        if len(self.attempts) <= self.failures:
            raise DeliveryFailed("refused")
        self.delivered += rows


def test_retries_while_failing_are_small_probes_then_whole_batches(
    tmp_path: pathlib.Path, monkeypatch: Any
) -> None:
    """Prevents a down outside system from costing a whole batch of work at every retry (the
    answers' p99 doubled with InfluxDB down): after a failure each retry takes PROBE_ROWS
    rows; once one goes through, whole batches again; every row once, in order."""
    monkeypatch.setattr(forward, "BACKOFF_FIRST", 0.01)
    path = tmp_path / "s.sqlite"
    SqliteStore(path).close()
    numbers = Numbers(path, total=350, failures=3)
    numbers.start()
    deadline = time.monotonic() + 10
    while len(numbers.delivered) < 350 and time.monotonic() < deadline:
        time.sleep(0.01)
    numbers.stop()
    probe = forward.PROBE_ROWS
    assert numbers.attempts[:5] == [100, probe, probe, probe, 100]
    assert numbers.delivered == list(range(1, 351))
    assert numbers.counters["failures"] == 3
