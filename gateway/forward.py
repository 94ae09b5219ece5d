"""One way out: every side effect after a commit is read from the store by a forwarder.

A forwarder is a thread with its own store connection, a persistent cursor (the last row id it
delivered), a bounded batch, retry with growing backoff and counters. The worker only commits
and wakes it, so a slow or dead outside system never slows ingest and loses nothing: the
backlog waits in the store and survives a crash. (Telegraf's outputs work the same way: a
metric leaves the buffer only once the output has written it.)

`MqttAlerts` publishes alert records as retained messages (contract §2, §6). InfluxDB and the
notifications add forwarders of their own.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from gateway.events import Message
from gateway.ingest.render import Renderer
from gateway.store.sqlite import SqliteStore
from gateway.worker import Link

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
IDLE_SECONDS = 1.0
PROBE_ROWS = 10  # rows a retry sends while the outside system fails (then a whole batch again)


class DeliveryFailed(Exception):
    """The outside system did not take the batch; it is tried again after a backoff."""


class Forwarder(threading.Thread):
    """Delivers rows committed after its cursor, oldest first, in bounded batches."""

    batch_size = 500

    def __init__(self, store_path: pathlib.Path, cursor: str) -> None:
        super().__init__(name=f"forward-{cursor}", daemon=True)
        self.store_path = store_path
        self.cursor_name = cursor
        self.counters: Counter[str] = Counter()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._failing = False
        self.position = 0
        self.store: SqliteStore | None = None

    # -- what a forwarder implements ------------------------------------------------------------

    def fetch(self, store: SqliteStore, after: int, limit: int) -> list[tuple[int, Any]]:
        """Rows with an id above `after`, oldest first, at most `limit`: (id, row)."""
        raise NotImplementedError

    def deliver(self, rows: list[Any]) -> None:
        """Hand the rows to the outside system; raise DeliveryFailed (or any error) if it did not
        take them all."""
        raise NotImplementedError

    def housekeeping(self, store: SqliteStore) -> None:
        """Called between batches in the forwarder's thread (republish requests, say)."""

    # -- the loop ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something was committed: look now rather than at the next idle poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the batch in hand and stop."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        """Deliver until stopped; a failure waits a growing backoff and tries the same rows."""
        store = SqliteStore(self.store_path)
        self.store = store
        self.position = store.cursor(self.cursor_name)
        backoff = BACKOFF_FIRST
        try:
            while not self._stopping.is_set():
                self.housekeeping(store)
                # While the outside system fails, each retry is a small probe: rendering a whole
                # batch (5,000 InfluxDB lines) for a connection that is refused held the GIL
                # for tens of milliseconds at every retry, and the scan answers waited.
                limit = PROBE_ROWS if self._failing else self.batch_size
                rows = self.fetch(store, self.position, limit)
                store.commit()  # end the read transaction: the next fetch sees new commits
                if not rows:
                    self._wake.wait(IDLE_SECONDS)
                    self._wake.clear()
                    continue
                try:
                    self.deliver([row for _, row in rows])
                except Exception as exc:  # whatever the outside did, the rows stay in the store
                    self.counters["failures"] += 1
                    if not self._failing:
                        log.warning(
                            "转发失败，将重试 / forwarder %s failed, retrying with backoff: %s",
                            self.cursor_name,
                            exc,
                        )
                    self._failing = True
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                if self._failing:
                    log.info("转发恢复 / forwarder %s delivers again", self.cursor_name)
                self._failing = False
                backoff = BACKOFF_FIRST
                self.position = rows[-1][0]
                store.set_cursor(self.cursor_name, self.position)
                self.counters["delivered"] += len(rows)
        finally:
            store.close()


class MqttAlerts(Forwarder):
    """Retained `alert/{id}` records from the stored transitions (contract §2, §6).

    A batch is collapsed to each alert's latest record (a retained topic keeps only the last),
    published at QoS 1, and the cursor moves once the broker has confirmed every message.
    """

    CONFIRM_SECONDS = 10.0

    def __init__(
        self,
        store_path: pathlib.Path,
        link: Link,
        render: Renderer,
        connected: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(store_path, "mqtt_alerts")
        self.link = link
        self.render = render
        self.connected = connected
        self._republish = threading.Event()
        self._seen: deque[Message] = deque(maxlen=10_000)

    def fetch(self, store: SqliteStore, after: int, limit: int) -> list[tuple[int, Any]]:
        """Stored transitions after the cursor."""
        return [(int(t["id"]), t) for t in store.transitions(after, limit)]

    def deliver(self, rows: list[Any]) -> None:
        """Publish each alert's latest record and wait for the broker's confirmations."""
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            latest.pop(row["alert_id"], None)  # keep the order of the last change
            latest[row["alert_id"]] = row["record"]
        self._publish_all([self.render.alert_record(i, r) for i, r in latest.items()])

    def republish(self) -> None:
        """The broker lost our session (and perhaps its retained messages): every open alert
        again, from the store."""
        self._republish.set()
        self.wake()

    def seen_retained(self, msg: Message) -> None:
        """A message on an alert topic from someone else, or retained from before (network
        thread): housekeeping puts the store's record back if it differs."""
        self._seen.append(msg)
        self.wake()

    def housekeeping(self, store: SqliteStore) -> None:
        """Republish on request; clear retained alerts the store does not hold open, and put
        back the record of an open alert someone else changed or emptied (issue 13)."""
        if self._republish.is_set():
            self._republish.clear()
            try:
                self._publish_all([self.render.alert(a) for a in store.alerts(open_only=True)])
            except DeliveryFailed:
                self._republish.set()
        stale, healed = [], []
        while self._seen:
            msg = self._seen.popleft()
            ident = msg.topic.rsplit("/", 1)[-1]
            alert = store.alert(ident)
            if alert is None or alert.state == "closed":
                if msg.payload:
                    stale.append(self.render.alert_record(ident, None))
                continue
            ours = self.render.alert(alert)
            if msg.payload != ours.payload:
                healed.append(ours)
        store.commit()
        if healed:
            log.warning(
                "保留告警被他人更改，已恢复 / %d retained alerts changed by someone else: "
                "published again from the store",
                len(healed),
            )
            self.counters["healed"] += len(healed)
            with contextlib.suppress(DeliveryFailed):
                self._publish_all(healed)
        if stale:
            log.info(
                "清除 %d 条过期的保留告警 / clearing %d stale retained alerts",
                len(stale),
                len(stale),
            )
            self.counters["stale_cleared"] += len(stale)
            # If the broker is away, it sends its retained set again at the next connection.
            with contextlib.suppress(DeliveryFailed):
                self._publish_all(stale)

    def _publish_all(self, pubs: list[Any]) -> None:
        if not self.connected():
            raise DeliveryFailed("not connected to the broker")
        waits = []
        for pub in pubs:
            confirmed = self.link.publish(pub.topic, pub.payload, pub.qos, pub.retain)
            if confirmed is None:
                raise DeliveryFailed("the MQTT client's queue is full")
            waits.append(confirmed)
        deadline = time.monotonic() + self.CONFIRM_SECONDS
        while not all(done() for done in waits):
            if time.monotonic() > deadline or self._stopping.is_set():
                raise DeliveryFailed("the broker did not confirm the alerts in time")
            time.sleep(0.005)
        self.counters["published"] += len(pubs)
