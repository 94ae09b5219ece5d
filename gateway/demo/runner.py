"""`patrol-gateway demo`: embedded broker, gateway and simulated site on one simulated clock.

Everything runs in this process: an amqtt broker on loopback, the gateway with its SQLite store,
and the site simulator publishing as the demo site's readers and sensors, faults included. The
gateway is given the simulator's clock, so deadlines and alerts follow simulated time.

What the terminal shows is read back from the store through the demo's own connections (the
gateway's connection belongs to its worker thread): the plant-room values every few seconds,
and every alert transition as it is stored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import signal
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import gateway
from devices.simulator import FAULT_NAMES, FaultConfig, Publisher, SimClock, Simulator, demo_start
from gateway.app import Gateway
from gateway.config import ConfigError, Site, load_site
from gateway.demo.broker import EmbeddedBroker, EmbeddedBrokerError
from gateway.ingest.mqtt import BrokerUrl
from gateway.rules.equipment import is_out
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import iso

DEMO_SITE = Path(gateway.__file__).parent / "sites" / "zcity.yaml"
SEED = 1
ROOT = "estate"
LIVE_EVERY_SECONDS = 3.0  # the live line and the plant-room values
TRANSITIONS_EVERY_SECONDS = 0.5  # looks for new alert transitions in the store
CONNECT_SECONDS = 10.0
# Each kind of fault happens first within this many simulated minutes, then at its daily rate:
# something to watch soon after the start, whatever the speed.
FIRST_FAULTS_WITHIN_MINUTES = 90.0


def run_demo(
    port: int, data: Path | None, speed: float, seconds: float, faults_scale: float = 1.0
) -> int:
    """Run the demo until Ctrl-C / SIGTERM, or for `seconds` (> 0); return the exit code.
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
    stop = threading.Event()
    restore = _stop_on_signals(stop)
    try:
        broker = EmbeddedBroker(port)
        try:
            broker.start()
        except EmbeddedBrokerError as exc:
            _broker_failed(err, port, exc)
            return 1
        try:
            store_dir = Path(tempfile.mkdtemp(prefix="patrol-demo-")) if data is None else data
            faults = FaultConfig(
                scale=faults_scale, first_within_minutes=FIRST_FAULTS_WITHIN_MINUTES
            )
            fresh = data is None
            return _run(out, err, site, broker, store_dir, fresh, speed, seconds, faults, stop)
        finally:
            broker.stop()
    finally:
        restore()


def _broker_failed(err: Console, port: int, exc: EmbeddedBrokerError) -> None:
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
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
    stop: threading.Event,
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
    gw = Gateway(site, BrokerUrl.parse(broker.url), store_dir, root=ROOT, clock=clock, grace=grace)
    publisher = Publisher(sim, broker.url, clock)
    failures: list[BaseException] = []
    thread = threading.Thread(
        target=_publish, args=(publisher, stop, failures), name="demo-simulator", daemon=True
    )
    gw.start()
    view = _StoreView(gw.store_path)  # never gw.store: that belongs to the gateway's thread
    try:
        if not gw.link.connected.wait(CONNECT_SECONDS):
            err.print(f"网关无法连接内置代理。 / The gateway could not connect to {broker.url}.")
            return 1
        publisher.connect(CONNECT_SECONDS)
        _banner(out, site, broker, gw.store_path, fresh, start, speed, seconds, faults)
        thread.start()
        _watch(out, site, clock, gw, publisher, view, stop, seconds)
    except ConnectionError as exc:
        err.print(f"模拟设备无法连接。 / The simulated devices could not connect: {exc}")
        return 1
    finally:
        stop.set()
        clock.freeze()  # the gateway shuts down at the instant the simulation ended
        ended = clock()
        if thread.is_alive():
            thread.join(timeout=10)
        publisher.close()
        out.print("正在停止… / stopping…")
        _drain(gw, publisher.published)
        gw.stop()
        broker.stop()  # run_demo stops it too, for the paths that never get here
        with contextlib.suppress(sqlite3.Error):
            _print_transitions(out, site, view)  # what the last moments stored
        view.close()
    if failures:
        err.print(f"模拟器出错。 / The simulator failed: {escape(repr(failures[0]))}")
        return 1
    _final(out, site, ended, gw, publisher, store)
    return 0


def _drain(gw: Gateway, sent: int, seconds: float = 3.0) -> None:
    """Give what the devices sent a moment to reach the gateway before it stops."""
    deadline = time.monotonic() + seconds
    while _counters(gw)["received"] < sent and time.monotonic() < deadline:
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


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Ctrl-C and SIGTERM set `stop`; returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            if old is not None:
                signal.signal(sig, old)

    return restore


def _publish(publisher: Publisher, stop: threading.Event, failures: list[BaseException]) -> None:
    try:
        publisher.run(stop)
    except Exception as exc:  # reported by the main thread, which then stops everything
        failures.append(exc)
        stop.set()


def _banner(
    out: Console,
    site: Site,
    broker: EmbeddedBroker,
    store: Path,
    fresh: bool,
    start: dt.datetime,
    speed: float,
    seconds: float,
    faults: FaultConfig,
) -> None:
    where = "临时目录 / a fresh temp dir" if fresh else "--data"
    until = f"（{seconds:g} 秒后自动停止 / stops by itself after {seconds:g} s）"
    lines = [
        "[bold]巡检网关演示 · Patrol Gateway demo[/]",
        f"  MQTT 代理 / broker : {broker.url}（内置，仅本机 / embedded, loopback only）",
        f"  站点 / site        : {site.id} {escape(site.name)} ({escape(str(DEMO_SITE))})",
        f"  存储 / store       : {escape(str(store))}（{where}）",
        f"  模拟 / simulation  : 从 {_when(site, start)} 起，每真实秒 {speed:g} 模拟分钟，"
        f"种子 {SEED} / from {_when(site, start)}, {speed:g} simulated min per real second, "
        f"seed {SEED}",
        f"  故障 / faults      : {_faults_line(faults)}",
        "  查看消息 / watch   : "
        f"[bold]mosquitto_sub -h {broker.host} -p {broker.port} -t '{ROOT}/#' -v[/]",
        f"  停止 / stop        : Ctrl-C{until if seconds > 0 else ''}",
    ]
    out.print("\n".join(lines))


def _when(site: Site, instant: dt.datetime) -> str:
    return iso(instant, site.tz)[:16].replace("T", " ")


def _counters(gw: Gateway) -> Counter[str]:
    """The gateway's counters, read from this thread for display only."""
    for _ in range(3):
        with contextlib.suppress(RuntimeError):  # a key added while copying
            return Counter(gw.counters)
    return Counter()


def _live_line(site: Site, clock: SimClock, gw: Gateway, publisher: Publisher) -> str:
    c = _counters(gw)
    alerts = Counter(a.rule for a in gw.pipeline.book.all_open())
    which = ", ".join(f"{rule}×{n}" for rule, n in sorted(alerts.items()))
    return (
        f"[cyan]{_when(site, clock())}[/]  "
        f"发送/sent {publisher.published}  收到/received {c['received']}  "
        f"扫描/scans {c['scan']}  读数/readings {c['reading']}  拒绝/refused {c['rejected']}  "
        f"未关闭告警/open alerts {sum(alerts.values())}" + (f" ({which})" if which else "")
    )


def _watch(
    out: Console,
    site: Site,
    clock: SimClock,
    gw: Gateway,
    publisher: Publisher,
    view: _StoreView,
    stop: threading.Event,
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
            _print_transitions(out, site, view)
            if now >= next_line:
                out.print(_live_line(site, clock, gw, publisher))
                for line in _plant_lines(site, view.store):
                    out.print(line)
                next_line += LIVE_EVERY_SECONDS
        except sqlite3.OperationalError:  # busy beyond the timeout: show it next time
            pass
        wake = min(next_line, end, time.monotonic() + TRANSITIONS_EVERY_SECONDS)
        stop.wait(max(0.0, wake - time.monotonic()))


class _StoreView:
    """The demo's own read-only look at the gateway's store, on a connection of its own."""

    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path, readonly=True)
        # A demo on an earlier --data shows what happens from now on, not the old history.
        self._seen = self.store.last_transition_id()

    def new_transitions(self) -> list[_Shown]:
        """Transitions stored since the last call, oldest first."""
        rows = list(self.store.transitions(self._seen))
        if rows:
            self._seen = int(rows[-1]["id"])
        return [
            _Shown(str(r["change"]), r["at"].timestamp(), str(r["actor"]), r["record"])
            for r in rows
        ]

    def close(self) -> None:
        self.store.close()


@dataclass(frozen=True)
class _Shown:
    """One stored alert transition."""

    change: str
    at: float
    actor: str
    record: dict[str, Any]


_CHANGES = {
    "open": ("⚠", "打开/open"),
    "update": ("↻", "更新/update"),
    "acknowledged": ("☑", "确认/acknowledged"),
    "closed": ("✓", "关闭/closed"),
}
_SEVERITY = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _print_transitions(out: Console, site: Site, view: _StoreView) -> None:
    for shown in view.new_transitions():
        out.print(_transition_line(site, shown))


def _transition_line(site: Site, shown: _Shown) -> str:
    """`⚠ 09:12 打开/open equipment.out_of_range tx-1.winding_temp_c 1号变压器 …`."""
    record = shown.record
    at = dt.datetime.fromtimestamp(shown.at, dt.UTC).astimezone(site.tz)
    mark, label = _CHANGES.get(shown.change, ("·", shown.change))
    style = "green" if shown.change == "closed" else _SEVERITY.get(str(record.get("severity")), "")
    what = f"{escape(str(record.get('rule')))} [bold]{escape(str(record.get('subject')))}[/]"
    when = f"{mark} {at:%H:%M} {label}"
    head = f"[{style}]{when}[/] {what}" if style else f"{when} {what}"
    message = escape(str(record.get("message", "")))
    if shown.change == "closed":
        raised = dt.datetime.fromisoformat(str(record["raised_at"]))
        minutes = round((at - raised).total_seconds() / 60)
        return f"{head} [dim]持续/lasted {minutes} min — {message}[/]"
    if shown.change == "acknowledged":
        return f"{head} [dim]{escape(shown.actor)} — {message}[/]"
    return f"{head} {message}" if shown.change == "open" else f"{head} [dim]{message}[/]"


def _plant_lines(site: Site, store: SqliteStore) -> list[str]:
    """Each equipment's latest values with their units, out-of-range ones in red:
    `  ⚙ 配电室 1号变压器  winding_temp_c 71.5°C · load_pct 63%`."""
    latest: dict[str, dict[str, float | bool]] = {}
    for reading in store.latest_readings():
        latest.setdefault(reading.equipment, {})[reading.metric] = reading.value
    lines = []
    for eq in site.equipment.values():
        values = latest.get(eq.id, {})
        shown = []
        for name, metric in eq.metrics.items():
            if name not in values:
                shown.append(f"{escape(name)} [dim]—[/]")
                continue
            value = values[name]
            text = _with_unit(value, metric.unit)
            if is_out(metric, value):
                text = f"[bold red]{text} ⚠[/]"
            shown.append(f"{escape(name)} {text}")
        post = site.posts[eq.post].name
        lines.append(
            f"  ⚙ {escape(post)} [bold]{escape(eq.name)}[/] ({eq.id})  " + " · ".join(shown)
        )
    return lines


def _with_unit(value: float | bool, unit: str) -> str:
    """`71.5°C`, `63%`, `26.9 V`, `false`."""
    if isinstance(value, bool):
        return str(value).lower()
    number = f"{value:.1f}".removesuffix(".0")
    return escape(f"{number} {unit}" if unit[:1].isalpha() else f"{number}{unit}")


def _faults_line(faults: FaultConfig) -> str:
    on = [n for n in FAULT_NAMES if faults.rate(n) > 0]
    if not on:
        return "无 / none"
    first = faults.first_within_minutes
    return (
        f"{', '.join(on)}（每种首次在 {first:g} 模拟分钟内，之后按日频率 / each first within "
        f"{first:g} simulated min, then at its daily rate）"
        if first is not None
        else ", ".join(on)
    )


def _final(
    out: Console, site: Site, ended: dt.datetime, gw: Gateway, publisher: Publisher, store: Path
) -> None:
    table = Table(title="最终计数 / final counters", show_header=True, header_style="bold")
    table.add_column("计数 / counter")
    table.add_column("值 / value", justify="right")
    table.add_row("sent (simulator)", str(publisher.published))
    for name, value in sorted(_counters(gw).items()):
        table.add_row(name, str(value))
    out.print(table)
    out.print(
        f"模拟到 / simulated up to: {_when(site, ended)}\n"
        f"记录已保存 / the record is kept in: {escape(str(store))}"
    )
