"""The site file as typed models (contract §4). Every field says what it means."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
import urllib.parse
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from gateway.timeutil import BadTime, parse_clock, parse_instant

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
ID_RE = re.compile(ID_PATTERN)

Id = Annotated[str, Field(pattern=ID_PATTERN, description="[a-z0-9][a-z0-9_-]{0,63}")]


class Invalid(ValueError):
    """A validator's refusal in both languages; `check-config` shows the site's one and English."""

    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.zh = zh


def _clock(text: str) -> str:
    try:
        parse_clock(text)
    except BadTime as exc:
        raise Invalid(str(exc), f'{text!r} 不是有效的时刻，请写成 "08:30" 这样的格式') from exc
    return text


Clock = Annotated[str, AfterValidator(_clock), Field(description='local clock time "HH:MM"')]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(
            f"unknown IANA time zone {value!r} (e.g. Asia/Shanghai)",
            f"未知的时区 {value!r}（应为 IANA 时区名，如 Asia/Shanghai）",
        ) from exc
    return value


TimeZoneName = Annotated[str, AfterValidator(_zone), Field(description="an IANA time zone")]


class Role(StrEnum):
    """Roles of the domain page."""

    duty_manager = "duty_manager"
    project_head = "project_head"
    general_manager = "general_manager"
    admin = "admin"
    security = "security"
    customer_service = "customer_service"
    engineer_weak = "engineer_weak"
    engineer_equipment = "engineer_equipment"
    engineer_strong = "engineer_strong"


ENGINEERING_ROLES = frozenset({Role.engineer_weak, Role.engineer_equipment, Role.engineer_strong})


class PostKind(StrEnum):
    """What a post is; key posts are usually the first four (4.3)."""

    front_desk = "front_desk"
    monitoring_center = "monitoring_center"
    security_post = "security_post"
    model_home = "model_home"
    plant_room = "plant_room"
    other = "other"


class Severity(StrEnum):
    """Alert severities, mildest first."""

    info = "info"
    warning = "warning"
    critical = "critical"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteInfo(_Strict):
    id: Id = Field(description="site id, used in every topic")
    name: str = Field(description="the name people read, e.g. Z城物业项目")
    timezone: TimeZoneName = Field("Asia/Shanghai", description="IANA zone of every clock time")
    locale: Literal["zh-CN", "en"] = Field("zh-CN", description="language of messages")

    @property
    def tz(self) -> ZoneInfo:
        """The site's zone."""
        return ZoneInfo(self.timezone)


class EarlyWarnings(_Strict):
    enabled: bool | None = Field(
        None, description="on in `run` and `demo`, off in `replay`, unless set here"
    )
    patrol_lead_minutes: float = Field(
        60, ge=0, description="warn when the quota can only be met with this much slack left"
    )
    key_post_lead_minutes: float = Field(
        60, ge=0, description="warn this long before key_posts_deadline for unsigned key posts"
    )


class Duty(_Strict):
    day_starts: Clock = Field("08:30", description="duty day boundary (3.6)")
    work_shift_ends: Clock = Field("18:00", description="end of the work shift (3.6)")
    check_in_deadline: Clock = Field("09:00", description="the duty manager's first scan by then")
    handover_post: Id = Field("monitoring-center", description="where both managers scan (4.8)")
    handover_deadline: Clock = Field("09:00", description="handover.overdue after this")
    min_patrol_hours: float = Field(4, ge=0, le=24, description="patrol quota per duty day (4.3)")
    patrol_max_gap_minutes: float = Field(30, gt=0, description="a longer gap ends a session")
    patrol_deadline: Clock = Field("18:00", description="patrol.hours_short is decided then")
    key_posts_deadline: Clock = Field("18:00", description="patrol.key_post_missed decided then")
    absence_fine_yuan: float = Field(100, ge=0, description="4.4, shown in reports")
    max_clock_skew_seconds: float = Field(300, ge=0, description="a later ts is not trusted")
    max_backdate_hours: float = Field(
        24, gt=0, description="§1: an older ts counts only with a signature of its own time"
    )
    early_warnings: EarlyWarnings = Field(default_factory=EarlyWarnings)


def _credential(text: str) -> str:
    method, sep, value = text.partition(":")
    if not sep or method not in ("nfc", "qr") or not value:
        raise Invalid(
            f'{text!r}: write a credential as "nfc:04A224B1C23380" or "qr:TEXT"',
            f'{text!r}：凭证应写成 "nfc:04A224B1C23380" 或 "qr:文本"',
        )
    if method == "nfc":
        uid = normalize_uid(value)
        if uid is None:
            raise Invalid(
                f"{text!r}: an NFC UID is hexadecimal (separators : - space allowed)",
                f"{text!r}：NFC 卡号应为十六进制（可用 : - 或空格分隔）",
            )
        return f"nfc:{uid}"
    return text


_UID_SEPARATORS = re.compile(r"[:\-\s]")
_HEX = re.compile(r"[0-9A-F]+")


@functools.lru_cache(maxsize=4096)  # every scan asks; a site has a few thousand cards
def normalize_uid(value: str) -> str | None:
    """Upper-case hex without separators, or None when it is not hex (contract §3)."""
    uid = _UID_SEPARATORS.sub("", value).upper()
    if not uid or not _HEX.fullmatch(uid):
        return None
    return uid


Credential = Annotated[str, AfterValidator(_credential)]


def _notify_url(url: str) -> str:
    from gateway.notify.channels import BadUrl, check, mask

    try:
        check(url)
    except BadUrl as exc:
        raise Invalid(
            f"{exc} (see docs/notifications.md)",
            f"没有通知渠道能识别 {mask(url)}（参见 docs/notifications.md）",
        ) from None
    return url


NotifyUrl = Annotated[str, AfterValidator(_notify_url)]


class Person(_Strict):
    id: Id
    name: str = Field(description="shown in scan answers and alerts")
    roles: list[Role] = Field(default_factory=list, description="see the domain page")
    credentials: list[Credential] = Field(default_factory=list, description='"nfc:UID" / "qr:…"')
    notify: list[NotifyUrl] = Field(
        default_factory=list, description="apprise URLs: dingtalk://, wecombot://, mailto://, …"
    )


class Rounds(_Strict):
    every_minutes: float = Field(gt=0, description="round.missed this long after the last one")
    roles: list[Role] = Field(min_length=1, description="who may walk the round")


class Post(_Strict):
    id: Id
    name: str
    kind: PostKind = PostKind.other
    key: bool = Field(False, description="the duty manager signs here every duty day (4.3)")
    readers: list[Id] = Field(default_factory=list, description="fixed readers at this post")
    rounds: Rounds | None = Field(None, description="scheduled rounds (篇5 e)")
    require: Literal["any", "signed"] = Field(
        "any", description="signed: a plain card UID here is flagged `unsigned` (§4)"
    )


class Metric(_Strict):
    unit: str = ""
    min: float | None = None
    max: float | None = None
    expect: bool | None = Field(None, description="a boolean metric's normal value")
    for_seconds: float = Field(0, ge=0, description="out of range this long before alerting")
    hysteresis: float = Field(0, ge=0, description="back inside by this much to clear")
    severity: Severity = Severity.warning
    latch: bool = Field(False, description="clears only after an engineer's on-site scan")

    @model_validator(mode="after")
    def _coherent(self) -> Metric:
        if self.expect is not None and (self.min is not None or self.max is not None):
            raise Invalid(
                "a metric has either expect (boolean) or min/max (number), not both",
                "指标只能有 expect（开关量）或 min/max（数值）之一，不能同时有",
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise Invalid(
                f"min {self.min} is above max {self.max}",
                f"下限 min {self.min} 高于上限 max {self.max}",
            )
        return self


class Equipment(_Strict):
    id: Id
    name: str
    post: Id = Field(description="the post where the equipment stands")
    stale_after_seconds: float | None = Field(None, gt=0, description="equipment.stale")
    metrics: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")], Metric] = Field(
        default_factory=dict
    )


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _instant_text(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class Swap(_Strict):
    date: dt.date = Field(description="the duty day covered")
    manager: Id = Field(description="who takes the duty")
    registered_at: str = Field(description="when admin was told (ISO 8601)")

    @field_validator("registered_at", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return _instant_text(value)

    @field_validator("registered_at")
    @classmethod
    def _instant(cls, value: str) -> str:
        try:
            parse_instant(value, dt.UTC)
        except BadTime as exc:
            raise Invalid(
                str(exc), f"{value!r} 不是有效的时间（应为 ISO 8601，如 2026-11-27T15:00:00+08:00）"
            ) from exc
        return value


class Roster(_Strict):
    weekly: dict[Weekday, Id] = Field(description="one duty manager per weekday (3.6)")
    swaps: list[Swap] = Field(default_factory=list, description="registered swaps (4.4)")

    @field_validator("weekly")
    @classmethod
    def _every_day(cls, value: dict[Weekday, str]) -> dict[Weekday, str]:
        missing = [d for d in WEEKDAYS if d not in value]
        if missing:
            days = ", ".join(missing)
            raise Invalid(
                f"the weekly roster names nobody for {days}", f"每周轮值表缺少这几天的人：{days}"
            )
        return value


class EscalationStep(_Strict):
    after_minutes: float = Field(ge=0, description="sent this long after the alert was raised")
    to: list[str] = Field(
        min_length=1, description="on_duty, post_roles, a role id or a person id (§9)"
    )
    repeat_minutes: float | None = Field(
        None, gt=0, description="the last stage is sent again this often until acknowledged"
    )


def _escalation(steps: list[EscalationStep]) -> list[EscalationStep]:
    for before, after in itertools.pairwise(steps):
        if after.after_minutes <= before.after_minutes:
            raise Invalid(
                "escalation stages must come in increasing after_minutes",
                "升级各级的 after_minutes 必须递增",
            )
    if any(step.repeat_minutes is not None for step in steps[:-1]):
        raise Invalid(
            "only the last escalation stage repeats: move repeat_minutes to it",
            "只有最后一级可以重复：请把 repeat_minutes 写在最后一级",
        )
    return steps


Escalation = Annotated[list[EscalationStep], AfterValidator(_escalation)]


class Route(_Strict):
    rules: list[str] = Field(
        min_length=1, description='rule ids or patterns ("equipment.*"); first match wins'
    )
    escalation: Escalation = Field(min_length=1, description="the stages for these rules")


def _public_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(
            f"{url!r} is not an http:// or https:// address",
            f"{url!r} 不是 http:// 或 https:// 地址",
        )
    return url.rstrip("/")


class Notify(_Strict):
    public_url: Annotated[str, AfterValidator(_public_url)] | None = Field(
        None, description="the web page's address; links in messages point here"
    )
    rate_per_minute: int = Field(
        20, ge=1, description="messages per minute per notify URL (a DingTalk robot takes 20)"
    )
    escalation: Escalation = Field(default_factory=list, description="the default for every rule")
    routes: list[Route] = Field(
        default_factory=list, description="per-rule escalations; first match wins"
    )


class WalkingLeg(_Strict):
    between: tuple[Id, Id] = Field(description="two post ids")
    minutes: float = Field(ge=0, description="the least time to walk from one to the other")


class Walking(_Strict):
    default_minutes: float = Field(
        1, ge=0, description="least walking time between two different posts"
    )
    legs: list[WalkingLeg] = Field(default_factory=list, description="pairs that differ")


class SiteConfig(_Strict):
    """One site file."""

    site: SiteInfo
    duty: Duty = Field(default_factory=Duty)
    people: list[Person] = Field(default_factory=list)
    posts: list[Post] = Field(default_factory=list)
    equipment: list[Equipment] = Field(default_factory=list)
    roster: Roster | None = None
    notify: Notify = Field(default_factory=Notify)
    walking: Walking = Field(default_factory=Walking, description="for impossible_travel")
