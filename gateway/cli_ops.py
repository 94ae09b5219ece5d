"""Commands on a gateway's store (`--data`): alerts, incidents, swaps, reload, health (§7).

Each writes a command to the store; the running gateway's worker, the single writer, applies it
on its clock within a fraction of a second and records what it did, which this process waits
for and prints. The store knows its site, so `--config` is not needed beside `--data`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from gateway.commands import Command, CommandError, check_actor, parse
from gateway.config import ConfigError, Site
from gateway.config.loader import load_yaml, parse_site
from gateway.store.read import Heartbeat, Queries, StoreTooOld
from gateway.store.sqlite import SqliteStore, find_store, store_file
from gateway.timeutil import iso

HEARTBEAT_FRESH_SECONDS = 15.0
WAIT_SECONDS = 15.0

DataOpt = Annotated[
    pathlib.Path,
    typer.Option(envvar="PATROL_DATA", metavar="DIR", help="网关的数据目录 / the gateway's --data"),
]
ByOpt = Annotated[str, typer.Option("--by", metavar="PERSON", help="操作人 / the person acting")]

alert_app = typer.Typer(no_args_is_help=True, help="告警 · List, acknowledge and shelve alerts.")
incident_app = typer.Typer(no_args_is_help=True, help="事件 · Report incidents (§11, 4.2).")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print to standard error; the caller raises the returned Exit."""
    typer.echo(message, err=True)
    return typer.Exit(code)


@dataclass
class Opened:
    """A store opened from the command line, and the site it belongs to."""

    store: SqliteStore
    site: Site
    path: pathlib.Path


def open_store(
    data: pathlib.Path, create: bool = False, site: Site | None = None, offer_create: bool = False
) -> Opened:
    """The store under `--data` and its site (from the store itself unless given).

    `offer_create`: the command has a `--create` option; a missing store names it."""
    try:
        path = find_store(data)
    except FileNotFoundError as exc:
        if create and site is not None:
            path = store_file(data, site.id)
        else:
            hint = "\n(use --create to start a new store there)" if offer_create else ""
            raise fail(f"{exc}{hint}") from None
    store = SqliteStore(path)
    if site is None:
        text = store.meta("site_yaml")
        if not text:
            store.close()
            raise fail(
                f"存储中没有站点配置 / {path} does not hold its site file yet: start the gateway "
                "on it once, or give --config"
            )
        try:
            site = parse_site(load_yaml(text), f"{path} (site file as last loaded)")
        except ConfigError as exc:
            store.close()
            raise fail(str(exc)) from None
    return Opened(store, site, path)


@dataclass
class Reader:
    """A store opened read-only from the command line, and the site it belongs to."""

    queries: Queries
    site: Site
    path: pathlib.Path


def open_reader(data: pathlib.Path, site: Site | None = None) -> Reader:
    """The store under `--data` on a read-only connection, and its site (from the store itself
    unless given): for the commands that only read, which then change nothing, not even the
    schema version."""
    try:
        path = find_store(data)
        queries = Queries.open(path)
    except (FileNotFoundError, StoreTooOld) as exc:
        raise fail(str(exc)) from None
    if site is None:
        text = queries.meta("site_yaml")
        try:
            if not text:
                raise fail(
                    f"存储中没有站点配置 / {path} does not hold its site file yet: start the "
                    "gateway on it once, or give --config"
                )
            site = parse_site(load_yaml(text), f"{path} (site file as last loaded)")
        except ConfigError as exc:
            queries.close()
            raise fail(str(exc)) from None
        except typer.Exit:
            queries.close()
            raise
    return Reader(queries, site, path)


def gateway_running(beat: Heartbeat | None) -> tuple[bool, str]:
    """Is a gateway running on this store right now, by its heartbeat? (and what is wrong if
    not)"""
    if beat is None:
        return False, "网关从未在此存储上运行 / no gateway has run on this store"
    age = time.time() - (0.0 if beat.at is None else beat.at.timestamp())
    try:
        os.kill(beat.pid, 0)
        alive = True
    except (OSError, ValueError):
        alive = False
    if not alive or age > HEARTBEAT_FRESH_SECONDS:
        return False, f"网关未运行 / the gateway is not running (last seen {age:.0f} s ago)"
    if not beat.connected:
        return False, "网关未连接到代理 / the gateway runs but is not connected to the broker"
    return True, f"网关运行中 / running (pid {beat.pid}, heartbeat {age:.1f} s ago)"


def _heartbeat(store: SqliteStore) -> Heartbeat | None:
    return Heartbeat.parse(store.meta("heartbeat"))


def send(
    data: pathlib.Path,
    body: dict[str, Any],
    check: Callable[[SqliteStore, Command], None] | None = None,
) -> dict[str, Any]:
    """Queue a command on the store, wait for the gateway to apply it, print what it did."""
    opened = open_store(data)
    store, site = opened.store, opened.site
    try:
        try:
            command = parse(body, site.tz)
            check_actor(site, command)
            if check is not None:
                check(store, command)
        except CommandError as exc:
            raise fail(str(exc)) from None
        now = dt.datetime.now(dt.UTC)  # the command line is a composition root: it reads the clock
        ident = store.add_command(command.action, command.body(), command.by, now)
        store.commit()
        running, why = gateway_running(_heartbeat(store))
        if not running:
            typer.echo(
                f"{why}\n命令已排队，网关启动时执行 / command {ident} is queued: the gateway "
                "applies it when it starts",
                err=True,
            )
            return {}
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            stored = store.command(ident)
            store.commit()
            if stored is not None and stored.status != "pending":
                if stored.status == "refused":
                    raise fail(stored.result)
                result: dict[str, Any] = json.loads(stored.result)
                typer.echo(str(result.get("message", "")))
                return result
            time.sleep(0.05)
        raise fail(
            f"网关 {WAIT_SECONDS:.0f} 秒内未处理 / the gateway did not apply command {ident} "
            f"within {WAIT_SECONDS:.0f} s; it stays queued"
        )
    finally:
        store.close()


def _alert_exists(store: SqliteStore, command: Command) -> None:
    ident = command.args.get("id")
    if ident is None:
        return
    alert = store.alert(str(ident))
    if alert is None:
        raise CommandError(
            f"未知告警 / no alert with id {ident!r} (see `patrol-gateway alert list`)"
        )
    if alert.state == "closed":
        raise CommandError(f"告警已关闭，未作更改 / alert {ident} is closed: nothing changed")


@alert_app.command("list")
def alert_list(
    data: DataOpt = pathlib.Path("./data"),
    open_only: Annotated[
        bool, typer.Option("--open", help="只列未关闭的 / open ones only")
    ] = False,
) -> None:
    """列出告警 · The alerts, newest first, one line each."""
    reader = open_reader(data)
    try:
        alerts = reader.queries.alerts("active" if open_only else None, limit=1000)
    finally:
        reader.queries.close()
    tz = reader.site.tz
    if not alerts:
        typer.echo("没有告警 / no alerts")
    for a in alerts:
        when = iso(a.raised_at, tz)[:16].replace("T", " ")
        shelved = (
            f" 搁置至/shelved until {iso(a.shelved_until, tz)[:16]}" if a.shelved_until else ""
        )
        by = f" ({a.acknowledged_by})" if a.acknowledged_by else ""
        typer.echo(
            f"{a.id}  {when}  {a.state:<12} {a.severity:<8} {a.rule} {a.subject}{by}{shelved}  "
            f"{a.message}"
        )


@alert_app.command("ack")
def alert_ack(
    ident: Annotated[str, typer.Argument(metavar="ID", help="告警 id / the alert id")],
    by: ByOpt,
    comment: Annotated[str, typer.Option(help="说明 / a comment")] = "",
    data: DataOpt = pathlib.Path("./data"),
) -> None:
    """确认告警 · Acknowledge an alert (a rule that does not clear closes on it, §6)."""
    body: dict[str, Any] = {"action": "alert.ack", "by": by, "id": ident}
    if comment:
        body["comment"] = comment
    send(data, body, _alert_exists)


@alert_app.command("shelve")
def alert_shelve(
    ident: Annotated[str, typer.Argument(metavar="ID", help="告警 id / the alert id")],
    by: ByOpt,
    until: Annotated[str, typer.Option(metavar="TS", help="搁置到 / until (≤ 24 h)")],
    comment: Annotated[str, typer.Option(help="说明 / a comment")] = "",
    data: DataOpt = pathlib.Path("./data"),
) -> None:
    """搁置告警 · Shelve an alert until an instant: open, but no notifications (§6)."""
    body: dict[str, Any] = {"action": "alert.shelve", "by": by, "id": ident, "until": until}
    if comment:
        body["comment"] = comment
    send(data, body, _alert_exists)


@alert_app.command("comment")
def alert_comment(
    ident: Annotated[str, typer.Argument(metavar="ID", help="告警 id / the alert id")],
    by: ByOpt,
    text: Annotated[str, typer.Option("--comment", help="说明 / the comment")],
    data: DataOpt = pathlib.Path("./data"),
) -> None:
    """备注告警 · Comment on an alert."""
    send(data, {"action": "alert.comment", "by": by, "id": ident, "comment": text}, _alert_exists)


@incident_app.command("report")
def incident_report(
    by: ByOpt,
    title: Annotated[str, typer.Option(help="事件 / what happened")],
    major: Annotated[bool, typer.Option("--major", help="重大事件 / a major incident")] = False,
    data: DataOpt = pathlib.Path("./data"),
) -> None:
    """上报事件 · Report an incident; --major raises incident.major at once (4.2)."""
    send(data, {"action": "incident.report", "by": by, "title": title, "major": major})


def reload_command(data: DataOpt = pathlib.Path("./data")) -> None:
    """重新加载站点文件 · Re-read the running gateway's site file (like SIGHUP)."""
    opened = open_store(data)
    store = opened.store
    try:
        beat = _heartbeat(store)
        running, why = gateway_running(beat)
        if not running or beat is None:
            raise fail(why)
        before = (beat.reload or {}).get("at")
        os.kill(beat.pid, signal.SIGHUP)
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = _heartbeat(store)
            outcome = (None if now is None else now.reload) or {}
            store.commit()
            if outcome.get("at") != before:
                if not outcome.get("ok"):
                    raise fail(str(outcome.get("message")))
                typer.echo(str(outcome.get("message")))
                return
        raise fail("网关未回应 / the gateway did not answer the reload in time")
    finally:
        store.close()


def health_command(data: DataOpt = pathlib.Path("./data")) -> None:
    """健康检查 · Exit 0 when the gateway on this store runs and is connected."""
    try:
        queries = Queries.open(find_store(data))
    except (FileNotFoundError, StoreTooOld) as exc:
        raise fail(str(exc)) from None
    try:
        beat = queries.heartbeat()
    finally:
        queries.close()
    running, why = gateway_running(beat)
    if not running or beat is None:
        raise fail(why)
    typer.echo(why)
    for url, reason in sorted(beat.notify_failing.items()):
        # The gateway runs; one notification channel does not take messages (they are retried).
        typer.echo(f"通知渠道发送失败 / notify channel failing: {url}: {reason}")
