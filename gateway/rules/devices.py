"""Rules 9 and 10 of contract §5: device.offline and scan.unknown_credential."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from gateway import messages
from gateway.events import DeviceStatus, Event, Scan
from gateway.rules.base import Clearing, RuleContext, RuleId, RuleSpec, Severity

DEVICE_OFFLINE = RuleId.device_offline
UNKNOWN_CREDENTIAL = RuleId.scan_unknown_credential


def _where(ctx: RuleContext, device: str) -> str:
    post = ctx.site.reader_post.get(device)
    if post is not None:
        return post.name
    equipment = ctx.site.equipment.get(device)
    return equipment.name if equipment is not None else device


class DeviceOffline:
    """Rule 9: a device's status says offline → raised; online clears."""

    events: ClassVar[tuple[type, ...]] = (DeviceStatus,)
    deadlines: ClassVar[bool] = False
    specs: ClassVar[tuple[RuleSpec, ...]] = (
        RuleSpec(DEVICE_OFFLINE, Severity.warning, Clearing.clears),
    )

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        """Follow the retained status of readers and equipment."""
        if not isinstance(event, DeviceStatus):
            return
        if event.state == "online":
            ctx.clear(DEVICE_OFFLINE, event.device)
        elif ctx.book.get(DEVICE_OFFLINE, event.device) is None:
            where = _where(ctx, event.device)
            ctx.raise_(
                DEVICE_OFFLINE,
                event.device,
                Severity.warning,
                messages.text(
                    ctx.site.config.site.locale, DEVICE_OFFLINE, device=event.device, where=where
                ),
                {"device": event.device},
            )

    def next_deadline(self) -> dt.datetime | None:
        """No deadlines."""
        return None

    def on_deadline(self, ctx: RuleContext) -> None:
        """No deadlines."""


class UnknownCredential:
    """Rule 10: a credential that belongs to nobody → raised per reader; does not clear."""

    events: ClassVar[tuple[type, ...]] = (Scan,)
    deadlines: ClassVar[bool] = False
    specs: ClassVar[tuple[RuleSpec, ...]] = (
        RuleSpec(UNKNOWN_CREDENTIAL, Severity.warning, Clearing.never),
    )

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        """Raise, or update the open alert with the latest credential and a count."""
        if not isinstance(event, Scan) or event.person is not None:
            return
        current = ctx.book.get(UNKNOWN_CREDENTIAL, event.reader)
        count = 1 if current is None else int(current.details.get("count", 1)) + 1
        credential = f"{event.method}:{event.credential}"
        ctx.raise_(
            UNKNOWN_CREDENTIAL,
            event.reader,
            Severity.warning,
            messages.text(
                ctx.site.config.site.locale,
                UNKNOWN_CREDENTIAL,
                where=_where(ctx, event.reader),
                reader=event.reader,
                credential=credential,
            ),
            {"credential": credential, "count": count, "post": event.post},
        )

    def next_deadline(self) -> dt.datetime | None:
        """No deadlines."""
        return None

    def on_deadline(self, ctx: RuleContext) -> None:
        """No deadlines."""
