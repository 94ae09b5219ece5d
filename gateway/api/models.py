"""The API's bodies: `…Create` is what a client sends, `…Public` what the API returns (§10).

Instants are ISO 8601 with the site's offset, as in the alert record (§6). An instant sent
without an offset is read as the site's local time (§1).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AlertState = Literal["open", "acknowledged", "closed"]
Text = str


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorPublic(BaseModel):
    """What a 401, 403, 404, 409 or 503 says."""

    detail: str = Field(description="中文 / English: what is wrong")


# -- sessions ------------------------------------------------------------------------------------


class SessionCreate(_Body):
    token: str = Field(min_length=1, max_length=200, description="the token `token issue` printed")


class MayPublic(BaseModel):
    ack_any: bool = Field(description="may act on any alert (duty manager, project head, GM)")
    swap: bool = Field(description="may register swaps (admin)")
    handover: bool = Field(description="may confirm their own side of a handover")
    signoff: bool = Field(description="may record a manual sign-off (duty manager)")


class MePublic(BaseModel):
    person: str
    name: str
    roles: list[str]
    may: MayPublic
    locale: Literal["zh-CN", "en"] = Field(description="the site's language")
    site: str
    site_name: str


# -- alerts --------------------------------------------------------------------------------------


class AlertPublic(BaseModel):
    """The alert record of §6."""

    id: str
    site: str
    rule: str
    subject: str
    severity: str
    state: AlertState
    raised_at: str
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    cleared_at: str | None = None
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    shelved_until: str | None = None


class TransitionPublic(BaseModel):
    change: str
    at: str
    actor: str
    comment: str


class AlertDetailPublic(AlertPublic):
    history: list[TransitionPublic] = Field(description="every transition, oldest first")


class AckCreate(_Body):
    comment: str = Field("", max_length=2000)


class CommentCreate(_Body):
    comment: str = Field(min_length=1, max_length=2000)


class ShelveCreate(_Body):
    until: dt.datetime = Field(description="after now and within 24 h (§6)")
    comment: str = Field("", max_length=2000)


class CommandPublic(BaseModel):
    """What the worker did with a command."""

    ok: bool
    message: str
    command_id: int | None
    alerts: list[dict[str, Any]] = Field(description="the alert records it changed, with change")


# -- scans, readings, devices --------------------------------------------------------------------


class ScanPublic(BaseModel):
    id: int
    reader: str
    post: str
    post_name: str
    person: str | None
    person_name: str | None
    method: str
    time: str
    received_at: str
    flags: list[str]
    assurance: str = Field(description="plain_uid, signed_qr or sun: how the scan was proven")


class BucketPublic(BaseModel):
    start: str
    min: float
    mean: float
    max: float
    count: int


class SeriesPublic(BaseModel):
    equipment: str
    metric: str
    unit: str
    bucket_seconds: float
    buckets: list[BucketPublic]


class MetricPublic(BaseModel):
    metric: str
    unit: str
    min: float | None
    max: float | None
    expect: bool | None
    value: float | bool | None
    at: str | None
    out: bool = Field(description="outside its limits (§5 rule 7)")


class PlantPublic(BaseModel):
    equipment: str
    name: str
    post: str
    post_name: str
    metrics: list[MetricPublic]


class DevicePublic(BaseModel):
    device: str
    kind: Literal["reader", "equipment"]
    name: str
    state: str | None = Field(description="online, offline, or null when never heard")
    since: str | None


class PostPublic(BaseModel):
    id: str
    name: str
    key: bool = Field(description="a key post the duty manager signs daily (4.3)")


class StatusPublic(BaseModel):
    """The live status: the patrol status (§3), open alerts, plant-room values, devices."""

    now: str
    site: str
    site_name: str
    patrol: dict[str, Any] | None = Field(description="the retained patrol/status document")
    duty_until: str | None = Field(description="when the duty day ends")
    posts: list[PostPublic]
    alerts: list[AlertPublic]
    plant: list[PlantPublic]
    devices: list[DevicePublic]
    scans: list[ScanPublic] = Field(description="the newest scans")


class HealthPublic(BaseModel):
    status: Literal["ok"]
    site: str
    worker_running: bool = Field(description="the gateway's heartbeat is recent")
    broker_connected: bool | None


# -- roster, handover, incidents, sign-offs ------------------------------------------------------


class SwapPublic(BaseModel):
    manager: str
    registered_at: str
    late: bool = Field(description="registered after the duty day began (4.4)")


class RosterDayPublic(BaseModel):
    date: dt.date
    rostered: str | None
    manager: str | None
    manager_name: str | None
    swap: SwapPublic | None


class RosterPublic(BaseModel):
    week: str
    days: list[RosterDayPublic]


class SwapCreate(_Body):
    date: dt.date = Field(description="the duty day covered")
    manager: str = Field(min_length=1, max_length=64, description="who takes the duty")


class HandoverConfirmCreate(_Body):
    notes: str = Field("", max_length=4000, description="handover items and cautions (4.8)")


class HandoverPublic(BaseModel):
    date: dt.date
    outgoing: str | None
    incoming: str | None
    confirmations: list[dict[str, Any]]


class IncidentCreate(_Body):
    title: str = Field(min_length=1, max_length=200)
    major: bool = Field(False, description="raises incident.major, told to the GM at once")
    where: str | None = Field(None, max_length=200)
    details: str | None = Field(None, max_length=4000)
    when: dt.datetime | None = Field(None, description="when it happened (default: unknown)")
    told: str | None = Field(None, max_length=500, description="who was told, and when (4.2)")


class IncidentPublic(BaseModel):
    id: str
    title: str
    major: bool
    where: str | None
    details: str | None
    reported_by: str
    at: str
    when: str | None = None
    told: str | None = None


class SignoffCreate(_Body):
    post: str = Field(min_length=1, max_length=64)
    time: dt.datetime = Field(description="when the post was checked: within the last hour")
    reason: str = Field(min_length=1, max_length=500, description="why by hand (reader broken)")


class AckLinkCreate(_Body):
    alert: str = Field(min_length=1, max_length=64)
    person: str = Field(min_length=1, max_length=64)
    expires: int
    sig: str = Field(min_length=1, max_length=128)
    comment: str = Field("", max_length=2000)


class AckLinkPublic(BaseModel):
    person: str
    name: str
    alert: AlertPublic
