"""One console line per notification decided (`run`, `demo`), the URL masked."""

from __future__ import annotations

import datetime as dt
import logging

from gateway.notify.channels import mask
from gateway.notify.policy import Notice
from gateway.timeutil import iso

log = logging.getLogger("gateway.console")

_KINDS = {"raised": "✉ 通知", "reminder": "✉ 提醒", "closed": "✉ 关闭"}


def notice(n: Notice, tz: dt.tzinfo) -> None:
    """`10:10:00 ✉ 通知 raised stage 1 scan.unknown_credential gate-1 → chen mailto://…`."""
    log.info(
        "%s %s %s stage %d %s %s → %s %s",
        iso(n.at, tz)[11:19],
        _KINDS.get(n.kind, "✉"),
        n.kind,
        n.stage,
        n.alert.rule,
        n.alert.subject,
        ", ".join(n.people),
        mask(n.url),
    )
