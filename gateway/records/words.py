"""Words and formats the reports share: names, times, rule titles, form numbers (6.x)."""

from __future__ import annotations

import datetime as dt

from gateway.config.site import Site

FORM_WORKORDER = "ZJWY/KF/BG-024"
FORM_COMPLAINT = "ZJWY/KF/BG-026"
FORM_INCIDENT = "ZJWY/KF/BG-027"

RULE_TITLES = {
    "duty.absent": "缺勤 / absent",
    "duty.unregistered_swap": "替班未登记 / unregistered swap",
    "handover.overdue": "交接逾期 / handover overdue",
    "patrol.hours_short": "巡检不足 / patrol short",
    "patrol.key_post_missed": "重点部位漏检 / key post missed",
    "patrol.hours_at_risk": "巡检时长预警 / patrol at risk",
    "patrol.key_post_at_risk": "重点部位预警 / key post at risk",
    "round.missed": "巡回超时 / round missed",
    "equipment.out_of_range": "设备超限 / out of range",
    "equipment.stale": "设备无读数 / equipment stale",
    "device.offline": "设备离线 / device offline",
    "scan.unknown_credential": "未登记卡 / unknown card",
    "incident.major": "重大事件 / major incident",
    "gateway.forward_lagging": "转发滞后 / forwarding lags",
    "workorder.overdue": "任务单逾期 / work order overdue",
}
LOG_KINDS = {
    "call": "来电 / call",
    "handover": "交接事项 / handover item",
    "caution": "注意事项 / caution",
    "finding": "巡检发现 / finding",
    "note": "备注 / note",
}
WEEKDAYS = ("一", "二", "三", "四", "五", "六", "日")


def name(site: Site, person: str | None) -> str:
    """A person's name (the id if unknown, a dash for nobody)."""
    if not person:
        return "—"
    who = site.people.get(person)
    return who.name if who else person


def post_name(site: Site, post: str) -> str:
    """A post's name (the id if unknown)."""
    found = site.posts.get(post)
    return found.name if found else post


def hm(site: Site, at: dt.datetime | None) -> str:
    """`09:12` in the site's time (a dash for none)."""
    return "—" if at is None else at.astimezone(site.tz).strftime("%H:%M")


def when(site: Site, at: dt.datetime | None) -> str:
    """`11-27 09:12` in the site's time (a dash for none)."""
    return "—" if at is None else at.astimezone(site.tz).strftime("%m-%d %H:%M")


def minutes(total: int) -> str:
    """`4:20` for 260 minutes."""
    return f"{total // 60}:{total % 60:02d}"


def day_label(day: dt.date) -> str:
    """`11-27 周五`."""
    return f"{day:%m-%d} 周{WEEKDAYS[day.weekday()]}"


def yuan(value: float) -> str:
    """`100` or `50.5`."""
    return f"{value:g}"


def rule_title(rule: str) -> str:
    """A rule's title for people."""
    return RULE_TITLES.get(rule, rule)
