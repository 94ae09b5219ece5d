"""The book of alerts: one open alert per (rule, subject), every transition recorded (§5, §6)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from gateway.alerts.record import Alert, alert_id

# The replay prints these as "opened", "updated", … (contract §7): see `CHANGE_WORDS`.
Change = Literal[
    "open", "update", "acknowledged", "commented", "shelved", "unshelved", "cleared", "closed"
]
CHANGE_WORDS: dict[str, str] = {"open": "opened", "update": "updated"}


def change_word(change: str) -> str:
    """The word the replay, the MQTT side and InfluxDB use for a change (contract §7)."""
    return CHANGE_WORDS.get(change, change)


@dataclass(frozen=True)
class Transition:
    """One change of one alert: `alert` is the record after the change."""

    alert: Alert
    change: Change
    at: dt.datetime
    actor: str = "gateway"
    comment: str = ""

    @property
    def is_state_change(self) -> bool:
        """False for an update of an open alert (the record changed, its state did not)."""
        return self.change != "update"


class AlertBook:
    """Open alerts keyed by (rule, subject); pure bookkeeping, no I/O, no clock."""

    def __init__(self, site: str, alerts: list[Alert] | None = None) -> None:
        self.site = site
        self._open: dict[tuple[str, str], Alert] = {}
        # Counts every change: the engine re-reads the deadlines that depend on the book (shelve
        # ends, escalation stages) only when it moved, whoever changed it (rules or commands).
        self.version = 0
        # (rule, subject) → (instant, n) of its last raise, to tell same-instant raises apart.
        self._raised: dict[tuple[str, str], tuple[dt.datetime, int]] = {}
        for alert in alerts or []:
            if alert.state != "closed":
                self._open[(alert.rule, alert.subject)] = alert

    def get(self, rule: str, subject: str) -> Alert | None:
        """The open (or acknowledged, not yet closed) alert for (rule, subject)."""
        return self._open.get((rule, subject))

    def by_id(self, ident: str) -> Alert | None:
        """An alert that is not closed, by id."""
        return next((a for a in self._open.values() if a.id == ident), None)

    def all_open(self) -> list[Alert]:
        """Every alert not yet closed."""
        return list(self._open.values())

    def raise_(
        self,
        rule: str,
        subject: str,
        severity: str,
        at: dt.datetime,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> Transition:
        """Open an alert, or update the one already open for (rule, subject)."""
        self.version += 1
        current = self._open.get((rule, subject))
        if current is not None:
            updated = current.replace(message=message, details=details or {})
            self._open[(rule, subject)] = updated
            return Transition(updated, "update", at)
        last = self._raised.get((rule, subject))
        n = last[1] + 1 if last is not None and last[0] == at else 0
        self._raised[(rule, subject)] = (at, n)
        alert = Alert(
            id=alert_id(self.site, rule, subject, at, n),
            site=self.site,
            rule=rule,
            subject=subject,
            severity=severity,
            state="open",
            raised_at=at,
            message=message,
            details=details or {},
        )
        self._open[(rule, subject)] = alert
        return Transition(alert, "open", at)

    def clear(self, rule: str, subject: str, at: dt.datetime) -> Transition | None:
        """Close the alert for (rule, subject) because its condition ended; None if none is open."""
        current = self._open.pop((rule, subject), None)
        if current is None:
            return None
        self.version += 1
        closed = current.replace(state="closed", cleared_at=at, shelved_until=None)
        return Transition(closed, "cleared", at)

    def acknowledge(
        self, ident: str, at: dt.datetime, actor: str, comment: str = "", close: bool = False
    ) -> Transition | None:
        """Acknowledge an alert; `close` for rules that do not clear (contract §6)."""
        current = self.by_id(ident)
        if current is None:
            return None
        self.version += 1
        key = (current.rule, current.subject)
        acked = current.replace(acknowledged_at=at, acknowledged_by=actor)
        if close:
            self._open.pop(key)
            closed = acked.replace(state="closed", shelved_until=None)
            return Transition(closed, "closed", at, actor, comment)
        acked = acked.replace(state="acknowledged")
        self._open[key] = acked
        return Transition(acked, "acknowledged", at, actor, comment)

    def comment(self, ident: str, at: dt.datetime, actor: str, comment: str) -> Transition | None:
        """A comment on an alert that is not closed; its state does not change."""
        current = self.by_id(ident)
        if current is None:
            return None
        self.version += 1
        return Transition(current, "commented", at, actor, comment)

    def shelve(
        self, ident: str, until: dt.datetime, at: dt.datetime, actor: str, comment: str = ""
    ) -> Transition | None:
        """Shelve an alert until an instant: it stays open and sends no notification (§6)."""
        current = self.by_id(ident)
        if current is None:
            return None
        self.version += 1
        shelved = current.replace(shelved_until=until)
        self._open[(current.rule, current.subject)] = shelved
        return Transition(shelved, "shelved", at, actor, comment)

    def shelf_expiry(self) -> dt.datetime | None:
        """The earliest instant a shelved alert comes back."""
        return min(
            (a.shelved_until for a in self._open.values() if a.shelved_until is not None),
            default=None,
        )

    def unshelve_due(self, at: dt.datetime) -> list[Transition]:
        """Bring back every alert shelved until `at` or earlier."""
        out = []
        for key, alert in list(self._open.items()):
            if alert.shelved_until is not None and alert.shelved_until <= at:
                back = alert.replace(shelved_until=None)
                self._open[key] = back
                out.append(Transition(back, "unshelved", at))
        self.version += len(out)
        return out
