"""The composition root of `patrol-gateway run`: site, store, MQTT link, pipeline, worker.

The worker thread owns the store and the engine. It takes a batch from the inbox, runs each
message through the pipeline, commits, and only then acknowledges the batch to the broker and
publishes the scan answers and alerts the batch produced.
"""

from __future__ import annotations

import datetime as dt
import logging
import pathlib
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from types import FrameType

from gateway.clock import ScaledClock, wall_clock
from gateway.config.site import Site
from gateway.events import Message
from gateway.ingest.inbox import Inbox
from gateway.ingest.mqtt import DEFAULT_MAX_PAYLOAD_BYTES, BrokerUrl, MqttLink
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline, Publication
from gateway.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

INBOX_SIZE = 10_000
BATCH_MAX = 500
# A deadline fires this long after its instant, so a scan stamped exactly at the deadline that
# is still in flight counts as on time (§5); the alert still carries the deadline instant.
DEADLINE_GRACE = dt.timedelta(seconds=2)
IDLE_WAIT_SECONDS = 0.25


class Gateway:
    """One site's gateway: start() returns once running; stop() drains, commits and says offline."""

    def __init__(
        self,
        site: Site,
        broker: BrokerUrl,
        data: pathlib.Path,
        root: str = "estate",
        clock: Clock = wall_clock,
        client_id: str | None = None,
        grace: dt.timedelta = DEADLINE_GRACE,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.site = site
        self.topics = Topics(root, site.id)
        self.clock = clock
        self.grace = grace  # in clock time: a fast demo clock needs a larger one
        self.store_path = data / f"{site.id}.sqlite"
        self.store = SqliteStore(self.store_path)
        started = self.store.meta("first_started_at")
        if started is None:
            started = clock().isoformat()
            self.store.set_meta("first_started_at", started)
            self.store.commit()
        self._start = dt.datetime.fromisoformat(started)
        # The last swap the rules have seen; later ones (registered on the command line while
        # the gateway was down, say) are fed in live with the first batch.
        self._swap_id = int(self.store.meta("swaps_through") or 0)
        self.pipeline = self._new_pipeline()
        self._republish = threading.Event()
        self.inbox = Inbox(INBOX_SIZE)
        self.link = MqttLink(
            broker,
            client_id or f"patrol-gateway-{site.id}",
            self.topics,
            self.inbox,
            clock,
            on_connected=self._on_connected,
            max_payload_bytes=max_payload_bytes,
        )
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="gateway-worker", daemon=True)
        self.dropped_publications = 0
        self._counters: dict[str, int] = {}  # a copy made by the worker: safe to read anywhere
        # Alert publications in flight: outbox id → "confirmed by the broker?".
        self._inflight: dict[int, Callable[[], bool]] = {}
        self._resend = True  # publish what a previous run left in the outbox
        self._mark = ""  # the fired-through mark last written

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and connect to the broker."""
        self._worker.start()
        self.link.start()

    def stop(self, drain_seconds: float = 5.0) -> None:
        """Finish what is queued (bounded), commit, acknowledge, say offline, disconnect."""
        deadline = time.monotonic() + drain_seconds
        while not self.inbox.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stopping.set()
        self._worker.join(timeout=drain_seconds + 5)
        self.link.stop()
        if self._worker.is_alive():
            log.error("工作线程未停止 / the worker did not stop; the store is left open")
        else:
            self.store.close()

    @property
    def counters(self) -> dict[str, int]:
        """What the pipeline counted (as of the last batch), plus drops at the edges."""
        out = dict(self._counters)
        out.update(self.link.counters)
        out["dropped_publications"] = self.dropped_publications
        return out

    # -- worker ------------------------------------------------------------------------------

    def _on_connected(self, session_present: bool) -> None:
        # A broker that lost our session has probably lost its retained alerts too.
        if not session_present:
            self._republish.set()

    def _work(self) -> None:
        retry: list[Message] = []
        while not self._stopping.is_set():
            batch = retry or self._take_batch()
            try:
                pubs = self._process(batch)
            except Exception:  # the worker must outlive any one batch
                # Nothing of the batch is acknowledged, and the broker only redelivers after a
                # reconnect: keep the batch and try it again once the rules are rebuilt from
                # what the store has. Meanwhile the inbox fills and holds the broker back.
                log.exception("批处理失败，稍后重试 / a batch failed; retrying it in 1 s")
                self._recover()
                retry = batch
                self._stopping.wait(1)
                continue
            retry = []
            for msg in batch:
                self.link.ack(msg)
            self._publish(pubs)

    def _take_batch(self) -> list[Message]:
        timeout = IDLE_WAIT_SECONDS
        due = self.pipeline.engine.next_deadline()
        if due is not None:
            # Clock seconds; with an accelerated clock this waits too long, but IDLE_WAIT caps it
            # and every alert still carries its exact deadline instant.
            wait = (due + self.grace - self.clock()).total_seconds()
            timeout = max(0.0, min(timeout, wait))
        return self.inbox.get_batch(BATCH_MAX, timeout)

    def _process(self, batch: list[Message]) -> list[Publication]:
        pubs: list[Publication] = []
        republish = self._republish.is_set()
        if republish:
            pubs += self._retained_state()
        confirmed = [i for i, done in self._inflight.items() if done()]
        self.store.outbox_done(confirmed)
        for i in confirmed:
            del self._inflight[i]
        if self._resend:
            self._resend = False
            pubs += [
                Publication(topic, payload, qos, retain, i)
                for i, topic, payload, qos, retain in self.store.outbox()
                if i not in self._inflight
            ]
        for swap_id, swap in self.store.swaps_after(self._swap_id):
            # Registered by `patrol-gateway roster swap` (another process) on this store;
            # before the batch, so its messages are judged with the new roster.
            pubs += self.pipeline.inject(swap, swap.time).publications
            self._swap_id = swap_id
            self.store.set_meta("swaps_through", str(swap_id))
        for msg in batch:
            pubs += self.pipeline.handle(msg).publications
        pubs += self.pipeline.tick(self.clock() - self.grace).publications
        status = self.pipeline.status()
        if status is not None:
            pubs.append(status)
        mark = self.pipeline.mark()
        if mark != self._mark:
            self.store.set_meta("fired_through", mark)
            self._mark = mark
        self.store.commit()
        if republish:
            self._republish.clear()
        self._counters = dict(self.pipeline.counters)
        return pubs

    def _new_pipeline(self) -> Pipeline:
        """A pipeline whose rules are rebuilt from the store up to the last committed clock."""
        pipeline = Pipeline(
            self.site, self.topics, self.store, self._start, live=True, grace=self.grace
        )
        mark = self.store.meta("fired_through")
        count = pipeline.restore(mark, self._swap_id)
        if count:
            log.info("已从存储恢复 / restored from the store: %d events up to %s", count, mark)
        return pipeline

    def _recover(self) -> None:
        """Forget the failed batch everywhere: the store rolls back, the rules restart from it."""
        try:
            self.store.rollback()
            self._mark = ""
            self._swap_id = int(self.store.meta("swaps_through") or 0)
            self._inflight.clear()  # confirmations were rolled back: send the outbox again
            self._resend = True
            self.pipeline = self._new_pipeline()
        except sqlite3.Error:
            log.exception("回滚失败 / rollback failed")

    def _retained_state(self) -> list[Publication]:
        """After connecting to a broker that lost our session: every open alert again."""
        self.pipeline.forget_status()
        return [self.pipeline.alert_publication(a) for a in self.pipeline.book.all_open()]

    def _publish(self, pubs: list[Publication]) -> None:
        for p in pubs:
            if p.outbox_id is not None and self._resend:
                continue  # an earlier one was refused: keep the outbox's order, send it later
            confirmed = self.link.publish(p.topic, p.payload, p.qos, p.retain)
            if p.outbox_id is None:
                if confirmed is None:
                    self.dropped_publications += 1
            elif confirmed is None:
                self._resend = True  # still in the outbox: tried again with the next batch
            else:
                self._inflight[p.outbox_id] = confirmed


def run_gateway(
    site: Site,
    broker: BrokerUrl | str,
    data: pathlib.Path,
    root: str,
    clock: Clock = wall_clock,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> int:
    """Run until SIGINT/SIGTERM; return the exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        url = broker if isinstance(broker, BrokerUrl) else BrokerUrl.parse(broker)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    # The grace is two real seconds; under a scaled clock that is more clock time.
    grace = DEADLINE_GRACE * (clock.speed if isinstance(clock, ScaledClock) else 1.0)
    gateway = Gateway(
        site, url, data, root, clock=clock, grace=grace, max_payload_bytes=max_payload_bytes
    )
    stop = threading.Event()

    def _signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    gateway.start()
    log.info(
        "巡检网关运行中 / Patrol Gateway running: site %s (%s), broker %s, store %s, topics %s/#",
        site.id,
        site.name,
        url,
        gateway.store_path,
        gateway.topics.base,
    )
    stop.wait()
    log.info("正在停止 / stopping: %s", gateway.counters)
    gateway.stop()
    return 0
