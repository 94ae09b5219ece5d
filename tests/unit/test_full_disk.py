"""A full disk (issue 8 item 13): the WAL is given back after a failed commit, and the worker
loop waits for the store with backoff, says so once, and stores everything once it works.

On a 2 MiB volume the gateway stuck after 90 scans: the WAL kept the failed batch's pages, and
every 1 s retry rebuilt two days of rules and logged a traceback onto the same full disk.
"""

from __future__ import annotations

import datetime as dt
import itertools
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
    monkeypatch.setattr(app_module, "STORE_RETRY_MAX", 0.8)
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
        assert gaps[3] > 3 * gaps[0], gaps  # 0.05 s, 0.1, 0.2, 0.4, …: backing off
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


class AlmostFullStore(FullStore):
    """A disk with room for the probe's tiny write but not for a batch: what a real 2 MiB
    tmpfs does (the probe succeeds, the batch's commit fails, again and again)."""

    attempts: list[float]

    def commit(self) -> None:
        if self.failing:
            self.attempts.append(time.monotonic())
            raise sqlite3.OperationalError("database or disk is full")
        super().commit()

    def probe(self) -> None:
        self.probes.append(time.monotonic())
        self.set_meta("probe", "")
        super(FullStore, self).commit()


def start(
    zcity: Site, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, store_class: type
) -> tuple[Gateway, MemoryLink, list[float]]:
    """A gateway on `store_class` with a fast backoff, its link the memory twin, its worker
    thread not yet started; and the list of the rules' rebuilds from now on."""
    monkeypatch.setattr(app_module, "SqliteStore", store_class)
    monkeypatch.setattr(app_module, "STORE_RETRY_FIRST", 0.05)
    monkeypatch.setattr(app_module, "STORE_RETRY_MAX", 0.8)
    rebuilds: list[float] = []
    real_init = Pipeline.__init__

    def counting_init(self: Pipeline, *args: Any, **kwargs: Any) -> None:
        rebuilds.append(time.monotonic())
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "__init__", counting_init)
    gateway = Gateway(zcity, BrokerUrl.parse("mqtt://127.0.0.1:9"), tmp_path, clock=lambda: T0)
    link = MemoryLink()
    gateway.worker.link = link
    rebuilds.clear()
    return gateway, link, rebuilds


def test_a_store_that_takes_the_probe_but_not_the_batch_is_retried_with_backoff(
    zcity: Site,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Seen on a real 2 MiB tmpfs: the probe's tiny write fits, the batch does not. The retry
    must still back off (not once per probe), log the failure once and "works again" only when
    a batch is stored, and rebuild the rules only once per retry of the batch."""
    gateway, link, rebuilds = start(zcity, tmp_path, monkeypatch, AlmostFullStore)
    store = gateway.store
    assert isinstance(store, AlmostFullStore)
    store.attempts = []
    store.failing = True
    for seq in range(1, 21):
        assert gateway.inbox.put_nowait(scan(seq))
    caplog.set_level(logging.INFO, logger="gateway")
    thread = threading.Thread(target=gateway._work)
    thread.start()
    try:
        wait_until(lambda: len(store.attempts), lambda n: n >= 5, 10, "five attempts")
        attempts = list(store.attempts)
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps[3] > 3 * gaps[0], gaps  # backing off between the batch's retries
        assert len(rebuilds) <= len(attempts)  # at most one rebuild per retry
        assert link.acked == []
        assert [r.getMessage() for r in caplog.records if "works again" in r.getMessage()] == []
        store.failing = False
        wait_until(lambda: len(link.acked), lambda n: n == 20, 10, "every scan acknowledged")
    finally:
        gateway._stopping.set()
        thread.join(10)
    assert gateway.failure is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert sum("works again" in r.getMessage() for r in caplog.records) == 1
    assert store.count("scans") == 20
    store.close()


class HeartbeatOnFullDisk(FullStore):
    """The disk fills between a batch's commit and the heartbeat's: the heartbeat fails once."""

    heartbeats = 0

    def set_meta(self, key: str, value: str) -> None:
        if key == "heartbeat":
            type(self).heartbeats += 1
            if type(self).heartbeats == 1:
                raise sqlite3.OperationalError("database or disk is full")
        super().set_meta(key, value)


def test_a_full_disk_at_the_heartbeat_does_not_kill_the_worker(
    zcity: Site, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat is bookkeeping: a store error there must not end the worker thread (the
    process would exit 70 on a full disk instead of waiting for room)."""
    gateway, link, _ = start(zcity, tmp_path, monkeypatch, HeartbeatOnFullDisk)
    monkeypatch.setattr(app_module, "HEARTBEAT_SECONDS", 0.0)
    thread = threading.Thread(target=gateway._work)
    thread.start()
    try:
        assert gateway.inbox.put_nowait(scan(1))
        wait_until(lambda: len(link.acked), lambda n: n == 1, 10, "the scan acknowledged")
        wait_until(lambda: HeartbeatOnFullDisk.heartbeats, lambda n: n >= 3, 10, "later heartbeats")
    finally:
        gateway._stopping.set()
        thread.join(10)
    assert gateway.failure is None
    assert gateway.store.meta("heartbeat") is not None
    gateway.store.close()
