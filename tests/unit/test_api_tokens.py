"""`patrol-gateway token issue|list|revoke` (§7, §10) and the live board's watcher."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
from typing import Any

from typer.testing import CliRunner

from gateway.alerts.book import AlertBook
from gateway.api.live import TRANSITIONS_PER_LOOK, Hub, StatusTap
from gateway.api.queries import ReadSide
from gateway.api.tokens import find_token, hash_token
from gateway.cli import app
from gateway.config import Site
from gateway.events import Message
from gateway.ingest.memory import MemoryLink
from gateway.ingest.topics import Topics
from gateway.store.sqlite import SqliteStore
from gateway.worker import Worker

T0 = dt.datetime(2026, 11, 28, 1, 30, tzinfo=dt.UTC)
TOPICS = Topics("estate", "zcity")


def _store(zcity: Site, data: pathlib.Path) -> pathlib.Path:
    path = data / "zcity.sqlite"
    store = SqliteStore(path)
    store.set_meta("site_id", "zcity")
    zcity_file = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "sites" / "zcity.yaml"
    store.set_meta("site_yaml", zcity_file.read_text(encoding="utf-8"))
    store.close()
    return path


def test_a_token_is_printed_once_and_stored_only_as_its_hash(
    zcity: Site, tmp_path: pathlib.Path
) -> None:
    """A store that kept the token itself would hand every person's access to whoever reads
    the file; revoke must end it, and an unknown person or id must be refused."""
    path = _store(zcity, tmp_path)
    runner = CliRunner()
    issued = runner.invoke(app, ["token", "issue", "--by", "li-na", "--data", str(tmp_path)])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip().splitlines()[-1]
    assert token.startswith("pg_") and len(token) > 40
    db = sqlite3.connect(path)
    dump = "\n".join(db.iterdump())
    assert token not in dump and hash_token(token) in dump
    row = find_token(db, token)
    assert row is not None and row.person == "li-na" and row.valid
    listed = runner.invoke(app, ["token", "list", "--data", str(tmp_path)])
    assert row.id in listed.output and "li-na" in listed.output
    revoked = runner.invoke(app, ["token", "revoke", row.id, "--data", str(tmp_path)])
    assert revoked.exit_code == 0, revoked.output
    again = find_token(db, token)
    assert again is not None and not again.valid
    db.close()
    unknown = runner.invoke(app, ["token", "issue", "--by", "nobody", "--data", str(tmp_path)])
    assert unknown.exit_code == 1 and "nobody" in unknown.output
    missing = runner.invoke(app, ["token", "revoke", "ffffffff", "--data", str(tmp_path)])
    assert missing.exit_code == 1


def test_the_board_watcher_sends_what_is_new_and_resyncs_a_flood(
    zcity: Site, tmp_path: pathlib.Path
) -> None:
    """The watcher must send each new scan and transition once (not the history again), the
    patrol status when the worker publishes one, and a `resync` instead of a flood."""
    path = tmp_path / "zcity.sqlite"
    tap = StatusTap(MemoryLink(), TOPICS.patrol_status)
    worker = Worker(zcity, SqliteStore(path), tap, TOPICS, lambda: T0, T0)
    worker.step([])
    reads = ReadSide(path)
    hub = Hub(reads, lambda: zcity, lambda: (tap.version, tap.latest()), lambda: T0)
    got: list[tuple[str, Any]] = []
    hub.subscribe(lambda kind, data: got.append((kind, data)), watch=False)
    hub.look()  # notes where the store is
    body = json.dumps({"credential": "04B1C2D3E4F501", "method": "nfc", "seq": 1}).encode()
    worker.step([Message("estate/zcity/reader/fd-1/scan", body, T0)])
    hub.look()
    kinds = [k for k, _ in got]
    assert kinds.count("scans") == 1 and kinds.count("status") == 1
    (scan,) = json.loads(got[kinds.index("scans")][1])
    assert scan["person"] == "li-na"
    status = json.loads(got[kinds.index("status")][1])
    assert status["patrol"]["duty_manager"]["id"] == "li-na"
    assert status["duty_until"] == "2026-11-29T08:30:00+08:00"
    got.clear()
    hub.look()
    assert got == []  # nothing new, nothing sent
    store = worker.store
    book = AlertBook("zcity")
    for n in range(TRANSITIONS_PER_LOOK + 1):
        t = book.raise_("incident.major", f"i{n}", "critical", T0, "x", {})
        store.add_transition(t, zcity.tz)
    store.commit()
    hub.look()
    assert [k for k, _ in got] == ["resync"]
    reads.close()
    store.close()
