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
from gateway.replay import Recorded
from gateway.store.sqlite import SqliteStore
from tests.support.scenarios import OWN, RULE_CHANGES, events, expected, load, own_cases


def run(
    site: Site,
    events: list[Recorded],
    path: pathlib.Path,
    restarts: set[int],
    grace: dt.timedelta = dt.timedelta(0),
) -> list[str]:
    """Feed the events like the live worker does (a tick `grace` behind after each message),
    restarting the pipeline before each index in `restarts`."""
    topics = Topics("estate", site.id)
    start = events[0].received_at
    assert start is not None

    def fresh(store: SqliteStore) -> Pipeline:
        return Pipeline(site, topics, store, start, live=False, grace=grace)

    store = SqliteStore(path)
    pipeline = fresh(store)
    out: list[Transition] = []
    for i, rec in enumerate(events):
        if i in restarts:
            store.set_meta("fired_through", pipeline.mark())
            store.commit()
            store.close()
            store = SqliteStore(path)
            pipeline = fresh(store)
            pipeline.restore(store.meta("fired_through"))
        assert rec.received_at is not None
        if rec.command is not None:  # a command line (§7): acks and shelves, say
            outcome = pipeline.command(rec.command, rec.received_at)
            out += [*outcome.before, *outcome.transitions]
        else:
            out += pipeline.handle(Message(rec.topic, rec.payload, rec.received_at, 1)).transitions
        out += pipeline.tick(rec.received_at - grace).transitions
    out += pipeline.tick(pipeline.engine.now).transitions
    store.close()
    return [
        f"{t.at.astimezone(dt.UTC).isoformat()} {t.alert.id} {t.alert.rule} {t.alert.subject} "
        f"{t.change}"
        for t in out
        if t.is_state_change
    ]


@pytest.mark.parametrize(("folder", "name"), own_cases(), ids=lambda c: getattr(c, "name", c))
@pytest.mark.parametrize(("every", "grace"), [(3, 0), (7, 0), (11, 0), (5, 2), (4, 120)])
def test_restarts_change_nothing(
    tmp_path: pathlib.Path, folder: pathlib.Path, name: str, every: int, grace: int
) -> None:
    """Restarting every N messages gives the same transitions, ids included, each exactly once,
    also with a live grace (messages received within the grace before the mark count); on
    the project's own scenarios (the public one: tests/integration)."""
    site = load(folder)
    recorded = events(folder, name, site)
    delay = dt.timedelta(seconds=grace)
    baseline = run(site, recorded, tmp_path / "a.sqlite", set(), delay)
    assert len([b for b in baseline if b.split()[-1] in RULE_CHANGES]) == len(
        expected(folder, name)
    )
    # A short scenario (tests/scenarios/notify) is cut before its last line at the latest.
    cuts = set(range(min(every, len(recorded) - 1), len(recorded), every))
    assert cuts
    assert run(site, recorded, tmp_path / "b.sqlite", cuts, delay) == baseline


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
