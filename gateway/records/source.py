"""What the reports read from the store: scans, alerts, readings, the roster, the records (§11).

Through the store's query side (`gateway/store/read`) on the connection given (read-only for
reports beside a running gateway); each answer is a typed row in UTC, turned to the site's time
only when rendered.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from gateway.config.site import Site
from gateway.records.ledger import FAR_FUTURE
from gateway.roster import Roster, Swap
from gateway.rules.patrol_time import sessions
from gateway.store.read import AlertRow, CommandRow, Queries, ScanRow

__all__ = ["AlertRow", "ScanRow", "Source", "patrol_minutes"]

SWAP_ACTIONS = ("swap.register", "swap.cancel")


class Source:
    """The store as the reports see it."""

    def __init__(self, db: sqlite3.Connection, site: Site) -> None:
        self.db = db
        self.site = site
        self.queries = Queries(db)

    def scans(self, since: dt.datetime, until: dt.datetime) -> list[ScanRow]:
        """Scans whose event time is in [since, until), oldest first."""
        return self.queries.scans(since, until)

    def alerts(self, since: dt.datetime, until: dt.datetime) -> list[AlertRow]:
        """Alerts raised in [since, until), oldest first, as they stand now."""
        return self.queries.alerts(since=since, until=until, oldest_first=True)

    def roster(self, until: dt.datetime = FAR_FUTURE) -> Roster:
        """The weekly roster with the swaps registered before `until` (a cancel is a swap back
        to the rostered person, as the rules see it)."""
        roster = Roster(self.site)
        for row in self.queries.applied_commands(SWAP_ACTIONS, until):
            day = dt.date.fromisoformat(row.body["date"])
            manager = row.body.get("manager") if row.action == "swap.register" else None
            manager = manager or self.site.rostered_manager(day)
            if manager is not None:
                roster.add(Swap(row.applied_at, day, manager, "live"))
        return roster

    def readings_before(
        self, equipment: str, at: dt.datetime
    ) -> dict[str, tuple[float, dt.datetime]]:
        """The newest value of each metric of one equipment at or before `at`."""
        rows = self.queries.latest_readings(equipment, at_or_before=at)
        return {v.metric: (float(v.value), v.time) for v in rows}

    def manual_signoffs(self) -> list[CommandRow]:
        """Every manual sign-off applied (§10), in the order applied."""
        return self.queries.applied_commands(("scan.manual",))


def patrol_minutes(
    scans: list[ScanRow], max_gap: dt.timedelta
) -> tuple[int, list[tuple[dt.datetime, dt.datetime]]]:
    """Patrol time in whole minutes and its sessions (§5 rule 4), of counted scans."""
    parts = sessions((s.time for s in scans if s.counts), max_gap)
    total = sum((b - a for a, b in parts), dt.timedelta(0))
    return int(total.total_seconds() // 60), parts
