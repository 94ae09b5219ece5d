"""The composition root of `patrol-gateway run`: site, store, MQTT link, worker, forwarders.

The worker thread is the single writer: it takes a batch of messages from the inbox and the
commands submitted since, runs them through `gateway.worker.Worker` (store, rules, commit) and
only then acknowledges the batch and answers. Alert records leave through the MQTT forwarder,
which reads them from the store after commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import pathlib
import signal
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType

from gateway import console
from gateway.api.live import StatusTap as DeskStatusTap
from gateway.clock import ScaledClock, wall_clock
from gateway.commands import Command
from gateway.config.site import Site
from gateway.events import Message
from gateway.forward import Forwarder, MqttAlerts
from gateway.influx.forward import InfluxOut, InfluxSettings
from gateway.influx.live import StatusTap, forward_lagging
from gateway.ingest.inbox import Inbox
from gateway.ingest.mqtt import DEFAULT_MAX_PAYLOAD_BYTES, BrokerUrl, MqttLink
from gateway.ingest.process import ProcessLink
from gateway.ingest.render import Renderer
from gateway.ingest.topics import Topics
from gateway.notify.deliver import Notifier
from gateway.notify.links import link_key
from gateway.pipeline import Pipeline
from gateway.signals import StopSignal
from gateway.store.sqlite import SqliteStore, store_file
from gateway.trust.secrets import Secrets, SecretsError, SecretsFile, secrets_path
from gateway.worker import Link, StoreUnavailable, Submitted, Worker

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

INBOX_SIZE = 10_000
BATCH_MAX = 500
# A deadline fires this long after its instant, so a scan stamped exactly at the deadline that
# is still in flight counts as on time (§5); the alert still carries the deadline instant.
DEADLINE_GRACE = dt.timedelta(seconds=2)
IDLE_WAIT_SECONDS = 0.25
STORE_RETRY_FIRST = 1.0
STORE_RETRY_MAX = 60.0
HEARTBEAT_SECONDS = 5.0
NOTIFY_BACKOFF_SECONDS = 30.0  # the first retry of a refused notification; doubles to an hour
SUMMARY_SECONDS = 60.0
# Wakes the worker for a submitted command; never stored, never acknowledged.
_WAKE = Message("", b"", dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
ONLINE = b"online"


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
        site_file: pathlib.Path | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        secrets: Callable[[], Secrets] | None = None,
        influx: InfluxSettings | None = None,
        keep_readings_days: float = 90.0,
        notify_backoff: float = NOTIFY_BACKOFF_SECONDS,
        mqtt5: bool = True,
        link_process: bool = True,
    ) -> None:
        if secrets is None:  # first, so a bad secrets file stops the start before anything opens
            secrets = SecretsFile(secrets_path(data)).current
        self.site = site
        self.topics = Topics(root, site.id)
        self.clock = clock
        self.grace = grace  # in clock time: a fast demo clock needs a larger one
        self.store_path = store_file(data, site.id)
        self.store = SqliteStore(self.store_path)
        started = self.store.meta("first_started_at")
        if started is None:
            started = clock().isoformat()
            self.store.set_meta("first_started_at", started)
        # The store knows its site, so commands on --data need no --config (§7).
        self.store.set_meta("site_id", site.id)
        if site_file is not None:
            self.store.set_meta("site_file", str(site_file.resolve()))
            self.store.set_meta("site_yaml", site_file.read_text(encoding="utf-8"))
        link_key(self.store)  # the acknowledge links' key: the notifier signs, the API verifies
        self.store.commit()
        self._start = dt.datetime.fromisoformat(started)
        self.inbox = Inbox(INBOX_SIZE)
        # paho in a process of its own runs beside the worker on the other core (the GIL would
        # make them take turns); `link_process=False` keeps it in this process.
        link_class = ProcessLink if link_process else MqttLink
        self.link: ProcessLink | MqttLink = link_class(
            broker,
            client_id or f"patrol-gateway-{site.id}",
            self.topics,
            self.inbox,
            clock,
            on_connected=self._on_connected,
            on_output=self._on_output,
            max_payload_bytes=max_payload_bytes,
            mqtt5=mqtt5,  # False for a broker known to speak only 3.1.1 (the demo's)
        )
        render = Renderer(self.topics, site.tz)
        self.own = OwnRetained(self.link)  # what we last left retained, to spot foreign changes
        self.alerts_out = MqttAlerts(
            self.store_path, self.own, render, connected=self.link.connected.is_set
        )
        # Notifications (§9): decided by the worker with the transitions, sent after commit.
        self.notifier = Notifier(self.store_path, site, backoff_first=notify_backoff)
        self.forwarders: list[Forwarder] = [self.alerts_out, self.notifier]
        self._counters: dict[str, int] = {}
        self.influx: InfluxOut | None = None
        worker_link: Link = self.own
        if influx is not None:  # §8: one forwarder per table; readings kept N days once sent
            self.influx = InfluxOut(
                self.store_path,
                influx,
                lambda: self.site,
                clock,
                lambda: self._counters,
                keep_readings_days,
            )
            self.forwarders += self.influx.forwarders
            worker_link = StatusTap(self.own, self.topics.patrol_status, self.influx.offer_status)
        # The API shows the patrol status exactly as the worker publishes it (§10).
        self.status_tap = DeskStatusTap(worker_link, self.topics.patrol_status)
        self.worker = Worker(
            site,
            self.store,
            self.status_tap,
            self.topics,
            clock,
            self._start,
            grace,
            on_commit=self._wake_forwarders,
            max_payload_bytes=max_payload_bytes,
            secrets=secrets,
        )
        self._submitted: deque[Submitted] = deque()
        self._republish = threading.Event()
        self._heal_status = threading.Event()  # someone else changed gateway/status
        self.healed = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="gateway-worker", daemon=True)
        self.failure: BaseException | None = None
        self.store_failing = False
        self._last_heartbeat = 0.0
        self.site_file = site_file
        self._pending_site: tuple[Site, str] | None = None
        self._reload_outcome: dict[str, object] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and the forwarders, and connect to the broker."""
        self._thread.start()
        for forwarder in self.forwarders:
            forwarder.start()
        self.link.start()

    def stop(self, drain_seconds: float = 5.0) -> None:
        """Finish what is queued (bounded), commit, acknowledge, say offline, disconnect."""
        deadline = time.monotonic() + drain_seconds
        while not self.inbox.empty() and time.monotonic() < deadline and self.alive():
            time.sleep(0.05)
        self._stopping.set()
        self._thread.join(timeout=drain_seconds + 5)
        for forwarder in self.forwarders:
            forwarder.stop()
        if self.influx is not None:
            self.influx.close()
        self.link.stop()
        if self._thread.is_alive():
            log.error("工作线程未停止 / the worker did not stop; the store is left open")
        else:
            self.store.close()

    def alive(self) -> bool:
        """False once the worker thread has died (the process should exit and be restarted)."""
        return self.failure is None and (self._thread.is_alive() or not self._thread.ident)

    def submit(self, command: Command) -> Submitted:
        """Hand a command to the single writer; `.wait()` on the result gives its outcome."""
        item = Submitted(command)
        self._submitted.append(item)
        # A full inbox means a busy worker: it takes the command with its next batch anyway.
        self.inbox.put_nowait(_WAKE)
        return item

    @property
    def counters(self) -> dict[str, int]:
        """What the pipeline counted (as of the last batch), plus drops at the edges."""
        out = dict(self._counters)
        out.update(self.link.counters)
        out.update(self.worker.counters)
        out["retained_healed"] = self.healed
        for forwarder in self.forwarders:
            for key, value in forwarder.counters.items():
                out[f"{forwarder.cursor_name}_{key}"] = value
        return out

    @property
    def pipeline(self) -> Pipeline:
        """The worker's pipeline (for displays; only the worker thread may change it)."""
        return self.worker.pipeline

    def reload(self) -> None:
        """Re-read the site file (SIGHUP, `patrol-gateway reload`): validated first, refused whole
        if bad, applied between batches if good; the outcome is logged and kept in the store."""
        from gateway.config import ConfigError, load_site

        path = self.site_file
        if path is None:
            self._reload_result(False, "没有站点文件 / this gateway was not started from a file")
            return
        try:
            site = load_site(path)
        except ConfigError as exc:
            self._reload_result(False, f"站点文件有误，未重新加载 / not reloaded:\n{exc}")
            return
        if site.id != self.site.id:
            self._reload_result(
                False, f"站点 id 不能改变 / the site id cannot change ({self.site.id} → {site.id})"
            )
            return
        self._pending_site = (site, path.read_text(encoding="utf-8"))

    def _reload_result(self, ok: bool, message: str) -> None:
        (log.info if ok else log.error)("重新加载 / reload: %s", message)
        self._reload_outcome = {"ok": ok, "message": message, "at": time.time()}

    # -- worker ------------------------------------------------------------------------------

    def _on_connected(self, session_present: bool) -> None:
        # A broker that lost our session has probably lost its retained alerts too.
        if not session_present:
            self._republish.set()
            self.alerts_out.republish()

    def _on_output(self, msg: Message) -> None:
        # Network thread. With MQTT 5 *no local*, whatever arrives on our output topics came
        # from someone else (on 3.1.1, only retained messages get here). Retained state heals
        # itself (issue 13): an alert someone changed, emptied or left behind is put back as
        # the store holds it (the forwarder); patrol/status and gateway/status are published
        # again by the worker at once. Each heal is counted (`retained_healed`).
        if msg.topic.startswith(self.topics.base + "/alert/"):
            self.alerts_out.seen_retained(msg)
        elif msg.topic == self.topics.patrol_status:
            mine = self.own.last.get(msg.topic)
            if mine is not None and msg.payload != mine:
                self._republish.set()
                self.healed += 1
                self.inbox.put_nowait(_WAKE)
        elif msg.topic == self.topics.gateway_status and msg.payload.strip().lower() != ONLINE:
            self._heal_status.set()
            self.healed += 1
            self.inbox.put_nowait(_WAKE)

    def _wake_forwarders(self) -> None:
        for forwarder in self.forwarders:
            forwarder.wake()

    def _work(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # the process must not stay up wedged: run() exits
            self.failure = exc
            log.critical("工作线程已终止 / the worker thread died", exc_info=exc)

    def _loop(self) -> None:
        retry: list[Message] = []
        commands: list[Submitted] = []
        backoff = STORE_RETRY_FIRST
        while not self._stopping.is_set():
            if self.store_failing:
                # Wait, then probe; the backoff grows until a batch is stored again, not until
                # the probe works: a nearly full disk takes the probe's tiny write and still
                # refuses the batch (issue 8 item 13), and each retry rebuilds the rules.
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, STORE_RETRY_MAX)
                try:
                    self.store.probe()
                except Exception:
                    continue
                self.worker.recover()
            if self._pending_site is not None:
                self._apply_site(*self._pending_site)
                self._pending_site = None
            batch = retry or self._take_batch()
            commands = commands or self._take_commands()
            if self._republish.is_set():
                self._republish.clear()
                self.worker.republish()
            if self._heal_status.is_set():
                self._heal_status.clear()
                self.own.publish(self.topics.gateway_status, ONLINE, 1, True)
            if self.influx is not None:  # rule 12, live only: the age is a number in memory
                now = self.clock()
                forward_lagging(self.worker.pipeline, self.influx.age(now), now)
            try:
                self.worker.step(batch, commands)
            except StoreUnavailable as exc:
                # Nothing of the rest is acknowledged, and the broker only redelivers after a
                # reconnect: keep it and try again once the store takes a write. Meanwhile the
                # inbox fills and holds the broker back. Said once, not at every retry.
                if not self.store_failing:
                    log.error(
                        "存储失败，暂停并重试 / the store failed (%s): holding %d messages, "
                        "retrying with backoff",
                        exc.cause,
                        len(exc.remaining),
                    )
                self.store_failing = True
                retry = exc.remaining
                continue
            if self.store_failing:
                log.info("存储恢复 / the store works again; resuming")
                self.store_failing = False
                backoff = STORE_RETRY_FIRST
            retry, commands = [], []
            self._counters = dict(self.worker.pipeline.counters)
            self._heartbeat()

    def _apply_site(self, site: Site, text: str) -> None:
        changes = site_changes(self.site, site)
        self.site = site
        self.worker.replace_site(site)
        self.notifier.replace_site(site)
        self.store.set_meta("site_yaml", text)
        self.store.commit()
        self._reload_result(True, f"已重新加载 / reloaded: {changes or 'no change'}")

    def _take_commands(self) -> list[Submitted]:
        out = []
        while self._submitted:
            out.append(self._submitted.popleft())
        return out

    def _take_batch(self) -> list[Message]:
        timeout = IDLE_WAIT_SECONDS
        due = self.worker.pipeline.engine.next_deadline()
        if due is not None:
            # Clock seconds; with an accelerated clock this waits too long, but IDLE_WAIT caps it
            # and every alert still carries its exact deadline instant.
            wait = (due + self.grace - self.clock()).total_seconds()
            timeout = max(0.0, min(timeout, wait))
        return [m for m in self.inbox.get_batch(BATCH_MAX, timeout) if m is not _WAKE]

    def _heartbeat(self) -> None:
        """Every few seconds, say in the store that this process runs and how (`health`)."""
        now = time.time()
        if now - self._last_heartbeat < HEARTBEAT_SECONDS:
            return
        self._last_heartbeat = now
        beat: dict[str, object] = {
            "pid": os.getpid(),
            "at": now,
            "connected": self.link.connected.is_set(),
            "reload": self._reload_outcome,
            # Notify URLs (masked) whose last attempt failed, with the reason (§9).
            "notify_failing": dict(self.notifier.failing),
        }
        try:
            self.store.set_meta("heartbeat", json.dumps(beat))
            self.store.commit()
        except sqlite3.Error:
            # The disk filled since the batch's commit: the next batch finds out and waits for
            # the store; bookkeeping must not end the worker (issue 8 item 13).
            with contextlib.suppress(sqlite3.Error):
                self.store.rollback()


class OwnRetained:
    """The link as the worker and the forwarders see it; remembers the last retained payload
    the gateway published on each topic, so a foreign change can be told from its own."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.last: dict[str, bytes] = {}

    def ack(self, msg: Message) -> None:
        """As `Link.ack`."""
        self.link.ack(msg)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Callable[[], bool] | None:
        """As `Link.publish`, remembering retained payloads."""
        if retain:
            self.last[topic] = payload
        return self.link.publish(topic, payload, qos, retain)


def site_changes(old: Site, new: Site) -> str:
    """What a reload changes, as one line: `people +li-na −wang-fang; readers +gr-9`."""
    parts = []
    for name, before, after in (
        ("people", old.people, new.people),
        ("posts", old.posts, new.posts),
        ("readers", old.reader_post, new.reader_post),
        ("equipment", old.equipment, new.equipment),
    ):
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        words = [f"+{k}" for k in added] + [f"-{k}" for k in removed] + [f"~{k}" for k in changed]
        if words:
            parts.append(f"{name} {' '.join(words)}")
    if old.config.roster != new.config.roster:
        parts.append("roster changed")
    if old.config.duty != new.config.duty:
        parts.append("duty settings changed")
    return "; ".join(parts)


class _ReloadFlag:
    """Set by SIGHUP; like every handler here it takes no lock, the main loop polls it."""

    def __init__(self) -> None:
        self.requested = False

    def on_signal(self, _sig: int, _frame: FrameType | None) -> None:
        self.requested = True


def run_gateway(
    site: Site,
    broker: BrokerUrl | str,
    data: pathlib.Path,
    root: str,
    clock: Clock = wall_clock,
    site_file: pathlib.Path | None = None,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    influx: InfluxSettings | None = None,
    keep_readings_days: float = 90.0,
    notify_backoff: float = NOTIFY_BACKOFF_SECONDS,
    http: str = "127.0.0.1:8080",
) -> int:
    """Run until SIGINT/SIGTERM; return the exit code (70 if the worker died).

    `http` is where the API and the page are served (`HOST:PORT`, or `off`)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        url = broker if isinstance(broker, BrokerUrl) else BrokerUrl.parse(broker)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    address = _http_address(http)
    if isinstance(address, int):
        return address
    # The grace is two real seconds; under a scaled clock that is more clock time.
    grace = DEADLINE_GRACE * (clock.speed if isinstance(clock, ScaledClock) else 1.0)
    try:
        gateway = Gateway(
            site,
            url,
            data,
            root,
            clock=clock,
            grace=grace,
            site_file=site_file,
            max_payload_bytes=max_payload_bytes,
            influx=influx,
            keep_readings_days=keep_readings_days,
            notify_backoff=notify_backoff,
        )
    except SecretsError as exc:  # PATROL_SECRETS: a bad secrets file stops the start, says why
        log.error("%s", exc)
        return 2
    reload = _ReloadFlag()
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload.on_signal)
    with StopSignal() as stop:
        return _serve(gateway, site, url, stop, reload, data, address)


def _http_address(http: str) -> tuple[str, int] | int | None:
    """The API's address, None for `off`, or an exit code after saying what is wrong."""
    from gateway.extras import EXTRA_MODULES, missing_extra_message

    if http.strip().lower() == "off":
        return None
    try:
        from gateway.api.server import parse_http
    except ModuleNotFoundError as exc:  # the core runs without the page (pyproject extras)
        module = (exc.name or "").partition(".")[0]
        if module not in EXTRA_MODULES["api"]:
            raise
        log.warning("值班台未启动 / the duty desk is off: %s", missing_extra_message("api", module))
        return None
    try:
        return parse_http(http)
    except ValueError as exc:
        log.error("%s", exc)
        return 2


def _serve(
    gateway: Gateway,
    site: Site,
    url: BrokerUrl,
    stop: StopSignal,
    reload: _ReloadFlag,
    data: pathlib.Path,
    http: tuple[str, int] | None,
) -> int:
    server = None
    if http is not None:  # before the gateway says online: the page is up once it does
        from gateway.api.server import serve_gateway

        try:
            server = serve_gateway(gateway, data, *http)
        except OSError as exc:
            log.error("无法在 %s:%d 提供网页 / cannot serve HTTP on %s:%d: %s", *http, *http, exc)
            gateway.store.close()
            return 1
        log.info("值班台 / duty desk: %s (API %s/api/v1)", server.url, server.url)
    gateway.start()
    log.info(
        "巡检网关运行中 / Patrol Gateway running: site %s (%s), broker %s, store %s, topics %s/#",
        site.id,
        site.name,
        url,
        gateway.store_path,
        gateway.topics.base,
    )
    last_summary = time.monotonic()
    while not stop.wait(0.2) and gateway.alive():
        if reload.requested:
            reload.requested = False
            gateway.reload()
        if time.monotonic() - last_summary >= SUMMARY_SECONDS:
            last_summary = time.monotonic()
            log.info("%s", console.summary(gateway.counters))
    if not gateway.alive():
        log.critical(
            "工作线程已终止，退出以便重启 / the worker died: exiting so a supervisor restarts us"
        )
        if server is not None:
            server.stop()
        gateway.link.stop()
        return 70
    log.info("正在停止 / stopping")
    if server is not None:
        server.stop()
    gateway.stop()
    log.info("已停止 / stopped: %s", console.summary(gateway.counters))
    return 0
