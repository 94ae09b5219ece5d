"""Restart safety: a gateway restarted mid-day rebuilds its rules from the store (issue 3, §5)."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from gateway.alerts import Transition
from gateway.config import Site, load_site
from gateway.events import Message
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.replay import Recorded, read_events
from gateway.store.sqlite import SqliteStore


def scenario(shared_dir: pathlib.Path) -> tuple[Site, list[Recorded]]:
    folder = shared_dir / "scenarios" / "zcity"
    site = load_site(folder / "site.yaml")
    with (folder / "two-days.jsonl").open(encoding="utf-8") as handle:
        return site, list(read_events(handle, site.tz))


def run(site: Site, events: list[Recorded], path: pathlib.Path, restarts: set[int]) -> list[str]:
    """Feed the events like the live worker does, restarting the pipeline before each index."""
    topics = Topics("estate", site.id)
    start = events[0].received_at
    assert start is not None
    store = SqliteStore(path)
    pipeline = Pipeline(site, topics, store, start)
    out: list[Transition] = []
    for i, rec in enumerate(events):
        if i in restarts:
            store.set_meta("fired_through", pipeline.mark())
            store.commit()
            store.close()
            store = SqliteStore(path)
            pipeline = Pipeline(site, topics, store, start)
            pipeline.restore_mark(str(store.meta("fired_through")))
        assert rec.received_at is not None
        out += pipeline.handle(Message(rec.topic, rec.payload, rec.received_at, 1)).transitions
    out += pipeline.tick(pipeline.engine.now).transitions
    store.close()
    return [
        f"{t.at.isoformat()} {t.alert.id} {t.alert.rule} {t.alert.subject} {t.change}"
        for t in out
        if t.is_state_change
    ]


@pytest.mark.parametrize("every", [4, 7, 333])
def test_restarts_change_nothing(
    shared_dir: pathlib.Path, tmp_path: pathlib.Path, every: int
) -> None:
    """Restarting every N messages gives the same transitions, ids included, each exactly once."""
    site, events = scenario(shared_dir)
    baseline = run(site, events, tmp_path / "a.sqlite", set())
    assert len(baseline) == 21
    restarted = run(site, events, tmp_path / "b.sqlite", set(range(every, len(events), every)))
    assert restarted == baseline


def test_restart_at_two_pm_knows_the_morning(
    shared_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """Restart at 14:00 on the 28th: morning patrol time, signed posts and handover come back."""
    site, events = scenario(shared_dir)
    cut = next(
        i
        for i, e in enumerate(events)
        if e.received_at and e.received_at >= dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
    )
    path = tmp_path / "c.sqlite"
    before = run(site, events[:cut], path, set())
    store = SqliteStore(path)
    pipeline = Pipeline(
        site, Topics("estate", site.id), store, events[0].received_at or dt.datetime.min
    )
    pipeline.restore(dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC))
    status = pipeline.status()
    assert status is not None

    body = json.loads(status.payload)
    assert body["duty_day"] == "2026-11-28"
    assert body["duty_manager"]["id"] == "li-na"
    assert body["handover"]["state"] == "done"
    assert body["patrol"]["minutes"] > 60
    assert {p["post"] for p in body["key_posts"]["signed"]} >= {"front-desk", "monitoring-center"}
    assert "model-home" in {p["post"] for p in body["key_posts"]["missing"]}
    store.close()
    assert any("duty.absent" in line for line in before)
