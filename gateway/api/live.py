"""What keeps every open page live: the patrol status as the worker publishes it, and one thread
that watches the store for new transitions, scans, readings and device statuses.

`StatusTap` sits between the worker and its MQTT link: it passes every publication on and keeps
the newest retained patrol status (§3), so the API shows exactly what displays receive. `Hub`
is the one watcher shared by every event stream: it looks at the store's newest row ids when
woken after a commit (and at least every half second), reads only what is new, and offers each
change to every subscriber. A subscriber that cannot keep up is told to reload the board
instead of being sent an unbounded backlog.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.api.queries import ReadSide
from gateway.config.site import Site
from gateway.store.read import Marks
from gateway.timeutil import iso
from gateway.worker import Link

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.5  # the longest a change waits before the board hears of it
MIN_GAP_SECONDS = 0.25  # at most four looks a second, however busy the worker is
SCANS_PER_LOOK = 20  # a burst of scans shows its newest ones, in one event
TRANSITIONS_PER_LOOK = 200  # more than this at once: subscribers reload the board


class StatusTap:
    """A `Link` that passes everything on and remembers the newest patrol status document."""

    def __init__(self, link: Link, topic: str, on_publish: Callable[[], None] = lambda: None):
        self.link = link
        self.topic = topic
        self.on_publish = on_publish
        self.document: dict[str, Any] | None = None
        self.version = 0

    def ack(self, msg: Any) -> None:
        """Acknowledge through the real link."""
        self.link.ack(msg)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Callable[[], bool] | None:
        """Publish through the real link; keep a patrol status; wake the board's watcher."""
        if topic == self.topic:
            self.document = json.loads(payload)
            self.version += 1
        result = self.link.publish(topic, payload, qos, retain)
        self.on_publish()
        return result

    def latest(self) -> dict[str, Any] | None:
        """The newest patrol status, or None before the first."""
        return self.document


def duty_until(site: Site, patrol: dict[str, Any] | None) -> str | None:
    """When the duty day of a patrol status ends (the next day's day_starts)."""
    if patrol is None or "duty_day" not in patrol:
        return None
    day = dt.date.fromisoformat(str(patrol["duty_day"]))
    return iso(site.calendar.day_start(day + dt.timedelta(days=1)), site.tz)


# `offer(kind, json_text)`; kinds: status, alert, scans, plant, devices, resync, end.
Offer = Callable[[str, str | None], None]


@dataclass
class _Subscriber:
    offer: Offer


@dataclass
class Hub:
    """One thread that follows the store and fans changes out to the event streams."""

    reads: ReadSide
    site: Callable[[], Site]
    status: Callable[[], tuple[int, dict[str, Any] | None]]
    clock: Callable[[], dt.datetime]
    _subscribers: list[_Subscriber] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _marks: Marks | None = None
    _status_version: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {"looks": 0, "events": 0})

    def start(self) -> None:
        """Start watching (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="api-board", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching; every stream is told to end."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sub in self.subscribers():
            sub.offer("end", None)

    def wake(self) -> None:
        """Something was committed: look now (cheap; called by the worker's thread)."""
        self._wake.set()

    def subscribe(self, offer: Offer, watch: bool = True) -> _Subscriber:
        """Receive every change from now on as `offer(kind, json_text)`; `watch=False` leaves the
        looking to the caller (`look()`), as a test does."""
        sub = _Subscriber(offer)
        with self._lock:
            self._subscribers.append(sub)
        if watch:
            self.start()
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        """Stop sending to `sub`."""
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def subscribers(self) -> list[_Subscriber]:
        """The current subscribers."""
        with self._lock:
            return list(self._subscribers)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.look()
            except Exception:  # a busy or briefly locked store: look again next time
                log.exception("看板读取失败 / the live board could not read the store")
            self._wake.wait(WATCH_SECONDS)
            self._wake.clear()
            self._stop.wait(MIN_GAP_SECONDS)

    def look(self) -> None:
        """Offer every subscriber what changed since the last look (the first look only notes
        where the store is: a new page gets the whole board from its stream first)."""
        if self._marks is None:
            self._marks = self.reads.marks()
            self._status_version = self.status()[0]
            return
        self._marks, self._status_version = self._changes(self._marks, self._status_version)

    def _changes(self, marks: Marks, status_version: int) -> tuple[Marks, int]:
        self.counters["looks"] += 1
        site = self.site()
        events: list[tuple[str, Any]] = []
        version, document = self.status()
        if version != status_version and document is not None:
            stamp = iso(self.clock(), site.tz)
            until = duty_until(site, document)
            events.append(("status", {"patrol": document, "duty_until": until, "now": stamp}))
        now = self.reads.marks()
        if now.transitions > marks.transitions:
            rows = self.reads.transitions_after(marks.transitions, TRANSITIONS_PER_LOOK + 1)
            if len(rows) > TRANSITIONS_PER_LOOK:
                events.append(("resync", None))
            else:
                events += [("alert", row) for _, row in rows]
            now = replace(now, transitions=max(now.transitions, rows[-1][0] if rows else 0))
        if now.scans > marks.scans:
            scans = self.reads.scans_after(site, marks.scans, SCANS_PER_LOOK)
            events.append(("scans", scans))
        if now.readings > marks.readings:
            events.append(("plant", self.reads.plant(site)))
        if now.devices > marks.devices:
            events.append(("devices", self.reads.devices(site)))
        for kind, data in events:
            # Serialised once here, not once per page: twenty pages cost one encoding.
            text = None if data is None else json.dumps(data, ensure_ascii=False)
            self.counters["events"] += 1
            for sub in self.subscribers():
                sub.offer(kind, text)
        return now, version
