"""A full disk (issue 8 item 13): the WAL is given back after a failed commit, and the worker
loop waits for the store with backoff, says so once, and stores everything once it works.

On a 2 MiB volume the gateway stuck after 90 scans: the WAL kept the failed batch's pages, and
every 1 s retry rebuilt two days of rules and logged a traceback onto the same full disk.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
import sqlite3
import threading
import time
from typing import Any

import pytest

import gateway.app as app_module
from gateway.app import Gateway
from gateway.config import Site
from gateway.events import Message
from gateway.ingest.memory import MemoryLink
from gateway.ingest.mqtt import BrokerUrl
from gateway.pipeline import Pipeline
from gateway.store.sqlite import SqliteStore
from tests.support.gateway import wait_until

T0 = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)  # 09:30 in Shanghai


def test_a_failed_commit_gives_the_wal_back(tmp_path: pathlib.Path) -> None:
    """SQLite reports the disk full (here: the file may not grow past a page count) after the
    batch's pages went to the WAL; `rollback()` must truncate the WAL to nothing, or the retry
    finds the disk still full of pages that will never be committed."""
    path = tmp_path / "zcity.sqlite"
    store = SqliteStore(path)
    store.commit()
    wal = pathlib.Path(f"{path}-wal")
    db = store._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute("PRAGMA cache_size=5")  # the uncommitted pages spill into the WAL
    db.execute(f"PRAGMA max_page_count={pages + 40}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        for i in range(100_000):
            store.set_meta(f"filler-{i}", "x" * 500)
        store.commit()
    assert wal.stat().st_size > 100_000
    store.rollback()
    assert wal.stat().st_size == 0
    # The store works again once there is room, and nothing of the failed batch is in it.
    db.execute("PRAGMA max_page_count=1073741823")
    store.set_meta("after", "ok")
    store.commit()
    assert store.meta("filler-0") is None and store.meta("after") == "ok"
    store.close()


class FullStore(SqliteStore):
    """The real store, whose writes fail while `failing` is set, like a full disk."""

    failing = False
    probes: list[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probes = []

    def commit(self) -> None:
        if self.failing:
            raise sqlite3.OperationalError("database or disk is full")
        super().commit()

    def probe(self) -> None:
        self.probes.append(time.monotonic())
        if self.failing:
            raise sqlite3.OperationalError("database or disk is full")
        super().probe()


def scan(seq: int) -> Message:
    body = {"credential": "04A224B1C23380", "method": "nfc", "seq": seq}
    return Message("estate/zcity/reader/fd-1/scan", json.dumps(body).encode(), T0, 1, False, seq)


def test_the_worker_waits_for_a_full_disk_quietly_and_then_stores_everything(
    zcity: Site,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the store fails: one error logged (not one per retry), retries further and further
    apart, the rules not rebuilt per retry, nothing acknowledged. Once it works: the rules are
    rebuilt once, every scan is stored once and acknowledged."""
    monkeypatch.setattr(app_module, "SqliteStore", FullStore)
    monkeypatch.setattr(app_module, "STORE_RETRY_FIRST", 0.05)
    monkeypatch.setattr(app_module, "STORE_RETRY_MAX", 0.4)
    rebuilds: list[float] = []
    real_init = Pipeline.__init__

    def counting_init(self: Pipeline, *args: Any, **kwargs: Any) -> None:
        rebuilds.append(time.monotonic())
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "__init__", counting_init)
    gateway = Gateway(zcity, BrokerUrl.parse("mqtt://127.0.0.1:9"), tmp_path, clock=lambda: T0)
    store = gateway.store
    assert isinstance(store, FullStore)
    link = MemoryLink()
    gateway.worker.link = link
    rebuilds.clear()
    store.failing = True
    for seq in range(1, 21):
        assert gateway.inbox.put_nowait(scan(seq))
    caplog.set_level(logging.INFO, logger="gateway")
    thread = threading.Thread(target=gateway._work)
    thread.start()
    try:
        wait_until(lambda: len(store.probes), lambda n: n >= 6, 10, "six probes of the store")
        assert link.acked == []
        assert rebuilds == []  # a store error is not the rules' fault
        gaps = [b - a for a, b in zip(store.probes, store.probes[1:], strict=False)]
        assert gaps[3] > 4 * gaps[0], gaps  # 0.05 s, then 0.1, 0.2, 0.4: backing off
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "full" in errors[0].getMessage()
        assert errors[0].exc_info is None  # no traceback onto the full disk
        store.failing = False
        wait_until(lambda: len(link.acked), lambda n: n == 20, 10, "every scan acknowledged")
    finally:
        gateway._stopping.set()
        thread.join(10)
    assert not thread.is_alive() and gateway.failure is None
    assert [m.mid for m in link.acked] == list(range(1, 21))
    assert len(rebuilds) == 1
    assert store.count("scans") == 20
    answers = [json.loads(s.payload) for s in link.sent if s.topic.endswith("/ack")]
    assert sorted(a["seq"] for a in answers) == list(range(1, 21))
    assert sum("works again" in r.getMessage() for r in caplog.records) == 1
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    store.close()
