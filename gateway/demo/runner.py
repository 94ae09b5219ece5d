"""`patrol-gateway demo`: embedded broker, gateway and simulated site on one simulated clock.

Everything runs in this process: an amqtt broker on loopback, the gateway with its SQLite store,
and the site simulator publishing as the demo site's readers and sensors, faults included. The
gateway is given the simulator's clock, so deadlines and alerts follow simulated time.

What the terminal shows (`gateway.demo.display`) is read back from the store through the
demo's own connections (the gateway's connection belongs to its worker thread): the plant-room
values every few seconds, and every alert transition as it is stored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

import gateway
from devices.simulator import FaultConfig, Simulator, demo_start
from devices.simulator.publisher import Publisher, SimClock
from gateway.app import Gateway
from gateway.config import ConfigError, Site, load_site
from gateway.demo.broker import EmbeddedBroker, EmbeddedBrokerError
from gateway.demo.display import (
    StoreView,
    banner,
    counters,
    live_line,
    plant_lines,
    print_final,
    print_transitions,
)
from gateway.demo.receiver import DemoReceiver, to_receiver
from gateway.influx.forward import InfluxSettings
from gateway.ingest.mqtt import BrokerUrl
from gateway.roster import Roster
from gateway.signals import StopSignal

if TYPE_CHECKING:
    from gateway.api.server import HttpServer

DEMO_SITE = Path(gateway.__file__).parent / "sites" / "zcity.yaml"
SEED = 1
DEFAULT_PORT = 1883  # MQTT's own port, so `mosquitto_sub` works without -p
ROOT = "estate"
LIVE_EVERY_SECONDS = 3.0  # the live line and the plant-room values
TRANSITIONS_EVERY_SECONDS = 0.5  # looks for new alert transitions in the store
CONNECT_SECONDS = 10.0
# Each kind of fault happens first within this many simulated minutes, then at its daily rate:
# something to watch soon after the start, whatever the speed.
FIRST_FAULTS_WITHIN_MINUTES = 90.0
DEFAULT_HTTP = "127.0.0.1:8080"  # the page; a free port instead if 8080 is taken


def _serve_page(
    err: Console, gw: Gateway, data: Path, http: str | None
) -> tuple[HttpServer | None, str]:
    """Serve the duty desk; its address with a login link for the day's duty manager."""
    if http is None or http.strip().lower() == "off":
        return None, ""
    try:
        from gateway.api.server import parse_http, serve_gateway
        from gateway.api.tokens import issue_token
    except ModuleNotFoundError as exc:
        err.print(
            f"网页未启动：缺少 {exc.name}（pip install 'patrol-gateway[api]'） / the page is off: "
            f"{exc.name} is not installed (pip install 'patrol-gateway[api]')"
        )
        return None, ""
    try:
        address = parse_http(http)
    except ValueError as exc:
        err.print(escape(str(exc)))
        return None, ""
    if address is None:
        return None, ""
    try:
        server = serve_gateway(gw, data, *address)
    except OSError:
        server = serve_gateway(gw, data, address[0], 0)
    site = gw.site
    now = gw.clock()
    manager = Roster(site).manager(site.calendar.day_of(now), now)
    link = server.url
    if manager is not None:
        link = f"{server.url}/#token={issue_token(gw.store_path, manager)}"
        who = f"{site.people[manager].name}（{manager}）"
        return server, (
            f"  值班台 / duty desk : [bold]{link}[/]\n"
            f"    以当日值班经理 {who} 登录 / logs in as the day's duty manager"
        )
    return server, f"  值班台 / duty desk : [bold]{link}[/]"


def run_demo(
    port: int | None,
    data: Path | None,
    speed: float,
    seconds: float,
    faults_scale: float = 1.0,
    influx: InfluxSettings | None = None,
    keep_readings_days: float = 90.0,
    http: str | None = DEFAULT_HTTP,
) -> int:
    """Run the demo until Ctrl-C / SIGTERM, or for `seconds` (> 0); return the exit code.
    `port` None means 1883, or a free port if 1883 is taken (`make run` must always work);
    `faults_scale` multiplies the rate of every injected fault (0: none)."""
    out, err = (
        Console(highlight=False, soft_wrap=True),
        Console(stderr=True, highlight=False, soft_wrap=True),
    )
    if not speed > 0:
        err.print("--speed 必须大于 0。 / --speed must be above 0 (simulated minutes per second).")
        return 2
    if not faults_scale >= 0:
        err.print("--faults-scale 不能为负。 / --faults-scale must be 0 or more.")
        return 2
    try:
        site = load_site(DEMO_SITE)
    except ConfigError as exc:
        err.print(escape(str(exc)))
        return 1
    # Installed before the broker starts, so a Ctrl-C at any point is handled the same way:
    # the handler only records it (a second one cannot deadlock it: gateway/signals.py).
    with StopSignal() as stop:
        broker = EmbeddedBroker(DEFAULT_PORT if port is None else port)
        try:
            broker.start()
        except EmbeddedBrokerError as exc:
            if port is not None or not _port_taken(exc):
                _broker_failed(err, DEFAULT_PORT if port is None else port, exc)
                return 1
            broker = EmbeddedBroker(0)
            broker.start()
            err.print(
                f"端口 {DEFAULT_PORT} 已被占用（Mosquitto？），演示改用 {broker.port}。 / "
                f"Port {DEFAULT_PORT} is taken (Mosquitto?); the demo uses {broker.port}."
            )
        store_dir = data if data is not None else Path(tempfile.mkdtemp(prefix="patrol-demo-"))
        try:
            faults = FaultConfig(
                scale=faults_scale, first_within_minutes=FIRST_FAULTS_WITHIN_MINUTES
            )
            fresh = data is None
            return _run(
                out,
                err,
                site,
                broker,
                store_dir,
                fresh,
                speed,
                seconds,
                faults,
                stop,
                influx,
                keep_readings_days,
                http,
            )
        finally:
            broker.stop()
            if data is None:
                _remove_temp_store(out, err, store_dir)


def _remove_temp_store(out: Console, err: Console, folder: Path) -> None:
    """A demo without --data leaves nothing behind in /tmp; say so, and say if it failed."""
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        err.print(
            f"无法删除临时存储 {escape(str(folder))}：{escape(str(exc))} / "
            f"could not remove the temporary store {escape(str(folder))}: {escape(str(exc))}"
        )
        return
    out.print(
        f"临时存储 {escape(str(folder))} 已删除；要保留记录，请用 --data 目录。 / "
        f"The temporary store {escape(str(folder))} was removed; use --data DIR to keep the record."
    )


def _port_taken(exc: EmbeddedBrokerError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE


def _broker_failed(err: Console, port: int, exc: EmbeddedBrokerError) -> None:
    if _port_taken(exc):
        err.print(
            f"[bold red]端口 {port} 已被占用[/]（也许已有 Mosquitto 等 MQTT 代理在运行）。"
            "请用 --port 换一个端口，或用 [bold]--port 0[/] 自动选择空闲端口。\n"
            f"[bold red]Port {port} is already in use[/] (perhaps another MQTT broker such as "
            "Mosquitto is running). Choose another with --port, or use [bold]--port 0[/] to "
            "pick a free one."
        )
    else:
        err.print(
            f"内置 MQTT 代理无法启动。 / The embedded MQTT broker could not start: "
            f"{escape(str(exc))}"
        )


def _run(
    out: Console,
    err: Console,
    site: Site,
    broker: EmbeddedBroker,
    store_dir: Path,
    fresh: bool,
    speed: float,
    seconds: float,
    faults: FaultConfig,
    stop: StopSignal,
    influx: InfluxSettings | None = None,
    keep_readings_days: float = 90.0,
    http: str | None = DEFAULT_HTTP,
) -> int:
    store = store_dir / f"{site.id}.sqlite"  # where Gateway keeps it (gateway/app.py)
    start, seq_base = _resume(store, demo_start(site, dt.datetime.now(dt.UTC)))
    clock = SimClock(start, speed)
    # A reading a simulated minute, fewer at high speed: about 60 messages a real second per
    # equipment at most, which the in-process broker and gateway keep up with.
    every = max(60.0, float(speed))
    sim = Simulator(
        site, SEED, start, faults, root=ROOT, reading_every_seconds=every, seq_base=seq_base
    )
    # The deadline grace is two real seconds, in simulated time (speed = minutes a second).
    grace = dt.timedelta(minutes=2 * speed)
    # Notifications go to a local receiver that prints each one (docs/notifications.md).
    receiver = DemoReceiver(lambda who, title, body: _notified(out, site, who, title))
    site = to_receiver(site, receiver)
    receiver.start()
    gw = Gateway(
        site,
        BrokerUrl.parse(broker.url),
        store_dir,
        root=ROOT,
        clock=clock,
        grace=grace,
        influx=influx,
        keep_readings_days=keep_readings_days,
        mqtt5=False,  # the embedded broker speaks MQTT 3.1.1 only (docs/embedded-broker.md)
        # In-process: a link process starts 0.1–0.3 s later, which the simulated clock (already
        # running, 60 simulated minutes a second) turns into 6–18 minutes of the demo's morning;
        # the demo's 60 messages a second do not need the second core.
        link_process=False,
    )
    publisher = Publisher(sim, broker.url, clock)
    failures: list[BaseException] = []
    # The simulator thread's own stop: set by this thread, never by a signal handler.
    sim_done = threading.Event()
    thread = threading.Thread(
        target=_publish,
        args=(publisher, sim_done, stop, failures),
        name="demo-simulator",
        daemon=True,
    )
    gw.start()
    page, page_line = _serve_page(err, gw, store_dir, http)
    view = StoreView(gw.store_path)  # never gw.store: that belongs to the gateway's thread
    try:
        if not gw.link.connected.wait(CONNECT_SECONDS):
            err.print(f"网关无法连接内置代理。 / The gateway could not connect to {broker.url}.")
            return 1
        publisher.connect(CONNECT_SECONDS)
        banner(
            out,
            site,
            broker,
            gw.store_path,
            fresh,
            start,
            speed,
            seconds,
            faults,
            site_file=DEMO_SITE,
            seed=SEED,
            root=ROOT,
        )
        if page_line:
            out.print(page_line)
        thread.start()
        _watch(out, site, clock, gw, publisher, view, stop, seconds)
    except ConnectionError as exc:
        err.print(f"模拟设备无法连接。 / The simulated devices could not connect: {exc}")
        return 1
    finally:
        sim_done.set()
        clock.freeze()  # the gateway shuts down at the instant the simulation ended
        ended = clock()
        if thread.is_alive():
            thread.join(timeout=10)
        publisher.close()
        out.print("正在停止… / stopping…")
        if page is not None:
            page.stop()
        _drain(gw, publisher.published)
        gw.stop()
        receiver.stop()
        broker.stop()  # run_demo stops it too, for the paths that never get here
        with contextlib.suppress(sqlite3.Error):
            print_transitions(out, site, view)  # what the last moments stored
        view.close()
    if failures:
        err.print(f"模拟器出错。 / The simulator failed: {escape(repr(failures[0]))}")
        return 1
    print_final(out, site, ended, gw, publisher, store, kept=not fresh)
    return 0


def _notified(out: Console, site: Site, person: str, title: str) -> None:
    """`✉ 通知/notified 张伟: 【告警·严重】…` for each notification the local receiver got."""
    who = site.people.get(person)
    name = who.name if who else person
    out.print(f"[magenta]✉ 通知/notified[/] {escape(name)}: {escape(title)}")


def _drain(gw: Gateway, sent: int, seconds: float = 3.0) -> None:
    """Give what the devices sent a moment to reach the gateway before it stops."""
    deadline = time.monotonic() + seconds
    while counters(gw)["received"] < sent and time.monotonic() < deadline:
        time.sleep(0.05)


def _resume(store: Path, default: dt.datetime) -> tuple[dt.datetime, int]:
    """Start after what an existing store already holds, so re-runs never go back in time and
    never reuse a (device, seq) the store would drop as a duplicate."""
    if not store.exists():
        return default, 0
    query = (
        "SELECT max(t), max(s) FROM (SELECT max(time) t, max(seq) s FROM scans"
        " UNION ALL SELECT max(time), max(seq) FROM readings)"
    )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            last, seq = db.execute(query).fetchone()
    except sqlite3.Error:
        return default, 0
    if last is None:
        return default, int(seq or 0)
    after = dt.datetime.fromtimestamp(float(last), dt.UTC).replace(second=0, microsecond=0)
    return max(default, after + dt.timedelta(minutes=1)), int(seq or 0)


def _publish(
    publisher: Publisher,
    done: threading.Event,
    stop: StopSignal,
    failures: list[BaseException],
) -> None:
    try:
        publisher.run(done)
    except Exception as exc:  # reported by the main thread, which then stops everything
        failures.append(exc)
        stop.request()


def _watch(
    out: Console,
    site: Site,
    clock: SimClock,
    gw: Gateway,
    publisher: Publisher,
    view: StoreView,
    stop: StopSignal,
    seconds: float,
) -> None:
    """Print every alert transition as it is stored, and every few seconds a live line and the
    plant-room values, until `stop` is set or `seconds` have passed."""
    began = time.monotonic()
    end = began + seconds if seconds > 0 else float("inf")
    next_line = began + LIVE_EVERY_SECONDS
    while not stop.is_set():
        now = time.monotonic()
        if now >= end:
            return
        try:
            print_transitions(out, site, view)
            if now >= next_line:
                out.print(live_line(site, clock, gw, publisher))
                for line in plant_lines(site, view.store.reads):
                    out.print(line)
                next_line += LIVE_EVERY_SECONDS
        except sqlite3.OperationalError:  # busy beyond the timeout: show it next time
            pass
        wake = min(next_line, end, time.monotonic() + TRANSITIONS_EVERY_SECONDS)
        stop.wait(max(0.0, wake - time.monotonic()))
