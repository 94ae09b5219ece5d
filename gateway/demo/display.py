"""What the demo shows on the terminal: the banner, alert transitions, plant-room values, the
live line and the final counters, formatted with rich markup.

Everything shown is read back from the store through the demo's own read-only connection
(`StoreView`): the gateway's connection belongs to its worker thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from devices.simulator import FAULT_NAMES, FaultConfig
from devices.simulator.publisher import Publisher, SimClock
from gateway.app import Gateway
from gateway.config import Site
from gateway.demo.broker import EmbeddedBroker
from gateway.rules.equipment import is_out
from gateway.store.read import Queries
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import iso


def banner(
    out: Console,
    site: Site,
    broker: EmbeddedBroker,
    store: Path,
    fresh: bool,
    start: dt.datetime,
    speed: float,
    seconds: float,
    faults: FaultConfig,
    *,
    site_file: Path,
    seed: int,
    root: str,
) -> None:
    """Where everything is, how the simulation runs, and how to watch and stop it."""
    where = "临时目录 / a fresh temp dir" if fresh else "--data"
    until = f"（{seconds:g} 秒后自动停止 / stops by itself after {seconds:g} s）"
    lines = [
        "[bold]巡检网关演示 · Patrol Gateway demo[/]",
        f"  MQTT 代理 / broker : {broker.url}（内置，仅本机 / embedded, loopback only）",
        f"  站点 / site        : {site.id} {escape(site.name)} ({escape(str(site_file))})",
        f"  存储 / store       : {escape(str(store))}（{where}）",
        f"  模拟 / simulation  : 从 {_when(site, start)} 起，每真实秒 {speed:g} 模拟分钟，"
        f"种子 {seed} / from {_when(site, start)}, {speed:g} simulated min per real second, "
        f"seed {seed}",
        f"  故障 / faults      : {_faults_line(faults)}",
        "  查看消息 / watch   : "
        f"[bold]mosquitto_sub -h {broker.host} -p {broker.port} -t '{root}/#' -v[/]",
        f"  停止 / stop        : Ctrl-C{until if seconds > 0 else ''}",
    ]
    out.print("\n".join(lines))


def _when(site: Site, instant: dt.datetime) -> str:
    return iso(instant, site.tz)[:16].replace("T", " ")


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


def counters(gw: Gateway) -> Counter[str]:
    """The gateway's counters, read from this thread for display only."""
    for _ in range(3):
        with contextlib.suppress(RuntimeError):  # a key added while copying
            return Counter(gw.counters)
    return Counter()


def live_line(site: Site, clock: SimClock, gw: Gateway, publisher: Publisher) -> str:
    """Simulated time, what was sent, received and stored, and the open alerts by rule."""
    c = counters(gw)
    alerts = Counter(a.rule for a in gw.pipeline.book.all_open())
    which = ", ".join(f"{rule}×{n}" for rule, n in sorted(alerts.items()))
    return (
        f"[cyan]{_when(site, clock())}[/]  "
        f"发送/sent {publisher.published}  收到/received {c['received']}  "
        f"扫描/scans {c['scan']}  读数/readings {c['reading']}  拒绝/refused {c['rejected']}  "
        f"未关闭告警/open alerts {sum(alerts.values())}" + (f" ({which})" if which else "")
    )


class StoreView:
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
    "cleared": ("✓", "关闭/closed"),
}
_SEVERITY = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def print_transitions(out: Console, site: Site, view: StoreView) -> None:
    """One line for each alert transition stored since the last call."""
    for shown in view.new_transitions():
        out.print(_transition_line(site, shown))


def _transition_line(site: Site, shown: _Shown) -> str:
    """`⚠ 09:12 打开/open equipment.out_of_range tx-1.winding_temp_c 1号变压器 …`."""
    record = shown.record
    at = dt.datetime.fromtimestamp(shown.at, dt.UTC).astimezone(site.tz)
    mark, label = _CHANGES.get(shown.change, ("·", shown.change))
    style = (
        "green"
        if shown.change in ("closed", "cleared")
        else _SEVERITY.get(str(record.get("severity")), "")
    )
    what = f"{escape(str(record.get('rule')))} [bold]{escape(str(record.get('subject')))}[/]"
    when = f"{mark} {at:%H:%M} {label}"
    head = f"[{style}]{when}[/] {what}" if style else f"{when} {what}"
    message = escape(str(record.get("message", "")))
    if shown.change in ("closed", "cleared"):
        raised = dt.datetime.fromisoformat(str(record["raised_at"]))
        minutes = round((at - raised).total_seconds() / 60)
        return f"{head} [dim]持续/lasted {minutes} min — {message}[/]"
    if shown.change == "acknowledged":
        return f"{head} [dim]{escape(shown.actor)} — {message}[/]"
    return f"{head} {message}" if shown.change == "open" else f"{head} [dim]{message}[/]"


def plant_lines(site: Site, queries: Queries) -> list[str]:
    """Each equipment's latest values with their units, out-of-range ones in red:
    `  ⚙ 配电室 1号变压器  winding_temp_c 71.5°C · load_pct 63%`."""
    latest: dict[str, dict[str, float | bool]] = {}
    for reading in queries.latest_readings():
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


def print_final(
    out: Console,
    site: Site,
    ended: dt.datetime,
    gw: Gateway,
    publisher: Publisher,
    store: Path,
    *,
    kept: bool,
) -> None:
    """The final counters as a table, where the simulation ended and, if `kept` (--data),
    where the record is (a temporary store is removed afterwards, and the runner says so)."""
    table = Table(title="最终计数 / final counters", show_header=True, header_style="bold")
    table.add_column("计数 / counter")
    table.add_column("值 / value", justify="right")
    table.add_row("sent (simulator)", str(publisher.published))
    for name, value in sorted(counters(gw).items()):
        table.add_row(name, str(value))
    out.print(table)
    out.print(f"模拟到 / simulated up to: {_when(site, ended)}")
    if kept:
        out.print(f"记录已保存 / the record is kept in: {escape(str(store))}")
