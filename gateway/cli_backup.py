"""`patrol-gateway backup --data DIR --out FILE` (§7): a consistent copy of the running store.

SQLite's online backup API copies the database page by page while the gateway keeps writing
(WAL lets this reader in); the copy is one consistent state. It is written beside FILE first
and renamed, so FILE is never half a store. docs/influxdb.md says how to restore.
"""

from __future__ import annotations

import pathlib
import sqlite3
from typing import Annotated

import typer

from gateway.cli_ops import DataOpt, fail

PAGES_PER_STEP = 1024


def backup_store(source: pathlib.Path, out: pathlib.Path) -> int:
    """Copy the store at `source` to `out` (atomically); returns the copy's size in bytes."""
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(partial)
    try:
        # A few pages at a time: the gateway's writer is never held for the whole copy.
        src.backup(dst, pages=PAGES_PER_STEP)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()
    partial.replace(out)
    return out.stat().st_size


def backup_command(
    out: Annotated[
        pathlib.Path, typer.Option("--out", metavar="FILE", help="备份文件 / the copy to write")
    ],
    data: DataOpt = pathlib.Path("./data"),
) -> None:
    """备份 · A consistent copy of the store, while the gateway runs (SQLite online backup)."""
    from gateway.store.sqlite import find_store

    try:
        source = find_store(data)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    if out.resolve() == source.resolve():
        raise fail("--out 不能是存储本身 / --out must not be the store itself")
    if not out.parent.is_dir():
        raise fail(f"目录不存在 / no such folder: {out.parent}")
    try:
        size = backup_store(source, out)
    except sqlite3.Error as exc:
        raise fail(f"备份失败 / backup failed: {exc}") from None
    typer.echo(f"已备份 / backed up {source} → {out} ({size} bytes)")
