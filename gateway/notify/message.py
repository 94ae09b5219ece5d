"""The message people read (§9): in the site's locale, the site, what happened, since when, who
is asked to act, and a link. Markdown for the channels that render it, plain text elsewhere."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config.site import Site
from gateway.notify.links import ack_url, alert_url
from gateway.timeutil import iso

_WORDS = {
    "zh-CN": {
        "raised": "告警",
        "reminder": "提醒",
        "closed": "已关闭",
        "critical": "严重",
        "warning": "警告",
        "info": "提示",
        "site": "站点",
        "what": "事件",
        "since": "发生时间",
        "closed_at": "关闭时间",
        "act": "请处理",
        "told": "通知",
        "link": "查看",
        "ack": "确认",
        "stage": "第 {n} 级",
        "digest": "{n} 条通知（已合并，超出每分钟条数）",
    },
    "en": {
        "raised": "Alert",
        "reminder": "Reminder",
        "closed": "Closed",
        "critical": "critical",
        "warning": "warning",
        "info": "info",
        "site": "Site",
        "what": "What",
        "since": "Since",
        "closed_at": "Closed at",
        "act": "Asked to act",
        "told": "Told",
        "link": "Open",
        "ack": "Acknowledge",
        "stage": "stage {n}",
        "digest": "{n} notifications (merged: over the rate per minute)",
    },
}


@dataclass(frozen=True)
class Item:
    """What one notification says, before it is rendered for a channel."""

    kind: str
    stage: int
    severity: str
    alert_id: str
    message: str
    raised_at: dt.datetime
    closed_at: dt.datetime | None
    people: tuple[str, ...]


@dataclass(frozen=True)
class Text:
    """A rendered message."""

    title: str
    body: str


class Writer:
    """Renders items for a site; `key` signs the acknowledge links, `now` dates them."""

    def __init__(self, site: Site, key: bytes) -> None:
        self.site = site
        self.key = key
        self.words = _WORDS.get(site.config.site.locale, _WORDS["zh-CN"])

    def _when(self, instant: dt.datetime) -> str:
        return iso(instant, self.site.tz)[:16].replace("T", " ")

    def _names(self, people: Sequence[str]) -> str:
        found = (self.site.people.get(p) for p in people)
        return "、".join(p.name if p else i for p, i in zip(found, people, strict=True))

    def headline(self, item: Item) -> str:
        """`【告警·严重】配电室 1号变压器 …` — one line."""
        w = self.words
        stage = w["stage"].format(n=item.stage + 1) if item.kind == "reminder" else ""
        label = "·".join(x for x in (w[item.kind], w.get(item.severity, item.severity), stage) if x)
        return f"【{label}】{item.message}"

    def lines(self, item: Item, now: dt.datetime, markdown: bool) -> list[str]:
        """The body of one item: site, what, since when, who, links."""
        w = self.words
        b = "**" if markdown else ""
        out = [
            f"{b}{w['site']}{b}: {self.site.name}",
            f"{b}{w['what']}{b}: {item.message}",
            f"{b}{w['since']}{b}: {self._when(item.raised_at)}",
        ]
        if item.kind == "closed":
            if item.closed_at is not None:
                out.append(f"{b}{w['closed_at']}{b}: {self._when(item.closed_at)}")
            out.append(f"{b}{w['told']}{b}: {self._names(item.people)}")
        else:
            out.append(f"{b}{w['act']}{b}: {self._names(item.people)}")
        public = self.site.config.notify.public_url
        if public:
            out.append(f"{b}{w['link']}{b}: {alert_url(public, item.alert_id)}")
            if item.kind != "closed":
                for person in item.people:
                    link = ack_url(public, self.key, person, item.alert_id, now)
                    name = self._names([person])
                    out.append(f"{b}{w['ack']}{b} ({name}): {link}")
        return out

    def one(self, item: Item, now: dt.datetime, markdown: bool) -> Text:
        """A message for one notification."""
        title = self.headline(item)
        sep = "\n\n" if markdown else "\n"
        return Text(title, sep.join(self.lines(item, now, markdown)))

    def digest(self, items: Sequence[Item], now: dt.datetime, markdown: bool) -> Text:
        """Several notifications to one URL as one message, criticals first."""
        ordered = sorted(items, key=lambda i: i.severity != "critical")
        title = f"{self.site.name}: {self.words['digest'].format(n=len(items))}"
        sep = "\n\n" if markdown else "\n"
        parts = []
        for item in ordered:
            head = f"### {self.headline(item)}" if markdown else self.headline(item)
            parts.append(sep.join([head, *self.lines(item, now, markdown)]))
        return Text(title, ("\n\n---\n\n" if markdown else "\n\n").join(parts))
