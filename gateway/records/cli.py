"""`patrol-gateway report weekly|worklog` (§7, §11): the weekly pack and a day's work log.

Reads the store on a read-only connection, so it runs beside the gateway and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import pathlib
import sqlite3
import sys
from typing import Annotated

import typer

from gateway.cli_ops import DataOpt, fail, open_reader
from gateway.config import ConfigError, load_site
from gateway.records import files, weekly, worklog
from gateway.records.source import Source

report_app = typer.Typer(
    no_args_is_help=True,
    help="报表 · Records: the weekly review pack (3.7) and a duty day's work log (3.4).",
)


class Format(enum.StrEnum):
    """What to write."""

    html = "html"
    csv = "csv"
    pdf = "pdf"


FormatOpt = Annotated[
    Format, typer.Option("--format", help="html | csv | pdf（默认 html / default html）")
]
OutOpt = Annotated[
    pathlib.Path | None,
    typer.Option(
        "--out", metavar="FILE", help="写入文件（默认标准输出）/ write here (default stdout)"
    ),
]


ConfigOpt = Annotated[
    pathlib.Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="站点配置（默认取存储中的）/ the site file (default: the one the store holds)",
    ),
]


def _source(data: pathlib.Path, config: pathlib.Path | None) -> tuple[Source, sqlite3.Connection]:
    site = None
    if config is not None:
        try:
            site = load_site(config)
        except ConfigError as exc:
            raise fail(str(exc)) from None
    reader = open_reader(data, site=site)
    return Source(reader.queries.connection, reader.site), reader.queries.connection


def _write(body: str | bytes, out: pathlib.Path | None) -> None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        out.write_bytes(data)
        typer.echo(f"已写入 / written: {out} ({len(data)} bytes)", err=True)


@report_app.command("weekly")
def weekly_command(
    data: DataOpt = pathlib.Path("./data"),
    week: Annotated[
        str | None,
        typer.Option("--week", metavar="YYYY-Www", help="ISO 周 / ISO week, e.g. 2026-W48"),
    ] = None,
    format: FormatOpt = Format.html,
    out: OutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """值班周报 · The weekly review pack of an ISO week (default: this week)."""
    source, db = _source(data, config)
    try:
        now = dt.datetime.now(dt.UTC)
        name = week or weekly.week_of(source.site.calendar.day_of(now))
        try:
            pack = weekly.build(source, name)
        except weekly.BadWeek as exc:
            raise fail(str(exc)) from None
        try:
            _write(files.weekly_file(pack, source.site, format, now), out)
        except files.FontMissing as exc:
            raise fail(str(exc)) from None
    finally:
        db.close()


@report_app.command("worklog")
def worklog_command(
    data: DataOpt = pathlib.Path("./data"),
    date: Annotated[
        str | None,
        typer.Option(
            "--date", metavar="YYYY-MM-DD", help="当值日 / the duty day (default: today's)"
        ),
    ] = None,
    format: FormatOpt = Format.html,
    out: OutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """值班经理工作日志 · The work log of a duty day."""
    source, db = _source(data, config)
    try:
        now = dt.datetime.now(dt.UTC)
        site = source.site
        try:
            day = dt.date.fromisoformat(date) if date else site.calendar.day_of(now)
        except ValueError:
            raise fail(f"日期应写作 / write the date as 2026-11-27, not {date!r}") from None
        log = worklog.build(source, day)
        try:
            _write(files.worklog_file(log, site, format, now), out)
        except files.FontMissing as exc:
            raise fail(str(exc)) from None
    finally:
        db.close()
