"""What `run` says on its console: one readable line per alert transition, refusal and command,
times in the site's zone (issue 8 item 18). Lines go to the `gateway.console` logger."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

from gateway.alerts.book import Transition, change_word
from gateway.pipeline import CommandOutcome, Refusal
from gateway.timeutil import iso

log = logging.getLogger("gateway.console")

_MARKS = {
    "open": "▲ 告警",
    "cleared": "✓ 解除",
    "closed": "✓ 关闭",
    "acknowledged": "● 确认",
    "commented": "… 备注",
    "shelved": "‖ 搁置",
    "unshelved": "▶ 恢复",
}


def transition(t: Transition, tz: dt.tzinfo) -> None:
    """`09:12:03 ▲ 告警 opened device.offline gr-2 [warning] 设备 … (by chen-jie: …)`."""
    if t.change == "update":
        return
    alert = t.alert
    when = iso(t.at, tz)[11:19]
    who = "" if t.actor == "gateway" else f" (by {t.actor}{': ' + t.comment if t.comment else ''})"
    log.info(
        "%s %s %s %s %s [%s] %s%s",
        when,
        _MARKS.get(t.change, "·"),
        change_word(t.change),
        alert.rule,
        alert.subject,
        alert.severity,
        alert.message,
        who,
    )


def refusal(r: Refusal) -> None:
    """`拒收 / refused estate/…/scan: 字段错误 / ts: …`."""
    log.warning("拒收 / refused %s: %s", r.rejection.topic[:120], r.reason)


def command(outcome: CommandOutcome) -> None:
    """A command's result."""
    if outcome.ok:
        log.info("命令 / command: %s", outcome.message)
    else:
        log.warning("命令被拒绝 / command refused: %s", outcome.message)


def summary(counters: Mapping[str, int]) -> str:
    """One line: received, stored, refused, duplicates, alerts."""
    stored = counters.get("scan", 0) + counters.get("reading", 0) + counters.get("devicestatus", 0)
    return (
        f"收到 received {counters.get('received', 0)} · 存储 stored {stored} "
        f"(scans {counters.get('scan', 0)}, readings {counters.get('reading', 0)}, "
        f"statuses {counters.get('devicestatus', 0)}) · 拒收 refused "
        f"{counters.get('rejected', 0)} · 重复 duplicates {counters.get('duplicates', 0)} · "
        f"告警 alerts opened {counters.get('alert_open', 0)}, closed "
        f"{counters.get('alert_cleared', 0) + counters.get('alert_closed', 0)}"
    )
