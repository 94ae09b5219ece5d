"""The store's schema as numbered migrations; a store records the version it has reached.

A new store runs every migration; an older one runs those after its `schema_version`. Each
migration runs in one transaction with the version bump, so a crash leaves the old or the new
schema, never half of one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scans (
    id INTEGER PRIMARY KEY,
    reader TEXT NOT NULL, post TEXT NOT NULL, seq INTEGER,
    credential TEXT NOT NULL, method TEXT NOT NULL, person TEXT,
    time REAL NOT NULL, received_at REAL NOT NULL, flags TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX IF NOT EXISTS scans_reader_seq ON scans (reader, seq) WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS scans_time ON scans (time);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    equipment TEXT NOT NULL, metric TEXT NOT NULL, seq INTEGER,
    time REAL NOT NULL, received_at REAL NOT NULL, value REAL NOT NULL, is_bool INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS readings_seq ON readings (equipment, seq, metric)
    WHERE seq IS NOT NULL;
CREATE INDEX IF NOT EXISTS readings_metric_time ON readings (equipment, metric, time);
CREATE TABLE IF NOT EXISTS device_status (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, state TEXT NOT NULL,
    time REAL NOT NULL, received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL,
    raised_at REAL NOT NULL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE TABLE IF NOT EXISTS alert_transitions (
    id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, change TEXT NOT NULL, at REAL NOT NULL,
    actor TEXT NOT NULL, comment TEXT NOT NULL, record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS swaps (
    id INTEGER PRIMARY KEY, date TEXT NOT NULL, manager TEXT NOT NULL,
    registered_at REAL NOT NULL, source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected_counts (code TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, topic TEXT NOT NULL, code TEXT NOT NULL,
    reason TEXT NOT NULL, payload BLOB NOT NULL
);
"""

# Version 2 (issues 7 and 8):
# * a duplicate is the same (reader, seq) *and* the same credential and sent `ts` (§3): the
#   unique (reader, seq) indexes go, the sent `ts` is kept, readings get flags (`seq_reset`);
# * commands (everything that changes the record and does not come over MQTT) replace the
#   command line's `swaps` table; the swaps it held become done `swap.register` commands;
# * side effects are read by forwarders after a cursor of their own, so the MQTT-shaped
#   `outbox` goes: the MQTT alert forwarder starts from the first transition again (retained
#   alerts are idempotent) and the forwarder collapses them to each alert's latest record.
_V2 = """
ALTER TABLE scans ADD COLUMN sent_ts REAL;
DROP INDEX IF EXISTS scans_reader_seq;
CREATE INDEX scans_reader_seq ON scans (reader, seq) WHERE seq IS NOT NULL;
CREATE INDEX scans_received ON scans (received_at);
ALTER TABLE readings ADD COLUMN sent_ts REAL;
ALTER TABLE readings ADD COLUMN flags TEXT NOT NULL DEFAULT '[]';
DROP INDEX IF EXISTS readings_seq;
CREATE INDEX readings_seq ON readings (equipment, seq) WHERE seq IS NOT NULL;
CREATE INDEX readings_received ON readings (received_at);
CREATE INDEX device_status_received ON device_status (received_at);
CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    action TEXT NOT NULL,
    body TEXT NOT NULL,               -- the command's arguments (JSON)
    actor TEXT NOT NULL,
    submitted_at REAL NOT NULL,       -- wall time it was written (by another process)
    status TEXT NOT NULL,             -- pending | done | refused
    at REAL,                          -- the worker's clock when it was applied
    result TEXT NOT NULL DEFAULT ''   -- what it did, or why it was refused
);
CREATE INDEX commands_pending ON commands (id) WHERE status = 'pending';
CREATE INDEX commands_at ON commands (at);
INSERT INTO commands (action, body, actor, submitted_at, status, at, result)
    SELECT 'swap.register',
           json_object('date', date, 'manager', manager, 'by', 'cli'),
           'cli', registered_at, 'done', registered_at, 'migrated'
    FROM swaps ORDER BY id;
DROP TABLE swaps;
DROP TABLE outbox;
CREATE TABLE cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
"""

# Version 3 (issue 10): notifications (§9). A notification is written in the transaction of the
# transition or deadline that decides it, one row per (alert, stage, repeat, kind, URL), and
# sent after commit by the notify forwarder; every delivery attempt is kept with its result.
# `url` holds the secret (it is what is sent to); `masked` is what people see.
_V3 = """
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL, rule TEXT NOT NULL, subject TEXT NOT NULL, severity TEXT NOT NULL,
    stage INTEGER NOT NULL, repeat INTEGER NOT NULL, kind TEXT NOT NULL,
    at REAL NOT NULL,                 -- the worker's clock when it was decided
    url TEXT NOT NULL, masked TEXT NOT NULL,
    people TEXT NOT NULL,             -- JSON list of person ids sharing the URL
    record TEXT NOT NULL,             -- the alert record when it was decided (JSON)
    status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed (gave up after 24 h)
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL,                     -- wall time the forwarder first saw it (24 h from there)
    next_attempt REAL NOT NULL DEFAULT 0,
    sent_at REAL
);
CREATE UNIQUE INDEX notifications_once ON notifications (alert_id, stage, repeat, kind, url);
CREATE INDEX notifications_pending ON notifications (next_attempt) WHERE status = 'pending';
CREATE TABLE notification_attempts (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,                 -- wall time of the attempt
    masked TEXT NOT NULL,
    notifications TEXT NOT NULL,      -- JSON list of notification ids the message carried
    ok INTEGER NOT NULL,
    result TEXT NOT NULL
);
"""

# Version 4 (issue 11): API tokens (§10). Only a token's SHA-256 is kept; the token itself is
# printed once by `patrol-gateway token issue`. Tokens are not part of the record of the rules:
# the command line writes them here directly, the API only reads them. Sessions of the web page
# are signed cookies naming a token (gateway/api/auth.py), so they need no table.
_V4 = """
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,              -- public id, for `token revoke ID`
    person TEXT NOT NULL,             -- a person id of the site: the token acts with their roles
    hash TEXT NOT NULL UNIQUE,        -- sha256 of the token, hex
    created_at REAL NOT NULL,
    revoked_at REAL                   -- null while valid
);
"""

# Version 5 (issue 13, trust): each scan's assurance level (plain_uid, signed_qr, sun) and the
# NTAG 424 SUN read counter the gateway accepted, looked up per tag to refuse a replayed tap.
_V5 = """
ALTER TABLE scans ADD COLUMN assurance TEXT NOT NULL DEFAULT 'plain_uid';
ALTER TABLE scans ADD COLUMN sun_counter INTEGER;
CREATE INDEX scans_sun_counter ON scans (credential, sun_counter) WHERE sun_counter IS NOT NULL;
"""

# Version 6 (issue 12, records): the records of §11 (work orders, complaints, work-log entries,
# waivers, reviews) are commands like any other, kept in `commands`; the reports read them by
# action and time, so they get an index of their own (only the applied ones).
_V6 = """
CREATE INDEX commands_action_at ON commands (action, at) WHERE status = 'done';
"""


Migration = Callable[[sqlite3.Connection], None]


def _script(sql: str) -> Migration:
    def run(db: sqlite3.Connection) -> None:
        for statement in sql.split(";\n"):
            if statement.strip():
                db.execute(statement)

    return run


MIGRATIONS: list[Migration] = [
    _script(_V1),
    _script(_V2),
    _script(_V3),
    _script(_V4),
    _script(_V5),
    _script(_V6),
]
VERSION = len(MIGRATIONS)


def stored_version(db: sqlite3.Connection) -> int:
    """The schema version a store has reached (0 for an empty file)."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


class NewerStoreError(RuntimeError):
    """The store was written by a newer version of the gateway."""


def migrate(db: sqlite3.Connection) -> int:
    """Bring the store to `VERSION`; returns the version it had. Refuses a newer store."""
    before = stored_version(db)
    if before > VERSION:
        raise NewerStoreError(
            f"存储的版本 {before} 比本程序新 / the store has schema version {before}; this "
            f"gateway knows up to {VERSION}: upgrade patrol-gateway"
        )
    for version in range(before + 1, VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](db)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return before
