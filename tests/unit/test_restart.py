"""Restart safety: a gateway restarted mid-day rebuilds its rules from the store (issue 3, §5).

The restarts drive the real single writer, `gateway.worker.Worker`, through the in-memory link
twin (issue 7 §3), so what is proved is what `run` does, not a copy of its loop."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from gateway.config import Site, load_site
from gateway.events import Message
from gateway.ingest.memory import MemoryLink
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.replay import Recorded
from gateway.store.sqlite import SqliteStore
from gateway.worker import Submitted, Worker
from tests.support.scenarios import OWN, RULE_CHANGES, events, expected, load, own_cases

# Early warnings are on in a live worker and off in a replay (registry.build_rules): they are
# not in the hand-worked expectations.
EARLY_WARNINGS = {"patrol.hours_at_risk", "patrol.key_post_at_risk"}


def run(
    site: Site,
    events: list[Recorded],
    path: pathlib.Path,
    restarts: set[int],
    grace: dt.timedelta = dt.timedelta(0),
    warnings: bool = False,
) -> list[str]:
    """Feed the events one step each through the real `Worker` on a clock at each event's
    receive time (so it ticks `grace` behind it, as `run` does), closing the store and
    starting a new worker on it before each index in `restarts`; the stored transitions as
    `at id rule subject change`, without the early warnings unless `warnings`."""
    topics = Topics("estate", site.id)
    start = events[0].received_at
    assert start is not None
    now = [start]

    def fresh() -> tuple[SqliteStore, Worker, MemoryLink]:
        store = SqliteStore(path)
        link = MemoryLink()
        return store, Worker(site, store, link, topics, lambda: now[0], start, grace), link

    store, worker, link = fresh()
    for i, rec in enumerate(events):
        if i in restarts:
            store.close()
            store, worker, link = fresh()
        assert rec.received_at is not None
        now[0] = max(now[0], rec.received_at)
        if rec.command is not None:
            item = Submitted(rec.command)
            worker.step([], [item])
            assert item.wait(0) is not None
        else:
            msg = Message(rec.topic, rec.payload, rec.received_at, 1, False, i + 1)
            worker.step([msg])
            assert link.acked[-1].mid == i + 1  # stored and acknowledged
    now[0] += grace
    worker.step([])  # the last deadlines, up to the last message
    rows = [
        f"{t['at'].isoformat()} {t['alert_id']} {t['record']['rule']} "
        f"{t['record']['subject']} {t['change']}"
        for t in store.transitions()
        if t["change"] != "update" and (warnings or t["record"]["rule"] not in EARLY_WARNINGS)
    ]
    store.close()
    return rows


@pytest.mark.parametrize(("folder", "name"), own_cases(), ids=lambda c: getattr(c, "name", c))
@pytest.mark.parametrize(("every", "grace"), [(3, 0), (7, 0), (11, 0), (5, 2), (4, 120)])
def test_restarts_change_nothing(
    tmp_path: pathlib.Path, folder: pathlib.Path, name: str, every: int, grace: int
) -> None:
    """Restarting the worker every N messages gives the same stored transitions, ids included,
    each exactly once, also with a live grace (messages received within the grace before the
    mark count); on the project's own scenarios (the public one: tests/integration)."""
    site = load(folder)
    recorded = events(folder, name, site)
    delay = dt.timedelta(seconds=grace)
    baseline = run(site, recorded, tmp_path / "a.sqlite", set(), delay, warnings=True)
    rules = [line.split() for line in baseline]
    kept = [r for r in rules if r[2] not in EARLY_WARNINGS and r[-1] in RULE_CHANGES]
    assert len(kept) == len(expected(folder, name))
    # A short scenario (tests/scenarios/notify) is cut before its last line at the latest.
    cuts = set(range(min(every, len(recorded) - 1), len(recorded), every))
    assert cuts
    assert run(site, recorded, tmp_path / "b.sqlite", cuts, delay, warnings=True) == baseline


def test_restart_at_noon_knows_the_morning(tmp_path: pathlib.Path) -> None:
    """Restart at noon on 1 Dec (berlin/late-swap): ben's 65 patrol minutes of the morning,
    his signed key posts, the done handover and the overdue round all come back."""
    folder = OWN / "berlin"
    site = load(folder)
    recorded = events(folder, "late-swap", site)
    noon = dt.datetime(2026, 12, 1, 11, 0, tzinfo=dt.UTC)  # 12:00 in Berlin
    cut = next(i for i, e in enumerate(recorded) if e.received_at and e.received_at >= noon)
    path = tmp_path / "c.sqlite"
    before = run(site, recorded[:cut], path, set())
    store = SqliteStore(path)
    pipeline = Pipeline(
        site, Topics("estate", site.id), store, recorded[0].received_at or dt.datetime.min
    )
    pipeline.restore(noon.isoformat())
    status = pipeline.status()
    assert status is not None
    body = status
    store.close()
    assert body["duty_day"] == "2026-12-01"
    assert body["duty_manager"]["id"] == "ben"
    assert body["handover"]["state"] == "done"
    assert body["patrol"]["minutes"] == 65
    assert {p["post"] for p in body["key_posts"]["signed"]} == {"lobby", "roof"}
    assert [(r["post"], r["overdue"]) for r in body["rounds"]] == [("boiler", True)]
    assert any("round.missed boiler open" in line for line in before)


def test_message_received_within_the_grace_before_the_mark_survives_a_restart(
    tmp_path: pathlib.Path,
) -> None:
    """A check-in delivered late, just before a crash, still counts after the restart."""
    site = load_site(pathlib.Path(__file__).parents[2] / "gateway" / "sites" / "zcity.yaml")
    topics = Topics("estate", site.id)
    grace = dt.timedelta(seconds=120)
    start = dt.datetime(2026, 11, 27, 0, 0, tzinfo=dt.UTC)  # 08:00 local, a Friday: zhang-wei
    path = tmp_path / "s.sqlite"
    store = SqliteStore(path)
    pipeline = Pipeline(site, topics, store, start, grace=grace)
    received = dt.datetime(2026, 11, 27, 0, 59, 30, tzinfo=dt.UTC)  # 08:59:30
    body = {"credential": "04A224B1C23380", "method": "nfc", "seq": 1, "ts": "2026-11-27T08:50:00"}
    pipeline.handle(Message("estate/zcity/reader/mc-1/scan", json.dumps(body).encode(), received))
    pipeline.tick(received - grace)
    store.set_meta("fired_through", pipeline.mark())
    store.commit()
    store.close()

    store = SqliteStore(path)
    restarted = Pipeline(site, topics, store, start, grace=grace)
    restarted.restore(store.meta("fired_through"))
    rules = {t.alert.rule for t in restarted.tick(start + dt.timedelta(hours=2)).transitions}
    assert "duty.absent" not in rules
    store.close()
