"""Notification decisions (§9) on the project's own scenarios, line for line, and across restarts.

Each `tests/scenarios/*/NAME.notifications.jsonl` lists, worked out by hand from §9, who is told
of which alert at which stage and when; `replay --notifications` must print exactly those.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys

import pytest

from gateway.events import Message
from gateway.ingest.topics import Topics
from gateway.notify.policy import Notice
from gateway.pipeline import Pipeline
from gateway.replay import replay_decisions
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import parse_instant
from tests.support.scenarios import OWN, events, load

Line = tuple[str, str, str, int, str]
SECRETS = ("PASSWORD", "LITOKEN", "WANGKEY", "ROBOTTOKEN")


def cases() -> list[tuple[pathlib.Path, str]]:
    found = [
        (p.parent, p.name.removesuffix(".notifications.jsonl"))
        for p in sorted(OWN.glob("*/*.notifications.jsonl"))
    ]
    assert len(found) >= 5
    return found


def _line(at: str | dt.datetime, person: str, subject: str, stage: int, kind: str) -> Line:
    instant = at if isinstance(at, dt.datetime) else parse_instant(at, dt.UTC)
    return (instant.astimezone(dt.UTC).isoformat(), person, subject, stage, kind)


def expected(folder: pathlib.Path, name: str) -> list[Line]:
    text = (folder / f"{name}.notifications.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return sorted(_line(r["at"], r["notify"], r["subject"], r["stage"], r["kind"]) for r in rows)


def lines(notices: list[Notice]) -> list[Line]:
    return sorted(
        _line(n.at, p, n.alert.subject, n.stage, n.kind) for n in notices for p in n.people
    )


def decided(folder: pathlib.Path, name: str) -> list[Notice]:
    site = load(folder)
    return [n for n in replay_decisions(site, events(folder, name, site)) if isinstance(n, Notice)]


@pytest.mark.parametrize(("folder", "name"), cases(), ids=lambda c: getattr(c, "name", c))
def test_notification_lines_exactly(folder: pathlib.Path, name: str) -> None:
    """The escalation decides who is told, at which stage and when, exactly as §9 says: a wrong
    stage time, a missed ack, a shelve that does not hold, a roster-blind on_duty or a
    missing closing message each change a line."""
    assert lines(decided(folder, name)) == expected(folder, name)


def test_people_sharing_a_url_get_one_notification_naming_them_all() -> None:
    """Two engineers on one Feishu robot: one notice per stage naming both, not two messages."""
    notices = decided(OWN / "notify", "plant-room")
    robot = [n for n in notices if n.url.startswith("feishu://")]
    assert [n.people for n in robot] == [("eng1", "eng2"), ("eng1", "eng2")]


def test_cli_prints_one_masked_json_line_per_person_and_url(tmp_path: pathlib.Path) -> None:
    """`replay --notifications` prints the §9 line shape, secrets masked; without the flag,
    only the transitions (the acceptance checker's lines are unchanged)."""
    folder = OWN / "notify"
    args = [
        sys.executable, "-m", "gateway", "replay", "--config", str(folder / "site.yaml"),
        str(folder / "escalation-ack.jsonl"),
    ]  # fmt: skip
    plain = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert all("notify" not in json.loads(line) for line in plain.splitlines())
    out = subprocess.run(
        [*args, "--notifications"], capture_output=True, text=True, check=True
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    notes = [r for r in rows if "notify" in r]
    assert len(notes) == len(expected(folder, "escalation-ack"))
    assert set(notes[0]) == {"notify", "url", "alert", "rule", "subject", "stage", "kind", "at"}
    opened = {r["subject"]: r["id"] for r in rows if r.get("change") == "opened"}
    assert all(r["alert"] == opened[r["subject"]] for r in notes)
    assert not [s for s in SECRETS if s in out]
    assert "mailto://chen:****@example.com" in out


def _run_with_restarts(site_folder: pathlib.Path, name: str, path: pathlib.Path) -> list[Notice]:
    """Feed a scenario as the worker does, committing and restarting after every line."""
    site = load(site_folder)
    recorded = events(site_folder, name, site)
    start = recorded[0].received_at
    assert start is not None
    out: list[Notice] = []
    for rec in recorded:
        store = SqliteStore(path)
        pipeline = Pipeline(site, Topics("estate", site.id), store, start)
        pipeline.restore(store.meta("fired_through"))
        assert rec.received_at is not None
        if rec.command is not None:
            pipeline.command(rec.command, rec.received_at)
        else:
            pipeline.handle(Message(rec.topic, rec.payload, rec.received_at, 1))
        pipeline.tick(rec.received_at)
        out += pipeline.take_notices()
        store.set_meta("fired_through", pipeline.mark())
        pipeline.before_commit()  # the escalation's state, as the worker writes it
        store.commit()
        store.close()
    return out


@pytest.mark.parametrize(("folder", "name"), cases(), ids=lambda c: getattr(c, "name", c))
def test_a_restart_neither_repeats_nor_skips_a_stage(
    tmp_path: pathlib.Path, folder: pathlib.Path, name: str
) -> None:
    """Restarted after every line (the policy's state and the deadlines' mark are kept with
    each commit), the same notifications are decided, each once; and the store holds each
    (alert, stage, repeat, kind, URL) once."""
    notices = _run_with_restarts(folder, name, tmp_path / "s.sqlite")
    assert lines(notices) == expected(folder, name)
    store = SqliteStore(tmp_path / "s.sqlite")
    rows = store.connection.execute("SELECT count(*) FROM notifications").fetchone()[0]
    store.close()
    assert rows == len(notices)
