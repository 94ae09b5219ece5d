"""The one command, `patrol-gateway` (contract §7)."""

from __future__ import annotations

import datetime as dt
import io
import pathlib
import sys
from collections import Counter
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.api.token_cli import token_app
from gateway.cli_backup import backup_command
from gateway.cli_forward import forward_command
from gateway.cli_ops import (
    DataOpt,
    alert_app,
    health_command,
    incident_app,
    open_store,
    reload_command,
    send,
)
from gateway.clihelp import TidyGroup
from gateway.config import ConfigError, Site, load_site
from gateway.extras import requires_extra
from gateway.records.cli import report_app
from gateway.trust.cli import broker_config_command, qr_command

if TYPE_CHECKING:
    from gateway.influx.forward import InfluxSettings

app = typer.Typer(
    cls=TidyGroup,  # plain help: `FILE`, not `{path}` or `<path>`, on every command
    add_completion=False,
    no_args_is_help=True,
    help="物业值班经理巡检网关 · Patrol Gateway: MQTT in, a durable record out, live rules.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"patrol-gateway {version('patrol-gateway')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("patrol-gateway (版本未知 / version unknown: not installed)")
        raise typer.Exit()


@app.callback()
def _top(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="版本 / print the version and exit"
        ),
    ] = False,
) -> None:
    """物业值班经理巡检网关 · Patrol Gateway: MQTT in, a durable record out, live rules."""


ConfigOpt = Annotated[
    pathlib.Path,
    typer.Option("--config", "-c", metavar="FILE", help="站点配置 / the site file (YAML)"),
]


def _load(path: pathlib.Path) -> Site:
    try:
        return load_site(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _instant(option: str, text: str, site: Site) -> dt.datetime:
    """An instant given on the command line (naive times are site-local), or exit 2."""
    from gateway.timeutil import BadTime, parse_instant

    try:
        return parse_instant(text, site.tz)
    except BadTime as exc:
        typer.echo(f"{option}: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("check-config")
def check_config(
    path: Annotated[pathlib.Path, typer.Argument(metavar="FILE", help="站点配置 / the site file")],
) -> None:
    """校验站点配置 · Validate a site file; exit 0, or 1 listing every error."""
    from gateway.messages import bilingual, count

    site = _load(path)
    people, posts = len(site.people), len(site.posts)
    readers, equipment = len(site.reader_post), len(site.equipment)
    zh = (
        f"站点配置有效：{site.id}（{site.name}），{people} 人，{posts} 个岗位，"
        f"{readers} 个读卡器，{equipment} 台设备，时区 {site.tz.key}"
    )
    en = (
        f"site file is valid: {site.id} ({site.name}), {count(people, 'person', 'people')}, "
        f"{count(posts, 'post', 'posts')}, {count(readers, 'reader', 'readers')}, "
        f"{count(equipment, 'piece of equipment', 'pieces of equipment')}, "
        f"time zone {site.tz.key}"
    )
    typer.echo(bilingual(site.config.site.locale, zh, en))


@app.command()
def replay(
    events: Annotated[str, typer.Argument(help="JSON-lines file of recorded messages, or -")],
    config: ConfigOpt,
    until: Annotated[
        str | None, typer.Option(help="run the clock up to this instant (default: last message)")
    ] = None,
    root: Annotated[str, typer.Option(help="topic root", envvar="PATROL_ROOT")] = "estate",
    store: Annotated[
        pathlib.Path | None, typer.Option(help="also keep the record in this SQLite file")
    ] = None,
    notifications: Annotated[
        bool, typer.Option("--notifications", help="also print the notifications decided (§9)")
    ] = False,
) -> None:
    """回放 · Replay recorded traffic; print every alert transition as JSON lines."""
    from gateway.alerts.book import Transition
    from gateway.replay import ReplayError, ReplayNote, read_events, write_notice, write_transition
    from gateway.replay import replay_decisions as run_replay
    from gateway.store.sqlite import SqliteStore

    site = _load(config)
    end = None if until is None else _instant("--until", until, site)
    try:
        handle = sys.stdin if events == "-" else open(events, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        typer.echo(f"无法读取事件文件 / cannot read {events}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    db = SqliteStore(store) if store is not None else None
    stats: Counter[str] = Counter()
    notes: list[ReplayNote] = []
    shown = 0
    try:
        with handle:
            lines = read_events(handle, site.tz)
            for item in run_replay(site, lines, root, end, db, stats, notes):
                if not isinstance(item, Transition):
                    if notifications:
                        write_notice(sys.stdout, item, site.tz)
                    continue
                write_transition(sys.stdout, item, site.tz)
                stats["transitions"] += 1
                for note in notes[shown:]:
                    typer.echo(f"{events}:{note.line}: {note.text}", err=True)
                shown = len(notes)
        for note in notes[shown:]:
            typer.echo(f"{events}:{note.line}: {note.text}", err=True)
        refused = ", ".join(
            f"{k.removeprefix('rejected_')} {v}"
            for k, v in sorted(stats.items())
            if k.startswith("rejected_")
        )
        typer.echo(
            f"回放完成 / replayed: {stats['received']} messages, {stats['transitions']} "
            f"transitions, {stats['rejected']} refused{f' ({refused})' if refused else ''}, "
            f"{stats['duplicates']} duplicates, {stats['skipped_lines']} lines skipped, "
            f"{stats['commands']} commands ({stats['commands_refused']} refused)",
            err=True,
        )
    except ReplayError as exc:
        typer.echo(f"{events}: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        if db is not None:
            db.close()


InfluxOpt = Annotated[
    str | None,
    typer.Option(
        "--influx",
        envvar="PATROL_INFLUX_URL",
        metavar="URL",
        help="write the time series to this InfluxDB (§8; PATROL_INFLUX_TOKEN, _ORG, _BUCKET)",
    ),
]
KeepOpt = Annotated[
    float,
    typer.Option(
        envvar="PATROL_KEEP_READINGS_DAYS",
        metavar="N",
        min=0.001,
        help="delete readings older than this once InfluxDB has them (only with --influx)",
    ),
]


def _influx(url: str | None) -> InfluxSettings | None:
    """`--influx` and the PATROL_INFLUX_* variables, or None without an InfluxDB."""
    from gateway.influx.forward import InfluxSettings

    if not url:
        return None
    with requires_extra("influx"):
        import influxdb_client  # noqa: F401  (say which extra is missing before starting)
    return InfluxSettings.from_env(url)


@app.command()
def run(
    config: ConfigOpt,
    broker: Annotated[
        str,
        typer.Option(envvar="PATROL_BROKER", help="mqtt://[user:password@]host:port or mqtts://"),
    ] = "mqtt://127.0.0.1:1883",
    data: Annotated[
        pathlib.Path, typer.Option(envvar="PATROL_DATA", help="store and outbox directory")
    ] = pathlib.Path("./data"),
    root: Annotated[str, typer.Option(envvar="PATROL_ROOT", help="topic root")] = "estate",
    ca_file: Annotated[
        pathlib.Path | None,
        typer.Option(envvar="PATROL_CA_FILE", help="mqtts://: the CA to trust (default: system)"),
    ] = None,
    cert: Annotated[
        pathlib.Path | None,
        typer.Option(envvar="PATROL_CERT", help="mqtts://: a client certificate (PEM)"),
    ] = None,
    key: Annotated[
        pathlib.Path | None,
        typer.Option(envvar="PATROL_KEY", help="mqtts://: the client certificate's key (PEM)"),
    ] = None,
    max_payload_bytes: Annotated[
        int,
        typer.Option(
            envvar="PATROL_MAX_PAYLOAD_BYTES",
            min=512,
            help="larger messages are refused before they are queued",
        ),
    ] = 65_536,
    influx: InfluxOpt = None,
    keep_readings_days: KeepOpt = 90.0,
    http: Annotated[
        str,
        typer.Option(
            envvar="PATROL_HTTP", metavar="HOST:PORT", help="the API and the web page, or off"
        ),
    ] = "127.0.0.1:8080",
    clock_start: Annotated[str | None, typer.Option(hidden=True)] = None,
    clock_speed: Annotated[float, typer.Option(hidden=True)] = 1.0,
    clock_anchor: Annotated[float | None, typer.Option(hidden=True)] = None,
    notify_backoff: Annotated[float, typer.Option(hidden=True)] = 30.0,
) -> None:
    """运行网关 · Run the gateway against a broker.

    The broker password may come from PATROL_BROKER_PASSWORD or PATROL_BROKER_PASSWORD_FILE
    instead of --broker, so it is not seen in `ps`.
    """
    import os
    import time

    from gateway.app import run_gateway
    from gateway.clock import ScaledClock, wall_clock
    from gateway.ingest.mqtt import broker_from_options

    site = _load(config)
    password_file = os.environ.get("PATROL_BROKER_PASSWORD_FILE")
    try:
        url = broker_from_options(
            broker,
            password=os.environ.get("PATROL_BROKER_PASSWORD"),
            password_file=pathlib.Path(password_file) if password_file else None,
            ca_file=ca_file,
            cert=cert,
            key=key,
        )
    except ValueError as exc:
        typer.echo(f"代理设置有误 / bad broker settings: {exc}", err=True)
        raise typer.Exit(2) from None
    clock = wall_clock
    if clock_start is not None:
        # A testing aid (docs/architecture.md): simulated time from clock_start at the real
        # instant clock_anchor, running clock_speed times as fast as real time.
        start = _instant("--clock-start", clock_start, site)
        anchor = time.time() if clock_anchor is None else clock_anchor
        clock = ScaledClock(start, clock_speed, anchor)
    raise typer.Exit(
        run_gateway(
            site,
            url,
            data,
            root,
            clock,
            site_file=config,
            max_payload_bytes=max_payload_bytes,
            influx=_influx(influx),
            keep_readings_days=keep_readings_days,
            notify_backoff=notify_backoff,  # a testing aid: the first retry of a notification
            http=http,
        )
    )


@app.command()
def demo(
    port: Annotated[
        int | None,
        typer.Option(
            help="embedded broker port on 127.0.0.1 (0: any free; default 1883, or a free one "
            "if 1883 is taken)"
        ),
    ] = None,
    data: Annotated[
        pathlib.Path | None, typer.Option(help="store directory (default: a fresh temp dir)")
    ] = None,
    speed: Annotated[float, typer.Option(help="simulated minutes per real second")] = 1.0,
    seconds: Annotated[
        float, typer.Option(help="stop after this many seconds (0: run until Ctrl-C)")
    ] = 0,
    faults_scale: Annotated[
        float, typer.Option(hidden=True, help="multiplies every injected fault's rate (0: none)")
    ] = 1.0,
    influx: InfluxOpt = None,
    keep_readings_days: KeepOpt = 90.0,
    http: Annotated[
        str,
        typer.Option(metavar="HOST:PORT", help="the duty desk page (a free port if taken), or off"),
    ] = "127.0.0.1:8080",
) -> None:
    """演示 · The whole system on one machine: embedded broker, store, demo site, simulator."""
    with requires_extra("demo"):
        from gateway.demo.runner import run_demo

        code = run_demo(
            port=port,
            data=data,
            speed=speed,
            seconds=seconds,
            faults_scale=faults_scale,
            influx=_influx(influx),
            keep_readings_days=keep_readings_days,
            http=http,
        )
    raise typer.Exit(code)


roster_app = typer.Typer(
    no_args_is_help=True, help="轮值表 · The duty roster: show it, register or cancel swaps."
)
app.add_typer(roster_app, name="roster")
app.add_typer(alert_app, name="alert")
app.add_typer(incident_app, name="incident")
app.command("reload")(reload_command)
app.command("health")(health_command)
app.command("broker-config")(broker_config_command)
app.command("qr")(qr_command)
app.command("forward")(forward_command)
app.command("backup")(backup_command)
app.add_typer(token_app, name="token")
app.add_typer(report_app, name="report")

CreateOpt = Annotated[
    bool, typer.Option("--create", help="在 --data 下新建存储 / start a new store under --data")
]


def _roster_store(
    config: pathlib.Path, data: pathlib.Path, create: bool, offer_create: bool = True
) -> None:
    """Refuse a --data without a store (a mistyped path) unless told to create one."""
    site = _load(config)
    opened = open_store(data, create=create, site=site, offer_create=offer_create)
    try:
        if not opened.store.meta("site_yaml"):
            opened.store.set_meta("site_id", site.id)
            opened.store.set_meta("site_file", str(config.resolve()))
            opened.store.set_meta("site_yaml", config.read_text(encoding="utf-8"))
            opened.store.commit()
    finally:
        opened.store.close()


@roster_app.command("swap")
def roster_swap(
    config: ConfigOpt,
    date: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="the duty day covered")],
    manager: Annotated[str, typer.Option(help="the person id who takes the duty")],
    by: Annotated[str, typer.Option(help="登记人 / who registers it (admin)")] = "admin",
    data: DataOpt = pathlib.Path("./data"),
    create: CreateOpt = False,
) -> None:
    """登记替班 · Register a swap now; a running gateway on the same --data applies it at once."""
    from gateway.config.models import Role

    site = _load(config)
    if not site.has_role(manager, [Role.duty_manager]):
        typer.echo(
            f"{manager!r} 不是值班经理 / is not a person with the duty_manager role in {config}",
            err=True,
        )
        raise typer.Exit(1)
    _roster_store(config, data, create)
    day = date.date()
    actor = by if by in site.people else manager
    result = send(
        data, {"action": "swap.register", "by": actor, "date": day.isoformat(), "manager": manager}
    )
    if result and dt.datetime.now(dt.UTC) > site.calendar.day_start(day):
        typer.echo(
            "注意：当值日已开始，将记录 duty.unregistered_swap / note: the duty day has started, "
            "so this is recorded as duty.unregistered_swap (4.4: register swaps beforehand)",
            err=True,
        )


@roster_app.command("cancel")
def roster_cancel(
    config: ConfigOpt,
    date: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="the duty day")],
    by: Annotated[str, typer.Option(help="撤销人 / who cancels it")] = "admin",
    data: DataOpt = pathlib.Path("./data"),
) -> None:
    """撤销替班 · Cancel a swap before its duty day starts; the roster's person is on duty."""
    site = _load(config)
    _roster_store(config, data, False, offer_create=False)
    day = date.date()
    rostered = site.rostered_manager(day)
    actor = by if by in site.people else (rostered or by)
    send(data, {"action": "swap.cancel", "by": actor, "date": day.isoformat()})


@roster_app.command("show")
def roster_show(
    config: ConfigOpt,
    week: Annotated[
        str | None, typer.Option(help="ISO week like 2026-W48 (default: this week)")
    ] = None,
    data: DataOpt = pathlib.Path("./data"),
) -> None:
    """查看轮值表 · Who is on duty each day of a week; swaps are marked *."""
    from rich.console import Console
    from rich.table import Table

    from gateway.events import SwapRegistered
    from gateway.pipeline import command_event
    from gateway.roster import Roster, Swap
    from gateway.store.sqlite import SqliteStore, store_file
    from gateway.timeutil import iso

    site = _load(config)
    if site.config.roster is None:
        typer.echo("站点配置没有轮值表 / the site file has no roster", err=True)
        raise typer.Exit(1)
    now = dt.datetime.now(dt.UTC)
    try:
        if week is None:
            year, number, _ = site.calendar.day_of(now).isocalendar()
        else:
            year_text, number_text = week.upper().split("-W")
            year, number = int(year_text), int(number_text)
        monday = dt.date.fromisocalendar(year, number, 1)
    except ValueError:
        typer.echo(f"--week {week!r}: write an ISO week like 2026-W48", err=True)
        raise typer.Exit(2) from None
    roster = Roster(site)
    path = store_file(data, site.id)
    if path.exists():
        store = SqliteStore(path)
        for row in store.applied_commands(("swap.register", "swap.cancel"), now):
            event = command_event(row, site)
            if isinstance(event, SwapRegistered):
                roster.add(Swap.live(event))
        store.close()
    table = Table(title=f"{site.name} 轮值表 / roster {year}-W{number:02d}")
    for column in ("日期 date", "星期 day", "值班经理 duty manager", "替班 swap"):
        table.add_column(column)
    names = "一二三四五六日"
    for offset in range(7):
        day = monday + dt.timedelta(days=offset)
        rostered = roster.rostered(day)
        swap = roster.swap_in_effect(day, max(now, site.calendar.day_start(day)))
        if swap is not None and swap.manager == rostered:
            swap = None  # a cancelled swap: the roster's person is on duty again
        manager = swap.manager if swap else rostered
        who = site.people[manager].name if manager in site.people else str(manager)
        note = ""
        if swap is not None:
            late = " (late / 逾期登记)" if swap.registered_at > site.calendar.day_start(day) else ""
            when = iso(swap.registered_at, site.tz)[:16].replace("T", " ")
            note = f"* {site.people[rostered].name if rostered else '-'} → {who}, "
            note += f"登记 registered {when}{late}"
        table.add_row(day.isoformat(), f"周{names[offset]} {day:%a}", f"{who} ({manager})", note)
    Console().print(table)


def main() -> None:
    """Entry point of the `patrol-gateway` command."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8")  # Chinese output whatever the locale says
    app()
