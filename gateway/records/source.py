"""What the reports read from the store: scans, alerts, readings, the roster (§11).

Plain queries on one connection (read-only for reports beside a running gateway); each answer
is a small frozen value in UTC, turned to the site's time only when rendered.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway.config.site import Site
from gateway.records.ledger import FAR_FUTURE
from gateway.roster import Roster, Swap
from gateway.rules.patrol_time import sessions
from gateway.trust.verify import EXCLUDING

SWAP_ACTIONS = ("swap.register", "swap.cancel")


def _instant(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def _at(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


@dataclass(frozen=True)
class ScanRow:
    """One stored scan."""

    id: int
    post: str
    reader: str
    person: str | None
    method: str
    time: dt.datetime
    flags: tuple[str, ...]

    @property
    def counts(self) -> bool:
        """Whether the rules counted it (backdated and bad signatures do not, §5)."""
        return EXCLUDING.isdisjoint(self.flags)


@dataclass(frozen=True)
class AlertRow:
    """One alert's latest record."""

    id: str
    rule: str
    subject: str
    severity: str
    state: str
    raised_at: dt.datetime
    message: str
    details: dict[str, Any]
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    cleared_at: dt.datetime | None

    @property
    def to_acknowledge(self) -> dt.timedelta | None:
        """The time from raised to acknowledged, if it was acknowledged."""
        return None if self.acknowledged_at is None else self.acknowledged_at - self.raised_at


class Source:
    """The store as the reports see it."""

    def __init__(self, db: sqlite3.Connection, site: Site) -> None:
        self.db = db
        self.site = site

    def scans(self, since: dt.datetime, until: dt.datetime) -> list[ScanRow]:
        """Scans whose event time is in [since, until), oldest first."""
        rows = self.db.execute(
            "SELECT id, post, reader, person, method, time, flags FROM scans"
            " WHERE time >= ? AND time < ? ORDER BY time, id",
            (since.timestamp(), until.timestamp()),
        ).fetchall()
        return [
            ScanRow(int(i), p, r, who, m, _at(t), tuple(json.loads(f)))
            for i, p, r, who, m, t, f in rows
        ]

    def alerts(self, since: dt.datetime, until: dt.datetime) -> list[AlertRow]:
        """Alerts raised in [since, until), oldest first, as they stand now."""
        rows = self.db.execute(
            "SELECT record FROM alerts WHERE raised_at >= ? AND raised_at < ?"
            " ORDER BY raised_at, id",
            (since.timestamp(), until.timestamp()),
        ).fetchall()
        return [self._alert(json.loads(r)) for (r,) in rows]

    @staticmethod
    def _alert(rec: dict[str, Any]) -> AlertRow:
        def t(name: str) -> dt.datetime | None:
            value = rec.get(name)
            return None if value is None else dt.datetime.fromisoformat(value)

        raised = t("raised_at")
        assert raised is not None
        return AlertRow(
            id=rec["id"],
            rule=rec["rule"],
            subject=rec["subject"],
            severity=rec["severity"],
            state=rec["state"],
            raised_at=raised,
            message=rec.get("message", ""),
            details=rec.get("details") or {},
            acknowledged_at=t("acknowledged_at"),
            acknowledged_by=rec.get("acknowledged_by"),
            cleared_at=t("cleared_at"),
        )

    def roster(self, until: dt.datetime = FAR_FUTURE) -> Roster:
        """The weekly roster with the swaps registered before `until` (a cancel is a swap back
        to the rostered person, as the rules see it)."""
        roster = Roster(self.site)
        rows = self.db.execute(
            "SELECT action, body, at FROM commands WHERE status = 'done'"
            " AND action IN (?, ?) AND at < ? ORDER BY at, id",
            (*SWAP_ACTIONS, until.timestamp()),
        ).fetchall()
        for action, body, at in rows:
            args = json.loads(body)
            day = dt.date.fromisoformat(args["date"])
            manager = args.get("manager") if action == "swap.register" else None
            manager = manager or self.site.rostered_manager(day)
            if manager is not None:
                roster.add(Swap(_at(at), day, manager, "live"))
        return roster

    def readings_before(
        self, equipment: str, at: dt.datetime
    ) -> dict[str, tuple[float, dt.datetime]]:
        """The newest value of each metric of one equipment at or before `at`."""
        rows = self.db.execute(
            "SELECT metric, value, max(time) FROM readings WHERE equipment = ? AND time <= ?"
            " GROUP BY metric",
            (equipment, at.timestamp()),
        ).fetchall()
        return {str(m): (float(v), _at(t)) for m, v, t in rows}


def patrol_minutes(
    scans: list[ScanRow], max_gap: dt.timedelta
) -> tuple[int, list[tuple[dt.datetime, dt.datetime]]]:
    """Patrol time in whole minutes and its sessions (§5 rule 4), of counted scans."""
    parts = sessions((s.time for s in scans if s.counts), max_gap)
    total = sum((b - a for a, b in parts), dt.timedelta(0))
    return int(total.total_seconds() // 60), parts
