"""Rules 7 and 8 of contract §5: equipment.out_of_range and equipment.stale (篇3–篇5)."""

from __future__ import annotations

import datetime as dt
import heapq
import math
import os
from dataclasses import dataclass
from typing import ClassVar

from gateway import messages
from gateway.config.models import ENGINEERING_ROLES, Metric
from gateway.config.site import Site
from gateway.events import Event, Reading, Scan
from gateway.rules.base import Clearing, RuleContext, RuleId, RuleSpec, Severity
from gateway.rules.engine import CHECK_ENV
from gateway.timeutil import iso

OUT_OF_RANGE = RuleId.equipment_out_of_range
STALE = RuleId.equipment_stale
_OUT, _STALE = 0, 1  # the kinds of deadline (out of range first on a tie, as before)


def is_out(metric: Metric, value: float | bool) -> bool:
    """Below min, above max, or a boolean other than `expect` (the limits themselves are inside)."""
    if metric.expect is not None:
        return bool(value) != metric.expect
    if isinstance(value, bool):
        return False
    return (metric.min is not None and value < metric.min) or (
        metric.max is not None and value > metric.max
    )


def _band(metric: Metric) -> tuple[type, float | bool, float | bool]:
    """The values `is_out` finds inside: of this type, from low to high (both included)."""
    if metric.expect is not None:
        return bool, metric.expect, metric.expect
    low = -math.inf if metric.min is None else metric.min
    high = math.inf if metric.max is None else metric.max
    return float, low, high


def is_back(metric: Metric, value: float | bool) -> bool:
    """Inside by at least the hysteresis: the condition for clearing."""
    if metric.expect is not None:
        return bool(value) == metric.expect
    if isinstance(value, bool):
        return True
    h = metric.hysteresis
    return (metric.min is None or value >= metric.min + h) and (
        metric.max is None or value <= metric.max - h
    )


def limits(metric: Metric) -> str:
    """The normal range, for messages."""
    if metric.expect is not None:
        return f"= {str(metric.expect).lower()}"
    parts = []
    if metric.min is not None:
        parts.append(f"≥ {metric.min:g}")
    if metric.max is not None:
        parts.append(f"≤ {metric.max:g}")
    return ", ".join(parts)


@dataclass
class _MetricState:
    out_since: dt.datetime | None = None  # first reading of the current out-of-range stretch
    value: float | bool | None = None
    # Latch (rule 7), by rule time: the latest reading outside the back band, and the earliest
    # and latest readings back inside it since. The value is back since `back_since` while that
    # is set; an engineer's check at or after it releases the alarm.
    last_off: dt.datetime | None = None
    back_since: dt.datetime | None = None
    back_latest: dt.datetime | None = None

    def off(self, at: dt.datetime) -> None:
        """A reading outside the back band (out of range, or inside by less than hysteresis)."""
        self.last_off = at if self.last_off is None else max(self.last_off, at)
        if self.back_since is None or at < self.back_since:
            return
        # It falls within the back stretch: the stretch now starts after it. Only the latest
        # back reading is kept, so a late one that splits the stretch keeps the latest: a
        # stricter start, never an earlier one (the alarm stays latched rather than clear).
        if self.back_latest is not None and self.back_latest > at:
            self.back_since = self.back_latest
        else:
            self.back_since = self.back_latest = None

    def back(self, at: dt.datetime) -> None:
        """A reading back inside by at least the hysteresis."""
        if self.last_off is not None and at <= self.last_off:
            return  # older than a reading that left the band: it is not the value now
        self.back_since = at if self.back_since is None else min(self.back_since, at)
        self.back_latest = at if self.back_latest is None else max(self.back_latest, at)


_MetricEntry = tuple[Metric, _MetricState, str, bool, type, float | bool, float | bool]


class EquipmentRules:
    """Out-of-range with duration, hysteresis and latch; staleness per equipment."""

    events: ClassVar[tuple[type, ...]] = (Reading, Scan)
    moved_by: ClassVar[tuple[type, ...]] = (Reading,)  # a scan only releases latched alarms
    specs: ClassVar[tuple[RuleSpec, ...]] = (
        RuleSpec(OUT_OF_RANGE, None, Clearing.clears),  # severity: the metric's
        RuleSpec(STALE, Severity.warning, Clearing.clears),
    )

    def __init__(self, site: Site, start: dt.datetime) -> None:
        self.site = site
        self.state: dict[tuple[str, str], _MetricState] = {
            (e.id, m): _MetricState() for e in site.config.equipment for m in e.metrics
        }
        self.last_reading: dict[str, dt.datetime] = {
            e.id: start for e in site.config.equipment if e.stale_after_seconds is not None
        }
        self.stale_fired: dict[str, dt.datetime] = {}
        # Latched metrics by post, and the latest engineer's check (rule time) at each post.
        self.latched: dict[str, list[tuple[str, str]]] = {}
        for e in site.config.equipment:
            for m, metric in e.metrics.items():
                if metric.latch:
                    self.latched.setdefault(e.post, []).append((e.id, m))
        self.checked: dict[str, dt.datetime] = {}
        # What a reading of each metric needs, looked up once: equipment → metric name →
        # (its declaration, its state, its alert subject, whether it latches, and the values
        # inside: see _band). A model's field is read at a third of the speed of a tuple's.
        self._metrics: dict[str, dict[str, _MetricEntry]] = {
            e.id: {
                m: (metric, self.state[(e.id, m)], f"{e.id}.{m}", metric.latch, *_band(metric))
                for m, metric in e.metrics.items()
            }
            for e in site.config.equipment
        }
        # Pending deadlines as a heap of (when, kind, equipment, metric), checked against the
        # state when they reach the top: the next deadline costs O(log n), not a pass over every
        # metric. An out-of-range entry the state no longer gives is dropped. Each equipment has
        # at most one staleness entry, never later than its deadline: a reading moves only the
        # time heard, and the entry moves to the new deadline when it reaches the top.
        self._for_td = {
            (e.id, m): dt.timedelta(seconds=metric.for_seconds)
            for e in site.config.equipment
            for m, metric in e.metrics.items()
        }
        self._stale_td = {
            e.id: dt.timedelta(seconds=e.stale_after_seconds or 0) for e in site.config.equipment
        }
        self._heap: list[tuple[dt.datetime, int, str, str]] = []
        self._stale_queued: set[str] = set()  # the equipment with a staleness entry
        # next_deadline(), kept until the heap changes or a reading of the equipment whose
        # entry is at its top (a reading of another leaves the top entry as it was)
        self._next: dt.datetime | None = None
        self._next_known = False
        self._check = bool(os.environ.get(CHECK_ENV))  # the tests: check the kept one
        for eq, last in self.last_reading.items():
            self._push_stale(eq, last)

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        """Readings move the metrics; an engineer's scan at the post releases latched alerts."""
        if isinstance(event, Reading):
            heap = self._heap
            if not heap or heap[0][2] == event.equipment:
                self._next_known = False  # its entry is next: the reading may move it
            self._reading(ctx, event)
        elif (
            isinstance(event, Scan)
            and event.post in self.latched
            and self.site.has_role(event.person, ENGINEERING_ROLES)
        ):
            previous = self.checked.get(event.post)
            self.checked[event.post] = event.time if previous is None else max(previous, event.time)
            for eq, name in self.latched[event.post]:
                self._release(ctx, eq, name)

    def next_deadline(self) -> dt.datetime | None:
        """The earliest duration reached or silence too long."""
        if self._next_known:  # nothing moved since (a scan, say)
            if self._check and self._first_pending() != self._next:
                raise AssertionError(f"equipment deadline kept stale: {self._next}")
            return self._next
        self._next = self._first_pending()
        self._next_known = True
        return self._next

    def _first_pending(self) -> dt.datetime | None:
        heap = self._heap
        while heap:
            when, kind, eq, name = heap[0]
            if kind == _OUT:
                if self._out_pending(when, eq, name):
                    return when
                heapq.heappop(heap)
                continue
            last = self.last_reading[eq]
            if self.stale_fired.get(eq) == last:  # fired for this silence: none until heard
                heapq.heappop(heap)
                self._stale_queued.discard(eq)
                continue
            due = last + self._stale_td[eq]
            if due == when:
                return when
            heapq.heapreplace(heap, (due, _STALE, eq, ""))  # heard since: the entry moves
        return None

    def _out_pending(self, when: dt.datetime, eq: str, name: str) -> bool:
        """Whether the state still gives this out-of-range deadline (entries stay until seen)."""
        st = self.state[(eq, name)]
        return st.out_since is not None and st.out_since + self._for_td[(eq, name)] == when

    def _push_out(self, eq: str, name: str, since: dt.datetime) -> None:
        duration = self._for_td[(eq, name)]
        if duration > dt.timedelta(0):
            self._next_known = False
            heapq.heappush(self._heap, (since + duration, _OUT, eq, name))
            if len(self._heap) > 4 * (len(self._stale_td) + len(self._for_td)) + 1024:
                # Entries the state no longer gives pile up behind the valid ones: drop them.
                self._heap = [
                    e for e in self._heap if e[1] == _STALE or self._out_pending(e[0], e[2], e[3])
                ]
                heapq.heapify(self._heap)

    def _push_stale(self, eq: str, last: dt.datetime) -> None:
        self._next_known = False
        heapq.heappush(self._heap, (last + self._stale_td[eq], _STALE, eq, ""))
        self._stale_queued.add(eq)

    def on_deadline(self, ctx: RuleContext) -> None:
        """Raise what is due at `ctx.now`."""
        self._next_known = False
        for (eq, m), st in self.state.items():
            if st.out_since is not None and st.out_since + self._for(eq, m) <= ctx.now:
                self._raise(ctx, eq, m, st)
        for eq, last in self.last_reading.items():
            if self.stale_fired.get(eq) != last and last + self._stale_after(eq) <= ctx.now:
                self.stale_fired[eq] = last
                seconds = int(self._stale_after(eq).total_seconds())
                ctx.raise_(
                    STALE,
                    eq,
                    Severity.warning,
                    messages.for_site(
                        self.site, STALE, equipment=self.site.equipment[eq].name, seconds=seconds
                    ),
                    {"last_reading": iso(last, self.site.tz)},
                )

    # -- internals ---------------------------------------------------------------------------

    def _for(self, equipment: str, metric: str) -> dt.timedelta:
        return dt.timedelta(seconds=self.site.equipment[equipment].metrics[metric].for_seconds)

    def _stale_after(self, equipment: str) -> dt.timedelta:
        return dt.timedelta(seconds=self.site.equipment[equipment].stale_after_seconds or 0)

    def _reading(self, ctx: RuleContext, reading: Reading) -> None:
        eq = reading.equipment
        if eq in self.last_reading:
            # Staleness is about hearing from the equipment: a meter that delivers what it
            # buffered while offline is heard now, whatever its readings' stamps say.
            last = max(self.last_reading[eq], reading.received_at)
            if last != self.last_reading[eq]:
                self.last_reading[eq] = last
                if eq not in self._stale_queued:  # else its entry moves when at the top
                    self._push_stale(eq, last)
            ctx.clear(STALE, eq)
        metrics = self._metrics[eq]
        open_alert_for = ctx.book.get
        for name, value in reading.values.items():
            metric, st, subject, latch, kind, low, high = metrics[name]
            st.value = value
            open_alert = open_alert_for(OUT_OF_RANGE, subject)
            if latch:
                if is_back(metric, value):
                    st.back(reading.time)
                else:
                    st.off(reading.time)
            elif type(value) is kind and low <= value <= high:  # inside: is_out, at once
                st.out_since = None
                if open_alert is not None and is_back(metric, value):
                    ctx.clear(OUT_OF_RANGE, subject)
                continue
            if is_out(metric, value):
                if open_alert is None and st.out_since is None:
                    st.out_since = reading.time
                    self._push_out(eq, name, reading.time)
                    if metric.for_seconds == 0:
                        self._raise(ctx, eq, name, st)
                continue
            st.out_since = None  # the stretch is broken: a pending duration starts over
            if open_alert is None or not is_back(metric, value):
                continue
            if latch:
                self._release(ctx, eq, name)  # an engineer may have checked already
            else:
                ctx.clear(OUT_OF_RANGE, subject)

    def _release(self, ctx: RuleContext, eq: str, name: str) -> None:
        """Clear a latched alarm once an engineer checked on site with the value back (rule 7).

        The check must be at or after a reading back inside the band, with no reading since
        outside it: a scan stamped before the value came back never clears, whenever it
        arrives; a back reading handled after the check clears when it is handled.
        """
        st = self.state[(eq, name)]
        checked = self.checked.get(self.site.equipment[eq].post)
        if st.back_since is None or checked is None or checked < st.back_since:
            return
        if ctx.book.get(OUT_OF_RANGE, f"{eq}.{name}") is not None:
            ctx.clear(OUT_OF_RANGE, f"{eq}.{name}")

    def _raise(self, ctx: RuleContext, eq: str, name: str, st: _MetricState) -> None:
        metric = self.site.equipment[eq].metrics[name]
        since = st.out_since
        st.out_since = None
        value = st.value
        shown = str(value).lower() if isinstance(value, bool) else f"{value:g}"
        ctx.raise_(
            OUT_OF_RANGE,
            f"{eq}.{name}",
            metric.severity,
            messages.for_site(
                self.site,
                OUT_OF_RANGE,
                equipment=self.site.equipment[eq].name,
                metric=name,
                value=shown,
                unit=metric.unit,
                limits=limits(metric),
            ),
            {
                "value": value,
                "since": None if since is None else iso(since, self.site.tz),
                "latch": metric.latch,
            },
        )
