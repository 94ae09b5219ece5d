"""The typed rows the store's query side answers with (gateway/store/read/queries.py).

Instants are aware and in UTC; rule ids, severities, alert states and changes are the types
the rules and the alert book use.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal, cast

from gateway.alerts.book import Change
from gateway.alerts.record import Alert, AlertState
from gateway.config.models import Severity
from gateway.events import DeviceState, Method
from gateway.rules.base import RuleId
from gateway.trust.verify import EXCLUDING

CommandStatus = Literal["pending", "done", "refused"]


def instant(value: float) -> dt.datetime:
    """An epoch-seconds column as an aware UTC instant."""
    return dt.datetime.fromtimestamp(value, dt.UTC)


def _iso(value: object) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC)


def _rule(value: str) -> RuleId | str:
    try:
        return RuleId(value)
    except ValueError:  # an alert of a rule this version does not know (another version's)
        return value


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert as it stands now; `record` is its stored §6 document, exactly as published."""

    id: str
    site: str
    rule: RuleId | str  # a plain string only for a rule this version does not know
    subject: str
    severity: Severity
    state: AlertState
    raised_at: dt.datetime
    message: str
    details: dict[str, Any]
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    cleared_at: dt.datetime | None
    shelved_until: dt.datetime | None
    record: dict[str, Any]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AlertRow:
        """Read an alert's stored document."""
        raised = _iso(record["raised_at"])
        assert raised is not None
        state = str(record["state"])
        if state not in ("open", "acknowledged", "closed"):
            raise ValueError(f"alert {record['id']}: unknown state {state!r}")
        return cls(
            id=str(record["id"]),
            site=str(record.get("site", "")),
            rule=_rule(str(record["rule"])),
            subject=str(record["subject"]),
            severity=Severity(record["severity"]),
            state=cast(AlertState, state),
            raised_at=raised,
            message=str(record.get("message", "")),
            details=dict(record.get("details") or {}),
            acknowledged_at=_iso(record.get("acknowledged_at")),
            acknowledged_by=record.get("acknowledged_by"),
            cleared_at=_iso(record.get("cleared_at")),
            shelved_until=_iso(record.get("shelved_until")),
            record=record,
        )

    @property
    def to_acknowledge(self) -> dt.timedelta | None:
        """The time from raised to acknowledged, if it was acknowledged."""
        return None if self.acknowledged_at is None else self.acknowledged_at - self.raised_at

    def to_alert(self) -> Alert:
        """The alert as the rules' book holds it."""
        return Alert.from_json(self.record)


@dataclass(frozen=True, slots=True)
class TransitionRow:
    """One stored change of one alert; `record` is the alert's §6 document right after it."""

    id: int
    alert_id: str
    change: Change
    at: dt.datetime
    actor: str
    comment: str
    record: dict[str, Any]

    @property
    def alert(self) -> AlertRow:
        """The alert right after the change, typed (read from `record` when asked: the MQTT
        forwarder and the board pass the document on as it is)."""
        return AlertRow.from_record(self.record)


@dataclass(frozen=True, slots=True)
class ScanRow:
    """One stored scan."""

    id: int
    reader: str
    post: str
    seq: int | None
    credential: str
    method: Method
    person: str | None
    time: dt.datetime
    received_at: dt.datetime
    flags: tuple[str, ...]
    assurance: str  # plain_uid, signed_qr or sun
    sun_counter: int | None

    @property
    def counts(self) -> bool:
        """Whether the rules counted it (backdated and bad signatures do not, §5)."""
        return EXCLUDING.isdisjoint(self.flags)


@dataclass(frozen=True, slots=True)
class LatestValue:
    """The newest value of one metric."""

    equipment: str
    metric: str
    time: dt.datetime
    value: float | bool


@dataclass(frozen=True, slots=True)
class Bucket:
    """One downsampled interval of a metric (booleans count as 0/1)."""

    start: dt.datetime
    min: float
    mean: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class DeviceStateRow:
    """A device's newest status (by its own time)."""

    device: str
    state: DeviceState
    since: dt.datetime


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A command written to the store, pending or applied (`at`: when the worker applied it)."""

    id: int
    action: str
    body: dict[str, Any]
    actor: str
    submitted_at: dt.datetime
    status: CommandStatus
    at: dt.datetime | None
    result: str

    @property
    def applied_at(self) -> dt.datetime:
        """When the worker applied it; only an applied (or refused) command has that."""
        if self.at is None:
            raise ValueError(f"command {self.id} is {self.status}: not applied yet")
        return self.at

    @property
    def outcome(self) -> dict[str, Any]:
        """What it did: the stored result document, or its message (a refusal, a migrated
        swap) as `{"message": ...}`."""
        if self.result.startswith("{"):
            return cast(dict[str, Any], json.loads(self.result))
        return {"message": self.result}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What the running worker last said of itself (every few seconds, `health`)."""

    at: dt.datetime | None
    pid: int
    connected: bool | None
    reload: dict[str, Any] | None  # the last reload's {ok, message, at}
    notify_failing: dict[str, str]  # masked notify URL → why its last attempt failed

    @classmethod
    def parse(cls, text: str | None) -> Heartbeat | None:
        """Read the stored heartbeat; None when there is none or it is not a heartbeat."""
        try:
            beat = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(beat, dict):
            return None
        at, pid, connected = beat.get("at"), beat.get("pid"), beat.get("connected")
        reload, failing = beat.get("reload"), beat.get("notify_failing")
        return cls(
            at=instant(at) if isinstance(at, int | float) and not isinstance(at, bool) else None,
            pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
            connected=connected if isinstance(connected, bool) else None,
            reload=reload if isinstance(reload, dict) else None,
            notify_failing={str(k): str(v) for k, v in dict(failing or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Marks:
    """The newest row id of each table the live board follows (0 when empty)."""

    transitions: int
    scans: int
    readings: int
    devices: int
