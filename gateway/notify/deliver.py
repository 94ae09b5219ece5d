"""The notify forwarder: sends the committed notifications through apprise (§9).

Per URL, at most `rate_per_minute` messages in any 60 seconds (a sliding window: a token
bucket of the same size would let twice that through in one minute, and a DingTalk robot that
takes 20 a minute blocks the 21st). Over it, messages wait and go out merged into one digest
when the URL may take one again; criticals go first and lead every digest, and warnings alone
never use the last message of a minute, so a critical is never held behind them. A message that the
channel refuses is retried with a growing backoff for 24 h; every attempt is recorded with the
URL masked. A failing URL holds back only its own messages.
"""

from __future__ import annotations

import datetime as dt
import logging
import pathlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.config.site import Site
from gateway.forward import Forwarder
from gateway.notify import channels, outbox
from gateway.notify.links import link_key
from gateway.notify.message import Item, Text, Writer
from gateway.notify.outbox import Pending
from gateway.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

WINDOW = 60.0
Send = Callable[[str, str, str], channels.SendResult]


def _item(p: Pending) -> Item:
    record = p.record

    def t(key: str) -> dt.datetime | None:
        value = record.get(key)
        return None if value is None else dt.datetime.fromisoformat(str(value))

    raised = t("raised_at")
    return Item(
        kind=p.kind,
        stage=p.stage,
        severity=p.severity,
        alert_id=p.alert_id,
        message=str(record.get("message", "")),
        raised_at=raised if raised is not None else p.at,
        closed_at=t("cleared_at") or t("acknowledged_at") if p.kind == "closed" else None,
        people=p.people,
    )


class Notifier(Forwarder):
    """Sends pending notifications, oldest first, within each URL's rate."""

    batch_size = 1000

    def __init__(
        self,
        store_path: pathlib.Path,
        site: Site,
        clock: Callable[[], float] = time.time,
        send: Send = channels.send,
        backoff_first: float = 30.0,
        backoff_max: float = 3600.0,
    ) -> None:
        super().__init__(store_path, "notify")
        self.site = site
        self.clock = clock
        self.send = send
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self._sent: dict[str, deque[float]] = {}  # per URL: send times in the last minute
        self._writer: Writer | None = None
        self.failing: dict[str, str] = {}  # masked URL → the last failure, while failing
        self._held: set[int] = set()  # notifications that waited for the rate
        self._seeded = False  # the rate windows include the messages sent before a restart

    @property
    def rate(self) -> int:
        """Messages per URL in any 60 seconds."""
        return self.site.config.notify.rate_per_minute

    def replace_site(self, site: Site) -> None:
        """A reloaded site file (names, locale, rate, public URL) for the next messages."""
        self.site = site
        self._writer = None

    def fetch(self, store: SqliteStore, after: int, limit: int) -> list[tuple[int, Any]]:
        """Pending notifications due now (the cursor is not used: rows wait, retry, merge)."""
        return [(p.id, p) for p in outbox.due(store, self.clock(), limit)]

    def deliver(self, rows: list[Any]) -> None:
        """Send what each URL may take now; hold the rest. Never raises for one channel."""
        assert self.store is not None
        if self._writer is None:
            self._writer = Writer(self.site, link_key(self.store))
        if not self._seeded:
            # A restart must not reset the rate: count the last minute's messages again.
            self._seeded = True
            for at, url in outbox.recent_sends(self.store, self.clock() - WINDOW):
                self._sent.setdefault(url, deque()).append(at)
        by_url: dict[str, list[Pending]] = {}
        for p in rows:
            by_url.setdefault(p.url, []).append(p)
        for url, items in by_url.items():
            self._url(self.store, url, items)

    def _url(self, store: SqliteStore, url: str, items: list[Pending]) -> None:
        now = self.clock()
        sent = self._sent.setdefault(url, deque())
        while sent and sent[0] <= now - WINDOW:
            sent.popleft()
        free = self.rate - len(sent)
        # Warnings alone never take the last message of the minute: it is kept for a critical.
        if not any(p.critical for p in items):
            free -= min(1, self.rate - 1)
        if free <= 0:
            outbox.hold(store, items, sent[0] + WINDOW)
            self._held.update(p.id for p in items)
            self.counters["held"] += len(items)
            return
        items = sorted(items, key=lambda p: (not p.critical, p.id))
        if any(p.id in self._held for p in items):
            messages = [items]  # they waited for the rate: one digest, criticals first
        elif len(items) <= free:
            messages = [[p] for p in items]
        else:
            messages = [[p] for p in items[: free - 1]] + [items[free - 1 :]]
        self._held.difference_update(p.id for p in items)
        for index, message in enumerate(messages):
            sent.append(now)
            result = self._send(url, message, now)
            if result.ok:
                outbox.attempted(store, message, now, True, result.detail, None)
                self.counters["sent"] += len(message)
                self.counters["messages"] += 1
                if len(message) > 1:
                    self.counters["digests"] += 1
                if self.failing.pop(message[0].masked, None) is not None:
                    log.info("通知渠道恢复 / notify channel works again: %s", message[0].masked)
                continue
            attempts = max(p.attempts for p in message)
            retry = now + min(self.backoff_first * 2**attempts, self.backoff_max)
            outbox.attempted(store, message, now, False, result.detail, retry)
            self.counters["failed_attempts"] += 1
            masked = message[0].masked
            if masked not in self.failing:
                log.warning(
                    "通知发送失败，将重试 / notify to %s failed, retrying: %s",
                    masked,
                    result.detail,
                )
            self.failing[masked] = result.detail
            rest = [p for m in messages[index + 1 :] for p in m]
            if rest:
                outbox.hold(store, rest, retry)
            return

    def _send(self, url: str, items: list[Pending], now: float) -> channels.SendResult:
        assert self._writer is not None
        instant = dt.datetime.fromtimestamp(now, dt.UTC)
        markdown = channels.markdown(url)
        if len(items) == 1:
            text: Text = self._writer.one(_item(items[0]), instant, markdown)
        else:
            text = self._writer.digest([_item(p) for p in items], instant, markdown)
        return self.send(url, text.title, text.body)
