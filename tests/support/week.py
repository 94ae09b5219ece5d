"""A week of our own scenario traffic on the example site (2026-W48), for the records' tests.

Monday 23 to Sunday 29 November 2026, every time site-local (+08:00). Hand-computed figures
are in tests/unit/test_records_week.py; what happens each day:

* Mon 张伟: a good day (08:20–12:40 patrol, 260 min); handover from 王芳 at 08:25; a work order
  opened 10:00, due Tue 18:00, carried over and closed Thu 11:00 (overdue Tue 18:00 → Thu
  11:00); a call logged; a duplicate tap at the front desk; an engineer's round at the power
  room with a transformer reading; the project head's review of W47.
* Tue 李娜: absent (first scan 09:40): duty.absent and a late handover; the project head
  acknowledges the absence at 09:20 and later waives it; a complaint received 15:00.
* Wed 王芳: a short patrol day (08:20–10:20, 120 min); the complaint is called back 16:00;
  patrol.hours_short acknowledged 18:30.
* Thu 赵磊: checks in 08:50 at the front desk, reaches the handover post only 09:10 (late
  handover); never signs the model home (key post missed, acknowledged 18:10); an incident.
* Fri 张伟 → 李娜: the swap is registered 08:50, after the duty day began (late swap); 李娜
  patrols 08:55–13:15; a second work order, due next Tuesday, stays open.
* Sat 李娜: 王芳 stands in at the handover post 08:40 without a swap, 李娜 arrives 10:00:
  duty.absent and duty.unregistered_swap for 李娜 (one fine), late handover; a manual sign-off.
* Sun 赵磊 (the site file's swap, registered in advance): a good day; a complaint left open;
  the project head's review of W48.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import pathlib
from typing import Any

from gateway.commands import parse
from gateway.config import Site
from gateway.events import Message
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.store.sqlite import SqliteStore

TZ = dt.timezone(dt.timedelta(hours=8))
TOPICS = Topics("estate", "zcity")
CARDS = {
    "zhang-wei": "04A224B1C23380",
    "li-na": "04B1C2D3E4F501",
    "wang-fang": "04C3D4E5F60702",
    "zhao-lei": "04D4E5F6070803",
    "liu-qiang": "0411223344556A",
}
READER = {
    "front-desk": "fd-1",
    "monitoring-center": "mc-1",
    "gate-east": "ge-1",
    "gate-west": "gw-1",
    "model-home": "mh-1",
    "power-room": "pr-1",
}
KEY_POSTS = ("monitoring-center", "front-desk", "gate-east", "gate-west", "model-home")
START = dt.datetime(2026, 11, 23, 8, 15, tzinfo=TZ)
END = dt.datetime(2026, 11, 30, 8, 30, tzinfo=TZ)  # the end of Sunday's duty day

Item = tuple[dt.datetime, int, Any]  # (instant, order, Message or command dict)


def local(day: int, clock: str) -> dt.datetime:
    """An instant in November 2026, site-local."""
    hour, minute = map(int, clock.split(":"))
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=TZ)


class Week:
    """Collects the week's messages and commands, then runs them through a pipeline."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._n = itertools.count()

    def scan(self, person: str, post: str, at: dt.datetime) -> None:
        payload = {"credential": CARDS[person], "method": "nfc", "ts": at.isoformat()}
        topic = f"estate/zcity/reader/{READER[post]}/scan"
        self.items.append((at, next(self._n), Message(topic, json.dumps(payload).encode(), at, 1)))

    def reading(self, equipment: str, values: dict[str, float], at: dt.datetime) -> None:
        payload = {"values": values, "ts": at.isoformat()}
        topic = f"estate/zcity/equipment/{equipment}/reading"
        self.items.append((at, next(self._n), Message(topic, json.dumps(payload).encode(), at, 1)))

    def command(self, at: dt.datetime, **body: Any) -> None:
        self.items.append((at, next(self._n), body))

    def patrol(
        self, person: str, day: int, first: str, last: str, posts: tuple[str, ...] = KEY_POSTS
    ) -> None:
        """Scans every 20 minutes from `first` to `last`, going round `posts`."""
        at, end = local(day, first), local(day, last)
        for post in itertools.cycle(posts):
            if at > end:
                break
            self.scan(person, post, at)
            at += dt.timedelta(minutes=20)

    def run(self, site: Site, path: pathlib.Path) -> SqliteStore:
        """Run everything in time order through a pipeline on a store at `path`."""
        store = SqliteStore(path)
        pipeline = Pipeline(site, TOPICS, store, START)
        for at, _, item in sorted(self.items, key=lambda i: (i[0], i[1])):
            if isinstance(item, Message):
                pipeline.handle(item)
            else:
                outcome = pipeline.command(parse(item, site.tz), at)
                assert outcome.ok, (item, outcome.message)
        pipeline.tick(END)
        store.commit()
        return store


def week_w48() -> Week:
    """The week described in the module's docstring."""
    w = Week()
    # Mon 23: 张伟, a good day.
    w.scan("wang-fang", "monitoring-center", local(23, "08:25"))
    w.patrol("zhang-wei", 23, "08:20", "12:40")
    w.scan("zhang-wei", "front-desk", local(23, "08:40") + dt.timedelta(seconds=30))
    w.reading("tx-1", {"winding_temp_c": 68.5, "load_pct": 61.0}, local(23, "09:55"))
    w.scan("liu-qiang", "power-room", local(23, "10:00"))
    w.command(
        local(23, "10:00"),
        action="workorder.open",
        by="zhang-wei",
        id="WO-1",
        title="东门道闸不抬杆",
        department="工程部",
        where="东门",
        due=local(24, "18:00").isoformat(),
    )
    w.command(
        local(23, "10:05"),
        action="review.write",
        by="chen-jie",
        week="2026-W47",
        text="上周巡检记录完整，继续保持。",
    )
    w.command(
        local(23, "14:00"),
        action="log.add",
        by="zhang-wei",
        kind="call",
        text="3栋业主来电：电梯异响",
        follow_up="已通知电梯维保单位，16:00 到场",
    )
    w.command(
        local(23, "17:30"),
        action="log.add",
        by="zhang-wei",
        kind="handover",
        text="东门道闸待修，注意人工放行",
    )
    # Tue 24: 李娜 absent until 09:40; handover late.
    w.scan("zhang-wei", "monitoring-center", local(24, "08:25"))
    w.command(
        local(24, "09:20"),
        action="alert.ack",
        by="chen-jie",
        rule="duty.absent",
        subject="li-na",
        comment="已电话联系",
    )
    w.patrol("li-na", 24, "09:40", "14:00")
    w.command(
        local(24, "15:00"),
        action="complaint.receive",
        by="li-na",
        id="TS-1",
        who="3-1201 王先生",
        how="电话",
        what="地下车库照明不足",
        where="地下车库",
    )
    # Wed 25: 王芳, a short patrol day.
    w.scan("li-na", "monitoring-center", local(25, "08:25"))
    w.patrol("wang-fang", 25, "08:20", "10:20")
    w.command(
        local(25, "16:00"),
        action="complaint.callback",
        by="wang-fang",
        id="TS-1",
        comment="已加装照明，业主满意",
    )
    w.command(
        local(25, "18:30"),
        action="alert.ack",
        by="chen-jie",
        rule="patrol.hours_short",
        subject="wang-fang",
    )
    # Thu 26: 赵磊, late handover, the model home missed.
    w.scan("wang-fang", "monitoring-center", local(26, "08:25"))
    w.patrol(
        "zhao-lei",
        26,
        "08:50",
        "13:10",
        ("front-desk", "monitoring-center", "gate-east", "gate-west"),
    )
    w.command(
        local(26, "11:00"),
        action="workorder.close",
        by="zhao-lei",
        id="WO-1",
        comment="已更换道闸电机",
    )
    w.command(
        local(26, "16:00"),
        action="incident.report",
        by="zhao-lei",
        id="IR-1",
        title="地下车库积水",
        where="地下车库",
        told="工程部 何平",
        when=local(26, "15:40").isoformat(),
    )
    w.command(
        local(26, "18:10"),
        action="alert.ack",
        by="zhao-lei",
        rule="patrol.key_post_missed",
        subject="model-home",
    )
    # Fri 27: 张伟 → 李娜, a swap registered late.
    w.scan("zhao-lei", "monitoring-center", local(27, "08:25"))
    w.command(
        local(27, "08:50"),
        action="swap.register",
        by="chen-jie",
        date="2026-11-27",
        manager="li-na",
    )
    w.patrol("li-na", 27, "08:55", "13:15")
    w.command(
        local(27, "10:00"),
        action="workorder.open",
        by="li-na",
        id="WO-2",
        title="西门监控摄像头画面模糊",
        department="弱电",
        due=local(30, "18:00").isoformat(),
    )
    # Sat 28: 王芳 stands in without a swap; 李娜 from 10:00.
    w.scan("wang-fang", "monitoring-center", local(28, "08:40"))
    w.patrol(
        "li-na", 28, "10:00", "14:20", ("monitoring-center", "front-desk", "gate-east", "gate-west")
    )
    w.command(
        local(28, "11:00"),
        action="scan.manual",
        by="li-na",
        post="model-home",
        time=local(28, "10:50").isoformat(),
        reason="样板房读卡器故障",
    )
    # Sun 29: 赵磊 by the site file's swap.
    w.scan("li-na", "monitoring-center", local(29, "08:25"))
    w.patrol("zhao-lei", 29, "08:20", "12:40")
    w.command(
        local(29, "15:00"),
        action="complaint.receive",
        by="zhao-lei",
        id="TS-2",
        who="5-0802 李女士",
        how="来访",
        what="楼上装修噪音",
    )
    w.command(
        local(29, "19:00"),
        action="violation.waive",
        by="chen-jie",
        rule="duty.absent",
        subject="li-na",
        date="2026-11-24",
        reason="家中急事，已事先电话告知",
    )
    w.command(
        local(29, "20:00"),
        action="review.write",
        by="chen-jie",
        week="2026-W48",
        text="周三巡检不足，周六替班未登记，请各值班经理严格执行交接和替班登记制度。",
    )
    return w
