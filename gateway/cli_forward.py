"""`patrol-gateway forward --data DIR --influx URL` (§7, §8): the store's history InfluxDB lacks."""

from __future__ import annotations

import os
import pathlib
from typing import Annotated

import typer

from gateway.cli_ops import DataOpt, fail, open_store

InfluxOpt = Annotated[
    str,
    typer.Option(
        "--influx",
        envvar="PATROL_INFLUX_URL",
        metavar="URL",
        help="InfluxDB 地址 / the InfluxDB (PATROL_INFLUX_TOKEN, _ORG, _BUCKET: the rest)",
    ),
]


def forward_command(influx: InfluxOpt, data: DataOpt = pathlib.Path("./data")) -> None:
    """补发到 InfluxDB · Send the store's history InfluxDB lacks (progress bar; resumable).

    Interrupted or refused, it keeps what InfluxDB took: run it again to go on from there.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from gateway.forward import DeliveryFailed
    from gateway.influx.backfill import pending, send_history
    from gateway.influx.forward import InfluxSettings, InfluxWriter

    opened = open_store(data)
    try:
        writer = InfluxWriter(InfluxSettings.from_env(influx, os.environ))
        total = pending(opened.store)
        columns = (
            TextColumn("转发 / forwarding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("rows", total=total)
            try:
                sent = send_history(
                    opened.store, opened.site, writer, lambda n: bar.advance(task, n)
                )
            except DeliveryFailed as exc:
                raise fail(
                    f"InfluxDB 未接收，已发送部分已记录，可重新运行继续 / {exc}; what was sent "
                    "is recorded: run the command again to resume"
                ) from None
        writer.close()
        typer.echo(f"完成 / done: {sent} rows sent to {influx}")
    finally:
        opened.store.close()
