"""Notifications in the store (schema version 3): written by the worker with the transition that
decides them, read and marked by the notify forwarder after commit."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from dataclasses import dataclass
from typing import Any

from gateway.notify.channels import mask
from gateway.notify.policy import Notice
from gateway.store.sqlite import SqliteStore

STATE_KEY = "escalation"  # meta: the policy's snapshot, kept with every commit
GIVE_UP = dt.timedelta(hours=24)  # §9: retried for 24 h until the channel accepts it


def add(store: SqliteStore, notice: Notice, tz: dt.tzinfo) -> None:
    """Write one decided notification; the same (alert, stage, repeat, kind, URL) is kept once."""
    alert = notice.alert
    store.connection.execute(
        "INSERT OR IGNORE INTO notifications (alert_id, rule, subject, severity, stage, repeat,"
        " kind, at, url, masked, people, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            alert.id,
            alert.rule,
            alert.subject,
            alert.severity,
            notice.stage,
            notice.repeat,
            notice.kind,
            notice.at.timestamp(),
            notice.url,
            mask(notice.url),
            json.dumps(list(notice.people)),
            json.dumps(alert.to_json(tz), ensure_ascii=False),
        ),
    )


@dataclass(frozen=True)
class Pending:
    """A notification waiting to be sent."""

    id: int
    alert_id: str
    severity: str
    kind: str
    stage: int
    at: dt.datetime
    url: str
    masked: str
    people: tuple[str, ...]
    record: dict[str, Any]
    attempts: int
    created: float | None

    @property
    def critical(self) -> bool:
        """Criticals are never held behind warnings (§9)."""
        return self.severity == "critical"


def due(store: SqliteStore, now: float, limit: int) -> list[Pending]:
    """Pending notifications whose next attempt is due, oldest first."""
    rows = store.connection.execute(
        "SELECT id, alert_id, severity, kind, stage, at, url, masked, people, record, attempts,"
        " created FROM notifications WHERE status = 'pending' AND next_attempt <= ?"
        " ORDER BY id LIMIT ?",
        (now, limit),
    ).fetchall()
    return [
        Pending(
            int(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            int(r[4]),
            dt.datetime.fromtimestamp(float(r[5]), dt.UTC),
            str(r[6]),
            str(r[7]),
            tuple(json.loads(r[8])),
            dict(json.loads(r[9])),
            int(r[10]),
            None if r[11] is None else float(r[11]),
        )
        for r in rows
    ]


def next_due(store: SqliteStore) -> float | None:
    """The earliest next attempt of any pending notification."""
    row = store.connection.execute(
        "SELECT min(next_attempt) FROM notifications WHERE status = 'pending'"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def attempted(
    store: SqliteStore,
    items: list[Pending],
    now: float,
    ok: bool,
    result: str,
    retry_at: float | None,
) -> None:
    """Record one attempt (one message carrying `items`) and its result, and commit."""
    ids = [p.id for p in items]
    store.connection.execute(
        "INSERT INTO notification_attempts (at, masked, notifications, ok, result)"
        " VALUES (?,?,?,?,?)",
        (now, items[0].masked, json.dumps(ids), int(ok), result),
    )
    for p in items:
        created = p.created if p.created is not None else now
        if ok:
            status, next_attempt = "sent", now
        elif retry_at is None or retry_at - created > GIVE_UP.total_seconds():
            status, next_attempt = "failed", now
        else:
            status, next_attempt = "pending", retry_at
        store.connection.execute(
            "UPDATE notifications SET status = ?, attempts = attempts + 1, created = ?,"
            " next_attempt = ?, sent_at = ? WHERE id = ?",
            (status, created, next_attempt, now if ok else None, p.id),
        )
    store.commit()


def hold(store: SqliteStore, items: list[Pending], until: float) -> None:
    """Over the rate: these wait until the URL may take another message."""
    store.connection.executemany(
        "UPDATE notifications SET next_attempt = ? WHERE id = ?", [(until, p.id) for p in items]
    )
    store.commit()


def recent_sends(store: SqliteStore, since: float) -> list[tuple[float, str]]:
    """(time, URL) of every message attempted since `since`, oldest first: a restarted notifier
    counts them against each URL's rate."""
    rows = store.connection.execute(
        "SELECT a.at, n.url FROM notification_attempts a"
        " JOIN notifications n ON n.id = json_extract(a.notifications, '$[0]')"
        " WHERE a.at > ? ORDER BY a.id",
        (since,),
    ).fetchall()
    return [(float(at), str(url)) for at, url in rows]


def attempts(store: SqliteStore, limit: int = 1000) -> list[dict[str, Any]]:
    """The latest delivery attempts, newest first (for health and the web page)."""
    rows = store.connection.execute(
        "SELECT at, masked, notifications, ok, result FROM notification_attempts"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {
            "at": r[0],
            "url": r[1],
            "notifications": json.loads(r[2]),
            "ok": bool(r[3]),
            "result": r[4],
        }
        for r in rows
    ]


def was_notified(store_path: pathlib.Path, alert_id: str, person: str) -> bool:
    """Was `person` told of `alert_id` (a decided notification, sent or not)? For the API's
    rule that anyone notified of an alert may act on it (§10). Opens a read-only connection."""
    reader = SqliteStore(store_path, readonly=True)
    try:
        rows = reader.connection.execute(
            "SELECT people FROM notifications WHERE alert_id = ?", (alert_id,)
        ).fetchall()
    finally:
        reader.close()
    return any(person in json.loads(people) for (people,) in rows)
