"""The reports as titled tables, shared by the HTML, CSV and PDF renderers.

A report is a list of `Section`s (title, column headers, rows of text); the renderers only lay
them out, so the three formats always show the same figures.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from gateway.config.site import Site
from gateway.records import ledger
from gateway.records import words as w
from gateway.records.weekly import WeeklyPack
from gateway.records.worklog import WorkLog


@dataclass(frozen=True)
class Section:
    """One titled table; `key` names it in the CSV."""

    key: str
    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    note: str = ""


def _handover_word(late: bool, completed: dt.datetime | None, site: Site) -> str:
    """`按时 / on time, 完成 / done 08:25`, `逾期 / late, …`, or not done (yet)."""
    done = "未完成 / not done" if completed is None else f"完成 / done {w.hm(site, completed)}"
    if late:
        return f"逾期 / late, {done}"
    return done if completed is None else f"按时 / on time, {done}"


def weekly_title(pack: WeeklyPack, site: Site) -> str:
    """The pack's heading."""
    last = pack.monday + dt.timedelta(days=6)
    return (
        f"{site.name} 值班周报 / Weekly review pack {pack.week}"
        f"（{pack.monday:%Y-%m-%d} – {last:%m-%d}）"
    )


def weekly_sections(pack: WeeklyPack, site: Site) -> list[Section]:
    """Every table of the weekly pack, in the order people read them."""
    days = Section(
        "days",
        "每日概况 / Duty days",
        (
            "当值日 / day",
            "值班经理 / manager",
            "巡检 / patrol (h:mm)",
            "不足 / short",
            "漏检重点部位 / key posts missed",
            "缺勤·替班 / absences, swaps",
            "罚款 / fine (元)",
            "交接 / handover",
            "异常签到 / flagged",
        ),
    )
    for d in pack.days:
        violations = "；".join(
            f"{w.name(site, v.person)} {w.rule_title(v.rule).split(' / ')[0]}"
            + (" 已免罚 / waived" if v.waiver else "")
            for v in d.violations
        )
        manager = w.name(site, d.manager)
        if d.rostered and d.rostered != d.manager:
            manager += f"（轮值 {w.name(site, d.rostered)}）"
        handover = _handover_word(d.handover_late, d.handover_completed, site)
        days.rows.append(
            (
                w.day_label(d.day),
                manager,
                w.minutes(d.patrol_minutes),
                "是 / yes" if d.short else "",
                "、".join(d.key_missed),
                violations,
                w.yuan(d.fine_yuan) if d.fines else "0",
                handover,
                str(d.flagged),
            )
        )
    fines = Section(
        "fines",
        f"罚款 / Fines（每人每当值日一次 / once per person and duty day, "
        f"{w.yuan(pack.fine_yuan)} 元）",
        ("当值日 / day", "人员 / person", "违规 / violations", "元 / yuan"),
        [
            (
                w.day_label(f.day),
                w.name(site, f.person),
                "、".join(w.rule_title(r) for r in f.rules),
                w.yuan(f.yuan),
            )
            for f in pack.fines
        ],
        note=f"合计 / total {w.yuan(sum(f.yuan for f in pack.fines))} 元",
    )
    waived = Section(
        "waived",
        "已免罚 / Waived",
        ("当值日 / day", "人员 / person", "违规 / violation", "理由 / reason", "批准 / by"),
        [
            (
                w.day_label(v.date),
                w.name(site, v.subject)
                if v.subject in site.people
                else w.post_name(site, v.subject),
                w.rule_title(v.rule),
                v.reason,
                f"{w.name(site, v.by)} {w.when(site, v.at)}",
            )
            for v in pack.waived
        ],
    )
    alerts = Section(
        "alerts",
        "告警（按规则）/ Alerts by rule",
        (
            "规则 / rule",
            "触发 / raised",
            "已确认 / acknowledged",
            "平均确认用时 / mean to ack (min)",
            "最长 / max (min)",
        ),
        [
            (
                f"{r.rule} {w.rule_title(r.rule)}",
                str(r.raised),
                str(r.acknowledged),
                "—" if r.mean_minutes_to_ack is None else f"{r.mean_minutes_to_ack:.0f}",
                "—" if r.max_minutes_to_ack is None else f"{r.max_minutes_to_ack:.0f}",
            )
            for r in pack.by_rule
        ],
    )
    orders = Section(
        "workorders",
        f"未关闭工作任务单 / Work orders still open（{w.FORM_WORKORDER}）",
        ("编号 / id", "事项 / what", "部门 / department", "开单 / opened", "期限 / due"),
        [
            (
                o.id,
                o.title,
                o.department,
                f"{w.name(site, o.opened_by)} {w.when(site, o.opened_at)}",
                w.when(site, o.due),
            )
            for o in pack.workorders_open
        ],
        note=f"本周开单 / opened {pack.workorders_opened}，关闭 / closed {pack.workorders_closed}",
    )
    complaints = Section(
        "complaints",
        f"未回访投诉 / Complaints still open（{w.FORM_COMPLAINT}）",
        ("编号 / id", "投诉人 / from", "内容 / what", "受理 / taken by", "时间 / received"),
        [
            (c.id, c.who, c.what, w.name(site, c.owner), w.when(site, c.received_at))
            for c in pack.complaints_open
        ],
        note=(
            f"本周受理 / received {pack.complaints_received}，"
            f"回访 / called back {pack.complaints_called_back}"
        ),
    )
    incidents = Section(
        "incidents",
        f"事件报告 / Incidents（{w.FORM_INCIDENT}）",
        ("编号 / id", "事件 / what", "地点 / where", "重大 / major", "报告 / by"),
        [
            (
                i.id,
                i.title,
                i.where,
                "是 / yes" if i.major else "",
                f"{w.name(site, i.by)} {w.when(site, i.at)}",
            )
            for i in pack.incidents
        ],
    )
    flags = Section(
        "flags",
        "异常签到 / Flagged scans",
        ("标记 / flag", "次数 / count"),
        [(flag, str(n)) for flag, n in pack.flags.items()],
    )
    manual = Section(
        "manual",
        "手工补签 / Manual sign-offs",
        ("时间 / time", "岗位 / post", "人员 / person", "原因 / reason"),
        [
            (w.when(site, m.at), w.post_name(site, m.post), w.name(site, m.person), m.reason)
            for m in pack.manual
        ],
    )
    roster = Section(
        "roster",
        "轮值表 / Rotation roster",
        ("当值日 / day", "轮值 / rostered", "实际 / on duty", "替班登记 / swap registered"),
        [
            (
                w.day_label(r.day),
                w.name(site, r.rostered),
                w.name(site, r.manager),
                ""
                if r.swap_registered_at is None
                else w.when(site, r.swap_registered_at) + (" 逾期 / late" if r.swap_late else ""),
            )
            for r in pack.roster
        ],
    )
    reviews = Section(
        "reviews",
        "项目负责人批示 / The project head's review",
        ("周 / week", "批示 / review", "批示人 / by", "时间 / at"),
        [
            (r.week, r.text, w.name(site, r.by), w.when(site, r.at))
            for r in (pack.previous_review, pack.review)
            if r is not None
        ],
    )
    return [
        days,
        fines,
        waived,
        alerts,
        orders,
        complaints,
        incidents,
        flags,
        manual,
        roster,
        reviews,
    ]


def worklog_title(log: WorkLog, site: Site) -> str:
    """The work log's heading."""
    return f"{site.name} 值班经理工作日志 / Work log {log.day:%Y-%m-%d}（{w.day_label(log.day)}）"


def worklog_sections(log: WorkLog, site: Site) -> list[Section]:
    """Every table of the work log of one duty day."""
    h = log.handover
    summary = Section(
        "summary",
        "概况 / Summary",
        ("项目 / item", "内容 / value"),
        [
            ("值班经理 / duty manager", w.name(site, log.manager)),
            ("轮值 / rostered", w.name(site, log.rostered)),
            (
                "巡检 / patrol",
                f"{w.minutes(log.patrol_minutes)} / {w.minutes(log.required_minutes)}"
                + (" 不足 / short" if log.short else ""),
            ),
            (
                "巡检时段 / sessions",
                "，".join(f"{w.hm(site, a)}–{w.hm(site, b)}" for a, b in log.sessions),
            ),
            (
                "交班 / outgoing",
                f"{w.name(site, h.outgoing.person)} {w.hm(site, h.outgoing.at)} {h.outgoing.notes}",
            ),
            (
                "接班 / incoming",
                f"{w.name(site, h.incoming.person)} {w.hm(site, h.incoming.at)} {h.incoming.notes}",
            ),
            ("交接 / handover", _handover_word(h.overdue is not None, h.completed_at, site)),
        ],
    )
    keys = Section(
        "key_posts",
        "重点部位 / Key posts",
        ("岗位 / post", "签到 / signed"),
        [
            (k.name, w.hm(site, k.signed_at) if k.signed_at else "未检 / missed")
            for k in log.key_posts
        ],
    )
    signoffs = Section(
        "signoffs",
        "签到 / Sign-offs",
        ("时间 / time", "岗位 / post", "标记 / flags"),
        [(w.hm(site, s.time), w.post_name(site, s.post), " ".join(s.flags)) for s in log.signoffs],
    )
    entries = Section(
        "entries",
        "记录 / Entries",
        (
            "时间 / time",
            "类别 / kind",
            "内容 / text",
            "跟进 / follow-up",
            "岗位 / post",
            "记录人 / by",
            "照片 / photo",
        ),
        [
            (
                w.hm(site, e.at),
                w.LOG_KINDS.get(e.kind, e.kind),
                e.text,
                e.follow_up,
                w.post_name(site, e.post) if e.post else "",
                w.name(site, e.by),
                e.photo,
            )
            for e in log.entries
        ],
    )
    alerts = Section(
        "alerts",
        "告警及处理 / Alerts and their handling",
        ("时间 / raised", "规则 / rule", "内容 / message", "状态 / state", "处理 / handled by"),
        [
            (
                w.hm(site, a.raised_at),
                a.rule,
                a.message,
                a.state,
                ""
                if a.acknowledged_by is None
                else f"{w.name(site, a.acknowledged_by)} {w.when(site, a.acknowledged_at)}",
            )
            for a in log.alerts
        ],
    )
    orders = Section(
        "workorders",
        f"工作任务单 / Work orders（{w.FORM_WORKORDER}）",
        ("编号 / id", "事项 / what", "部门 / department", "期限 / due", "状态 / state"),
    )
    listed_orders: dict[str, ledger.WorkOrder] = {}
    for o in [*log.workorders_carried, *log.workorders_opened, *log.workorders_closed]:
        listed_orders.setdefault(o.id, o)
    for o in listed_orders.values():
        marks = []
        if o in log.workorders_carried:
            marks.append("复查 / re-check on patrol")
        if o in log.workorders_opened:
            marks.append(f"新开 / opened {w.hm(site, o.opened_at)}")
        if o.closed_at is not None and o.closed_at < log.end:
            marks.append(f"关闭 / closed {w.hm(site, o.closed_at)}: {o.result}")
        else:
            marks.append("未关闭 / open")
        orders.rows.append((o.id, o.title, o.department, w.when(site, o.due), "；".join(marks)))
    complaints = Section(
        "complaints",
        f"投诉 / Complaints（{w.FORM_COMPLAINT}）",
        (
            "编号 / id",
            "投诉人 / from",
            "方式 / how",
            "内容 / what",
            "受理 / owner",
            "回访 / callback",
        ),
    )
    listed: set[str] = set()
    for c in [*log.complaints_carried, *log.complaints_received, *log.complaints_called_back]:
        if c.id in listed:
            continue
        listed.add(c.id)
        callback = (
            "待回访 / open"
            if c.callback_at is None or c.callback_at >= log.end
            else f"{c.result} ({w.name(site, c.callback_by)} {w.when(site, c.callback_at)})"
        )
        complaints.rows.append((c.id, c.who, c.how, c.what, w.name(site, c.owner), callback))
    incidents = Section(
        "incidents",
        f"事件报告 / Incidents（{w.FORM_INCIDENT}）",
        ("编号 / id", "事件 / what", "地点 / where", "发生 / when", "通知 / told", "报告 / by"),
        [
            (
                i.id,
                i.title + (" [重大 / major]" if i.major else ""),
                i.where,
                w.when(site, i.when),
                i.told,
                f"{w.name(site, i.by)} {w.hm(site, i.at)}",
            )
            for i in log.incidents
        ],
    )
    flagged = Section(
        "flagged",
        "异常签到 / Flagged scans",
        ("时间 / time", "岗位 / post", "人员 / person", "标记 / flags"),
        [
            (
                w.hm(site, s.time),
                w.post_name(site, s.post),
                w.name(site, s.person),
                " ".join(s.flags),
            )
            for s in log.flagged
        ],
    )
    rounds = Section(
        "power_room",
        "配电室运行记录 / Plant-room rounds",
        ("时间 / time", "岗位 / post", "值班工 / engineer", "读数 / readings"),
        [
            (
                w.hm(site, r.at),
                w.post_name(site, r.post),
                w.name(site, r.person),
                "，".join(f"{k} {v:g}" for k, v in sorted(r.readings.items())),
            )
            for r in log.rounds
        ],
    )
    handover = Section(
        "next_handover",
        "交接事项 / For the next handover",
        ("事项 / item",),
        [(item,) for item in log.next_handover],
    )
    return [
        summary,
        keys,
        signoffs,
        entries,
        alerts,
        orders,
        complaints,
        incidents,
        flagged,
        rounds,
        handover,
    ]
