"""The record commands (§11, §7) applied by the single writer, and `workorder.overdue`."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from gateway.commands import CommandError, parse
from gateway.config import Site
from gateway.ingest.topics import Topics
from gateway.pipeline import CommandOutcome, Pipeline
from gateway.records import ledger
from gateway.store.sqlite import SqliteStore

TZ = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
TOPICS = Topics("estate", "zcity")


def apply(pipeline: Pipeline, at: dt.datetime, **body: object) -> CommandOutcome:
    return pipeline.command(parse(body, pipeline.site.tz), at)


def test_overdue_work_order_raises_at_its_due_time_and_clears_when_closed(zcity: Site) -> None:
    """§11: past its due time → workorder.overdue (warning, subject the id) at that instant;
    closing it clears the alert. A work order closed in time raises nothing."""
    p = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    due = T0 + dt.timedelta(hours=2)
    assert apply(
        p, T0, action="workorder.open", by="zhang-wei", id="WO-7", title="漏水", due=due.isoformat()
    ).ok
    assert apply(
        p, T0, action="workorder.open", by="zhang-wei", id="WO-8", title="灯", due=due.isoformat()
    ).ok
    assert apply(p, T0 + dt.timedelta(hours=1), action="workorder.close", by="li-na", id="WO-8").ok
    raised = [
        t
        for t in p.tick(due + dt.timedelta(minutes=1)).transitions
        if t.alert.rule == "workorder.overdue"
    ]
    assert [(t.change, t.alert.subject, t.at, t.alert.severity) for t in raised] == [
        ("open", "WO-7", due, "warning")
    ]
    closed = apply(
        p,
        due + dt.timedelta(hours=3),
        action="workorder.close",
        by="li-na",
        id="WO-7",
        comment="已修复",
    )
    assert [(t.change, t.alert.subject) for t in closed.transitions] == [("cleared", "WO-7")]


def test_an_open_work_order_older_than_the_restart_horizon_still_falls_due(
    zcity: Site, tmp_path: pathlib.Path
) -> None:
    """A restart reads back only two duty days for the duty rules; a work order opened a week
    earlier and due after the restart must still raise workorder.overdue."""
    path = tmp_path / "zcity.sqlite"
    store = SqliteStore(path)
    p = Pipeline(zcity, TOPICS, store, T0)
    due = T0 + dt.timedelta(days=7, hours=1)
    assert apply(
        p, T0, action="workorder.open", by="zhang-wei", id="WO-9", title="外墙", due=due.isoformat()
    ).ok
    later = T0 + dt.timedelta(days=7)
    p.tick(later)
    store.set_meta("fired_through", p.mark())
    store.commit()
    store.close()
    store = SqliteStore(path)
    again = Pipeline(zcity, TOPICS, store, T0)
    again.restore(store.meta("fired_through"))
    raised = [
        t.alert.subject for t in again.tick(due).transitions if t.alert.rule == "workorder.overdue"
    ]
    assert raised == ["WO-9"]


def test_work_order_commands_refuse_what_cannot_apply(zcity: Site) -> None:
    """An id opened twice, closing an unknown or closed order, a link to no alert: refused."""
    p = Pipeline(zcity, TOPICS, SqliteStore(), T0)
    assert apply(p, T0, action="workorder.open", by="zhang-wei", id="WO-1", title="x").ok
    again = apply(p, T0, action="workorder.open", by="zhang-wei", id="WO-1", title="y")
    assert not again.ok and "WO-1" in again.message
    assert not apply(p, T0, action="workorder.close", by="zhang-wei", id="WO-2").ok
    assert apply(p, T0, action="workorder.close", by="zhang-wei", id="WO-1").ok
    twice = apply(p, T0, action="workorder.close", by="zhang-wei", id="WO-1")
    assert not twice.ok and "closed" in twice.message
    linked = apply(p, T0, action="workorder.open", by="zhang-wei", title="x", alert="nope")
    assert not linked.ok and "nope" in linked.message


def test_complaint_is_owned_by_who_took_it_and_closed_by_the_callback(zcity: Site) -> None:
    """3.5, 4.7: the owner is the person who received it; one callback closes it."""
    store = SqliteStore()
    p = Pipeline(zcity, TOPICS, store, T0)
    got = apply(
        p, T0, action="complaint.receive", by="zhang-wei", what="噪音", who="业主", how="电话"
    )
    assert got.ok
    (complaint,) = ledger.load(store.connection).complaints.values()
    assert complaint.owner == "zhang-wei" and complaint.open_at(T0 + dt.timedelta(days=3))
    later = T0 + dt.timedelta(hours=5)
    assert apply(
        p, later, action="complaint.callback", by="li-na", id=complaint.id, comment="满意"
    ).ok
    (done,) = ledger.load(store.connection).complaints.values()
    assert (done.callback_by, done.callback_at, done.result) == ("li-na", later, "满意")
    assert not apply(
        p, later, action="complaint.callback", by="li-na", id=complaint.id, comment="x"
    ).ok
    assert not apply(p, later, action="complaint.callback", by="li-na", id="TS-0", comment="x").ok


def test_waivers_and_reviews_need_the_project_head(zcity: Site) -> None:
    """§10: only a project head waives and reviews; a waiver names a violation on record, once."""
    p = Pipeline(zcity, TOPICS, SqliteStore(), dt.datetime(2026, 11, 24, 8, 0, tzinfo=TZ))
    p.tick(dt.datetime(2026, 11, 24, 9, 0, tzinfo=TZ))  # li-na (Tue) is absent: duty.absent
    waive = {
        "action": "violation.waive",
        "rule": "duty.absent",
        "subject": "li-na",
        "date": "2026-11-24",
        "reason": "病假",
    }
    at = dt.datetime(2026, 11, 24, 10, 0, tzinfo=TZ)
    refused = apply(p, at, **waive, by="zhang-wei")
    assert not refused.ok and "project_head" in refused.message
    wrong_day = apply(p, at, **{**waive, "date": "2026-11-23"}, by="chen-jie")
    assert not wrong_day.ok
    not_a_violation = apply(p, at, **{**waive, "rule": "device.offline"}, by="chen-jie")
    assert not not_a_violation.ok
    assert apply(p, at, **waive, by="chen-jie").ok
    assert not apply(p, at, **waive, by="chen-jie").ok  # once
    assert not apply(p, at, action="review.write", by="zhang-wei", week="2026-W48", text="x").ok
    assert apply(p, at, action="review.write", by="chen-jie", week="2026-W48", text="好").ok


def test_parse_checks_the_new_fields(zcity: Site) -> None:
    """Bad kinds, weeks and instants are refused when parsed, naming the field."""
    with pytest.raises(CommandError, match="kind"):
        parse({"action": "log.add", "by": "zhang-wei", "kind": "gossip", "text": "x"}, zcity.tz)
    with pytest.raises(CommandError, match="week"):
        parse({"action": "review.write", "by": "chen-jie", "week": "48", "text": "x"}, zcity.tz)
    with pytest.raises(CommandError, match="due"):
        parse({"action": "workorder.open", "by": "chen-jie", "title": "x", "due": "soon"}, zcity.tz)
    opened = parse({"action": "workorder.open", "by": "chen-jie", "title": "x"}, zcity.tz)
    assert str(opened.args["id"]).startswith("WO-")


def test_log_entries_go_to_the_duty_day_of_their_time(zcity: Site) -> None:
    """An entry written at 02:00 belongs to the duty day that began the morning before."""
    store = SqliteStore()
    p = Pipeline(zcity, TOPICS, store, T0)
    night = dt.datetime(2026, 11, 24, 2, 0, tzinfo=TZ)
    assert apply(p, night, action="log.add", by="zhang-wei", kind="call", text="报警电话").ok
    (entry,) = ledger.load(store.connection).entries
    assert entry.day == dt.date(2026, 11, 23)
    assert not apply(
        p, night, action="log.add", by="zhang-wei", kind="finding", text="x", post="nowhere"
    ).ok


def test_replay_reads_record_commands(tmp_path: pathlib.Path) -> None:
    """§7: `workorder.open`, `workorder.close` and `violation.waive` are replay command lines;
    the simulated clock raises workorder.overdue at the due time and its closing clears it; a
    waiver by someone who is not a project head is refused on standard error."""
    from typer.testing import CliRunner

    from gateway.cli import app
    from tests.unit.conftest import SITES

    opened = {"action": "workorder.open", "by": "zhang-wei", "id": "WO-1", "title": "修门"}
    lines = [
        {
            "command": {**opened, "due": "2026-11-23T12:00:00+08:00"},
            "received_at": "2026-11-23T10:00:00+08:00",
        },
        {
            "command": {"action": "workorder.close", "by": "zhang-wei", "id": "WO-1"},
            "received_at": "2026-11-23T13:30:00+08:00",
        },
        {
            "command": {
                "action": "violation.waive",
                "by": "zhang-wei",
                "rule": "duty.absent",
                "subject": "zhang-wei",
                "date": "2026-11-23",
                "reason": "x",
            },
            "received_at": "2026-11-23T13:40:00+08:00",
        },
    ]
    result = CliRunner().invoke(
        app,
        ["replay", "--config", str(SITES / "zcity.yaml"), "-"],
        input="\n".join(map(json.dumps, lines)),
    )
    assert result.exit_code == 0, result.output
    rows = [
        (r["rule"], r["subject"], r["change"], r["at"])
        for r in map(json.loads, result.stdout.splitlines())
        if r["rule"] == "workorder.overdue"
    ]
    assert rows == [
        ("workorder.overdue", "WO-1", "opened", "2026-11-23T12:00:00+08:00"),
        ("workorder.overdue", "WO-1", "cleared", "2026-11-23T13:30:00+08:00"),
    ]
    assert "project_head" in result.stderr and "1 refused" in result.stderr
