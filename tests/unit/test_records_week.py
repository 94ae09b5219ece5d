"""The weekly pack (§11, 3.7, 4.4) of a week of our own traffic, figure by figure.

The week is tests/support/week.py; every expected value below is worked out by hand from it.
The duty day runs 08:30 → 08:30, so a scan at 08:20 belongs to the day before: a patrol
"08:20–12:40" counts from 08:40 (240 min), "08:20–10:20" from 08:40 (100 min).
"""

from __future__ import annotations

import datetime as dt
import pathlib
import sqlite3

import pytest

from gateway.config import Site
from gateway.records import weekly, worklog
from gateway.records.source import Source
from gateway.store.sqlite import SqliteStore
from tests.support.week import TZ, local, week_w48


@pytest.fixture(scope="module")
def store(zcity: Site, tmp_path_factory: pytest.TempPathFactory) -> SqliteStore:
    path = tmp_path_factory.mktemp("week") / "zcity.sqlite"
    return week_w48().run(zcity, path)


@pytest.fixture(scope="module")
def pack(store: SqliteStore, zcity: Site) -> weekly.WeeklyPack:
    return weekly.build(Source(store.connection, zcity), "2026-W48")


def test_each_day_manager_patrol_and_key_posts(pack: weekly.WeeklyPack) -> None:
    """The per-day figures: a wrong duty-day boundary, a swap not applied, or patrol time
    counted past the duty day would change one of these."""
    rows = [
        (d.day.day, d.rostered, d.manager, d.patrol_minutes, d.short, d.key_missed)
        for d in pack.days
    ]
    assert rows == [
        (23, "zhang-wei", "zhang-wei", 240, False, []),  # 08:40–12:40: exactly the quota
        (24, "li-na", "li-na", 260, False, []),  # 09:40–14:00
        (25, "wang-fang", "wang-fang", 100, True, []),  # 08:40–10:20
        (26, "zhao-lei", "zhao-lei", 260, False, ["样板房"]),  # 08:50–13:10, no model home
        (27, "zhang-wei", "li-na", 260, False, []),  # the late swap; 08:55–13:15
        (28, "li-na", "li-na", 260, False, []),  # 10:00–14:20 (the manual sign-off inside)
        (29, "wang-fang", "zhao-lei", 240, False, []),  # the site file's swap; 08:40–12:40
    ]


def test_absences_swaps_and_fines_once_per_person_and_day(pack: weekly.WeeklyPack) -> None:
    """4.4: Tue's absence was waived (shown, not fined); Fri's late swap fines the rostered
    张伟; Sat's absence *and* unregistered swap fine 李娜 once, not twice."""
    violations = [
        (d.day.day, v.rule, v.person, v.waiver is not None) for d in pack.days for v in d.violations
    ]
    assert violations == [
        (24, "duty.absent", "li-na", True),
        (27, "duty.unregistered_swap", "zhang-wei", False),
        (28, "duty.absent", "li-na", False),
        (28, "duty.unregistered_swap", "li-na", False),
    ]
    assert [(f.day.day, f.person, f.yuan) for f in pack.fines] == [
        (27, "zhang-wei", 100),
        (28, "li-na", 100),
    ]
    assert [d.fine_yuan for d in pack.days] == [0, 0, 0, 0, 100, 100, 0]
    (waived,) = pack.waived
    assert (waived.rule, waived.subject, waived.date) == (
        "duty.absent",
        "li-na",
        local(24, "00:00").date(),
    )
    assert (waived.reason, waived.by) == ("家中急事，已事先电话告知", "chen-jie")


def test_handovers(pack: weekly.WeeklyPack) -> None:
    """Late on Tue (李娜 09:40), Thu (赵磊 reached the handover post 09:10) and Sat (10:00);
    on time otherwise, completed when the second manager signed."""
    got = [(d.day.day, d.handover_late, d.handover_completed) for d in pack.days]
    assert got == [
        (23, False, local(23, "08:25")),
        (24, True, local(24, "09:40")),
        (25, False, local(25, "08:25")),
        (26, True, local(26, "09:10")),
        (27, False, local(27, "08:55")),
        (28, True, local(28, "10:00")),
        (29, False, local(29, "08:25")),
    ]


def test_alerts_by_rule_and_time_to_acknowledge(pack: weekly.WeeklyPack) -> None:
    """Alerts raised in the week's duty days: the stale alerts of 08:25 Monday belong to the
    Sunday before (the duty day starts 08:30); tx-1 goes stale again at 10:05 after its one
    reading at 09:55. Acknowledged: the absence after 20 min, the short patrol after 30, the
    missed key post after 10."""
    got = {
        r.rule: (r.raised, r.acknowledged, r.mean_minutes_to_ack, r.max_minutes_to_ack)
        for r in pack.by_rule
    }
    assert got == {
        "duty.absent": (2, 1, 20.0, 20.0),
        "duty.unregistered_swap": (2, 0, None, None),
        "equipment.stale": (1, 0, None, None),
        "handover.overdue": (3, 0, None, None),
        "patrol.hours_short": (1, 1, 30.0, 30.0),
        "patrol.key_post_missed": (1, 1, 10.0, 10.0),
        "round.missed": (2, 0, None, None),  # power room 12:00 (round at 10:00), generator 12:15
        "workorder.overdue": (1, 0, None, None),
    }


def test_open_work_orders_complaints_flags_and_reviews(pack: weekly.WeeklyPack) -> None:
    """What is still open when the week ends, what was flagged, the reviews (3.7)."""
    assert [o.id for o in pack.workorders_open] == ["WO-2"]
    assert (pack.workorders_opened, pack.workorders_closed) == (2, 1)
    assert [c.id for c in pack.complaints_open] == ["TS-2"]
    assert (pack.complaints_received, pack.complaints_called_back) == (2, 1)
    assert [i.id for i in pack.incidents] == ["IR-1"]
    assert pack.flags == {"duplicate_tap": 1, "manual": 1}
    (manual,) = pack.manual
    assert (manual.post, manual.person, manual.at) == ("model-home", "li-na", local(28, "10:50"))
    assert pack.previous_week == "2026-W47"
    assert pack.previous_review is not None
    assert pack.previous_review.text == "上周巡检记录完整，继续保持。"
    late = [(r.day.day, r.swap_late) for r in pack.roster if r.swap_registered_at is not None]
    assert late == [(27, True), (29, False)]


def test_the_review_shows_in_the_next_weeks_pack(store: SqliteStore, zcity: Site) -> None:
    """3.7: the project head's review of W48 is recorded against W48 and appears in W49's pack
    as last week's review, with its author and time."""
    nxt = weekly.build(Source(store.connection, zcity), "2026-W49")
    assert nxt.previous_week == "2026-W48"
    review = nxt.previous_review
    assert review is not None and review.by == "chen-jie"
    assert review.text.startswith("周三巡检不足")
    assert review.at == local(29, "20:00")
    # The work order still open carries into the next week's first duty day for re-check.
    monday = worklog.build(Source(store.connection, zcity), dt.date(2026, 11, 30))
    assert [o.id for o in monday.workorders_carried] == ["WO-2"]


def test_work_log_of_a_day(store: SqliteStore, zcity: Site) -> None:
    """The work log of Monday: sign-offs, handover names and times, entries, the carried-over
    work order marked for re-check on Tuesday, the power-room round with its reading."""
    source = Source(store.connection, zcity)
    mon = worklog.build(source, dt.date(2026, 11, 23))
    assert (mon.handover.outgoing.person, mon.handover.outgoing.at) == (
        "wang-fang",
        local(23, "08:25"),
    )
    assert (mon.handover.incoming.person, mon.handover.incoming.at) == (
        "zhang-wei",
        local(23, "08:20"),
    )
    assert [k.signed_at.astimezone(TZ).strftime("%H:%M") for k in mon.key_posts if k.signed_at] == [
        "08:40",
        "10:00",
        "09:00",
        "09:20",
        "09:40",
    ]
    assert [(e.kind, e.text) for e in mon.entries] == [
        ("call", "3栋业主来电：电梯异响"),
        ("handover", "东门道闸待修，注意人工放行"),
    ]
    assert [o.id for o in mon.workorders_opened] == ["WO-1"]
    assert mon.next_handover == ["工作任务单 WO-1：东门道闸不抬杆", "东门道闸待修，注意人工放行"]
    (round_,) = mon.rounds
    assert round_.person == "liu-qiang"
    assert round_.readings == {"tx-1.winding_temp_c": 68.5, "tx-1.load_pct": 61.0}
    tue = worklog.build(source, dt.date(2026, 11, 24))
    assert [o.id for o in tue.workorders_carried] == ["WO-1"]
    absent = [a for a in tue.alerts if a.rule == "duty.absent"]
    assert [(a.acknowledged_by, a.acknowledged_at) for a in absent] == [
        ("chen-jie", local(24, "09:20"))
    ]


def test_pack_reads_on_a_read_only_connection(store: SqliteStore, zcity: Site) -> None:
    """The reports run beside a running gateway: they must not need to write."""
    uri = pathlib.Path(store.path).resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        got = weekly.build(Source(db, zcity), "2026-W48")
    finally:
        db.close()
    assert [d.patrol_minutes for d in got.days] == [240, 260, 100, 260, 260, 260, 240]
