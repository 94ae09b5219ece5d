"""`workorder.overdue` (contract §11): an open work order past its due time; clears when closed.

Work orders arrive as events of the commands `workorder.open` and `workorder.close`. A restart
rebuilds this rule from every work order still open, however old (`seed`), not only from the
last two duty days the other rules read back.
"""

from __future__ import annotations

import datetime as dt
import heapq
import sqlite3
from dataclasses import dataclass
from typing import ClassVar

from gateway.events import Event, WorkOrderClosed, WorkOrderOpened
from gateway.rules.base import Clearing, RuleContext, RuleId, RuleSpec, Severity

WORKORDER_OVERDUE = RuleId.workorder_overdue
_TEXT = {
    "zh-CN": "工作任务单 {id}（{title}）已超过完成期限 {due}",
    "en": "Work order {id} ({title}) is past its due time {due}",
}


@dataclass(frozen=True)
class OpenOrder:
    """What the rule keeps of one open work order."""

    id: str
    due: dt.datetime | None
    title: str


class WorkOrders:
    """Raises `workorder.overdue` at a work order's due time unless it closed before."""

    events: ClassVar[tuple[type, ...]] = (WorkOrderOpened, WorkOrderClosed)
    specs: ClassVar[tuple[RuleSpec, ...]] = (
        RuleSpec(WORKORDER_OVERDUE, Severity.warning, Clearing.clears),
    )

    def __init__(self) -> None:
        self.open: dict[str, OpenOrder] = {}
        self._due: list[tuple[dt.datetime, str]] = []  # (due, id) not yet decided

    def seed(self, orders: list[OpenOrder]) -> None:
        """Work orders opened before the record a restart reads back, still open then."""
        for order in orders:
            self._add(order)

    def _add(self, order: OpenOrder) -> None:
        if order.id in self.open:
            return  # seen already (a seeded order read back again)
        self.open[order.id] = order
        if order.due is not None:
            heapq.heappush(self._due, (order.due, order.id))

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        """Follow work orders opened and closed."""
        if isinstance(event, WorkOrderOpened):
            self._add(OpenOrder(event.id, event.due, event.title))
        elif isinstance(event, WorkOrderClosed):
            self.open.pop(event.id, None)
            ctx.clear(WORKORDER_OVERDUE, event.id)

    def next_deadline(self) -> dt.datetime | None:
        """The earliest due time of an open work order not yet decided."""
        while self._due and self._due[0][1] not in self.open:
            heapq.heappop(self._due)  # closed before it fell due
        return self._due[0][0] if self._due else None

    def on_deadline(self, ctx: RuleContext) -> None:
        """Raise for every open work order due by now."""
        while self._due and self._due[0][0] <= ctx.now:
            due, ident = heapq.heappop(self._due)
            order = self.open.get(ident)
            if order is None:
                continue
            locale = ctx.site.config.site.locale
            local = due.astimezone(ctx.site.tz).strftime("%Y-%m-%d %H:%M")
            template = _TEXT.get(locale, _TEXT["zh-CN"])
            ctx.raise_(
                WORKORDER_OVERDUE,
                ident,
                Severity.warning,
                template.format(id=ident, title=order.title, due=local),
                {"title": order.title, "due": due.astimezone(ctx.site.tz).isoformat()},
            )


def open_orders(db: sqlite3.Connection, at: dt.datetime) -> list[OpenOrder]:
    """The work orders opened before `at` and not closed before it, from the store."""
    from gateway.records.ledger import load

    return [
        OpenOrder(o.id, o.due, o.title)
        for o in load(db, at).workorders.values()
        if o.closed_at is None
    ]
