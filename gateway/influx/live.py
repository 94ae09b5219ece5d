"""What the running gateway adds for InfluxDB: rule 12 and the patrol status tap (live only).

Rule 12 `gateway.forward_lagging` (§8): the oldest row not yet in InfluxDB is older than 10
minutes → raised (warning, subject `influxdb`); clears once the backlog is sent. The worker
thread, the single writer, calls `forward_lagging` before each step with the age the
forwarders last measured (a number in memory: no I/O), and the transition is stored and
committed with that step. A replay has no InfluxDB and never calls it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from gateway.alerts.book import Transition
from gateway.config.models import Severity
from gateway.events import Message
from gateway.pipeline import Pipeline
from gateway.rules.base import RuleId
from gateway.worker import Link

log = logging.getLogger(__name__)

LAG_SECONDS = 600.0
SUBJECT = "influxdb"


def forward_lagging(
    pipeline: Pipeline, age_s: float, now: dt.datetime, limit: float = LAG_SECONDS
) -> list[Transition]:
    """Raise or clear rule 12 for a backlog whose oldest row waited `age_s` seconds; the
    transitions are recorded in the store (committed by the worker's next step)."""
    book = pipeline.book
    rule = RuleId.gateway_forward_lagging
    current = book.get(rule, SUBJECT)
    transitions: list[Transition] = []
    if age_s > limit and current is None:
        minutes = int(age_s // 60)
        message = (
            f"InfluxDB 转发滞后 {minutes} 分钟 / InfluxDB forwarding lags: the oldest row not yet "
            f"in InfluxDB was stored {minutes} min ago"
        )
        transitions.append(
            book.raise_(rule, SUBJECT, Severity.warning, now, message, {"age_s": round(age_s)})
        )
    elif age_s <= limit and current is not None:
        cleared = book.clear(rule, SUBJECT, now)
        if cleared is not None:
            transitions.append(cleared)
    pipeline.record(transitions)
    return transitions


class StatusTap:
    """The worker's link, which also hands each patrol status document it publishes to
    `on_status` (so the `patrol` point needs no second computation). Everything else passes."""

    def __init__(
        self, link: Link, status_topic: str, on_status: Callable[[Mapping[str, Any]], None]
    ) -> None:
        self.link = link
        self.status_topic = status_topic
        self.on_status = on_status

    def ack(self, msg: Message) -> None:
        """Acknowledge through the real link."""
        self.link.ack(msg)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Callable[[], bool] | None:
        """Publish through the real link; a patrol status is also handed on."""
        if topic == self.status_topic and payload:
            try:
                self.on_status(json.loads(payload))
            except ValueError:  # never: the worker rendered it; the MQTT side must not suffer
                log.exception("patrol status not JSON")
        return self.link.publish(topic, payload, qos, retain)
