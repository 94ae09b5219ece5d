"""The single writer, driven through the in-memory link twin (issue 7 §3): batching, ack after
commit, alert publication order, a poison message isolated, a store error retried."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
import time
from typing import Any

import pytest

from gateway.commands import parse
from gateway.config import Site
from gateway.events import Event, Message
from gateway.forward import MqttAlerts
from gateway.ingest.memory import MemoryLink
from gateway.ingest.render import Renderer
from gateway.ingest.topics import Topics
from gateway.store.sqlite import SqliteStore
from gateway.worker import StoreUnavailable, Submitted, Worker

T0 = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)  # 09:30 in Shanghai
TOPICS = Topics("estate", "zcity")


def clock() -> dt.datetime:
    return T0 + dt.timedelta(minutes=30)


def msg(topic: str, payload: object, mid: int, minutes: float = 0) -> Message:
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    return Message(f"estate/zcity/{topic}", body, T0 + dt.timedelta(minutes=minutes), 1, False, mid)


def scan(credential: str, seq: int, mid: int) -> Message:
    return msg("reader/fd-1/scan", {"credential": credential, "method": "nfc", "seq": seq}, mid)


def count(path: pathlib.Path, table: str) -> int:
    """Rows another connection sees: only what is committed."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def make(zcity: Site, path: pathlib.Path, link: MemoryLink) -> Worker:
    return Worker(zcity, SqliteStore(path), link, TOPICS, clock, T0)


def test_a_batch_is_acknowledged_only_after_its_commit(zcity: Site, tmp_path: pathlib.Path) -> None:
    """Acknowledging before the commit would lose scans on a crash: at every ack the scan must
    already be visible to another connection."""
    path = tmp_path / "zcity.sqlite"
    seen: list[int] = []
    link = MemoryLink(on_ack=lambda m: seen.append(count(path, "scans")))
    worker = make(zcity, path, link)
    worker.step([scan("04A224B1C23380", i, i) for i in range(1, 4)])
    assert [m.mid for m in link.acked] == [1, 2, 3]
    assert seen == [3, 3, 3]
    answers = [json.loads(s.payload) for s in link.sent if s.topic.endswith("/ack")]
    assert [a["seq"] for a in answers] == [1, 2, 3] and all(a["ok"] for a in answers)


class Poison:
    """A rule with a bug that fails on one credential's scans."""

    def on_event(self, ctx: Any, event: Event) -> None:
        if getattr(event, "credential", "") == "04E5F607080904":
            raise ZeroDivisionError("a rule bug")

    def next_deadline(self) -> dt.datetime | None:
        return None

    def on_deadline(self, ctx: Any) -> None:
        """Never called."""


def test_a_poison_message_is_refused_and_the_rest_stored(
    zcity: Site, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8 item 1: one message that always fails must not stall the site. It is refused
    as `internal` on gateway/rejected and acknowledged; the messages around it are stored,
    answered and acknowledged."""
    import gateway.pipeline as pipeline_module

    real = pipeline_module.build_rules
    monkeypatch.setattr(pipeline_module, "build_rules", lambda *a, **k: [*real(*a, **k), Poison()])
    path = tmp_path / "zcity.sqlite"
    link = MemoryLink()
    worker = make(zcity, path, link)
    batch = [
        scan("04A224B1C23380", 1, 1),
        scan("04E5F607080904", 2, 2),
        scan("04A224B1C23380", 3, 3),
    ]
    worker.step(batch)
    assert sorted(m.mid for m in link.acked) == [1, 2, 3]
    assert count(path, "scans") == 2
    rejected = [json.loads(s.payload) for s in link.sent if s.topic.endswith("/rejected")]
    assert len(rejected) == 1 and "internal" in rejected[0]["reason"]
    assert SqliteStore(path).rejected_counts() == {"internal": 1}
    # The site goes on: the next batch is handled normally.
    worker.step([scan("04A224B1C23380", 4, 4)])
    assert count(path, "scans") == 3
    # The rules were rebuilt, the counts were not: each message once, the refusal too.
    counters = worker.pipeline.counters
    assert (counters["received"], counters["scan"], counters["rejected_internal"]) == (4, 3, 1)


class FailingStore(SqliteStore):
    """The real store whose commits fail while `failing` is set (a full or locked disk)."""

    failing = False

    def commit(self) -> None:
        if self.failing:
            raise sqlite3.OperationalError("database or disk is full")
        super().commit()


def test_a_store_error_keeps_the_batch_unacknowledged_for_a_retry(
    zcity: Site, tmp_path: pathlib.Path
) -> None:
    """A store error is not the message's fault: nothing is acknowledged or refused, the batch
    is kept, and once the store works the same batch is stored exactly once."""
    path = tmp_path / "zcity.sqlite"
    store = FailingStore(path)
    link = MemoryLink()
    worker = Worker(zcity, store, link, TOPICS, clock, T0)
    batch = [scan("04A224B1C23380", 1, 1), scan("04A224B1C23380", 2, 2)]
    store.failing = True
    with pytest.raises(StoreUnavailable) as info:
        worker.step(batch)
    assert info.value.remaining == batch
    assert link.acked == [] and link.sent == [] and count(path, "scans") == 0
    store.failing = False
    worker.recover()
    worker.step(info.value.remaining)
    assert count(path, "scans") == 2 and [m.mid for m in link.acked] == [1, 2]
    assert store.rejected_counts() == {}
    # Counted once, when stored: the rolled-back attempt left no count behind.
    assert (worker.pipeline.counters["received"], worker.pipeline.counters["scan"]) == (2, 2)


def test_commands_submitted_in_process_are_applied_and_resolved(
    zcity: Site, tmp_path: pathlib.Path
) -> None:
    """`submit` gets back what the command did, after its commit."""
    path = tmp_path / "zcity.sqlite"
    link = MemoryLink()
    worker = make(zcity, path, link)
    worker.step([scan("FFFF0000", 1, 1)])  # unknown card: scan.unknown_credential
    (alert,) = [
        a for a in SqliteStore(path).alerts(open_only=True) if a.rule == "scan.unknown_credential"
    ]
    item = Submitted(parse({"action": "alert.ack", "by": "chen-jie", "id": alert.id}, zcity.tz))
    worker.step([], [item])
    outcome = item.wait(0)
    assert outcome is not None and outcome.ok
    assert alert.id not in {a.id for a in SqliteStore(path).alerts(open_only=True)}
    refused = Submitted(parse({"action": "alert.ack", "by": "nobody", "id": alert.id}, zcity.tz))
    worker.step([], [refused])
    assert refused.outcome is not None and not refused.outcome.ok


def test_alert_forwarder_publishes_in_order_and_moves_its_cursor(
    zcity: Site, tmp_path: pathlib.Path
) -> None:
    """Each alert's latest record goes out retained, in the order of the changes; the cursor
    moves only once the broker confirmed, so an unconfirmed batch is sent again."""
    path = tmp_path / "zcity.sqlite"
    link = MemoryLink()
    worker = make(zcity, path, link)
    worker.step([msg("device/gr-2/status", "offline", 1), msg("device/gr-1/status", "offline", 2)])
    worker.step([msg("device/gr-2/status", "online", 3, 1)])
    store = SqliteStore(path)
    last = store.last_transition_id()
    out = MemoryLink(confirm=False)
    forwarder = MqttAlerts(path, out, Renderer(TOPICS, zcity.tz))
    forwarder.CONFIRM_SECONDS = 0.05
    forwarder.start()
    try:
        wait = dt.datetime.now() + dt.timedelta(seconds=10)
        while forwarder.counters["failures"] < 1 and dt.datetime.now() < wait:
            time.sleep(0.01)
        assert forwarder.counters["failures"] >= 1 and out.sent  # sent, never confirmed
        assert SqliteStore(path).cursor("mqtt_alerts") == 0  # so the cursor stays
        out.confirm = True
        del out.sent[:]
        while SqliteStore(path).cursor("mqtt_alerts") != last and dt.datetime.now() < wait:
            time.sleep(0.01)
        assert SqliteStore(path).cursor("mqtt_alerts") == last  # sent again, then moved
    finally:
        forwarder.stop()
    devices = {a.subject: a.id for a in store.alerts() if a.rule == "device.offline"}
    sent = [x for x in out.sent if x.topic.rsplit("/", 1)[-1] in devices.values()]
    assert [x.topic.rsplit("/", 1)[-1] for x in sent] == [devices["gr-1"], devices["gr-2"]]
    assert json.loads(sent[0].payload)["state"] == "open"
    assert sent[1].payload == b""  # gr-2 came back: its last change, published last
    assert all(x.retain and x.qos == 1 for x in out.sent)
    assert len({x.topic for x in out.sent}) == len(out.sent)  # one per alert: collapsed
