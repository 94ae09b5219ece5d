"""Domain results rendered as MQTT publications (contract §2, §3, §6): topics and payloads.

The pipeline and the worker deal in answers, refusals, transitions and status documents; only
this module knows what they look like on the wire.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.alerts.record import Alert
from gateway.ingest.topics import Topics
from gateway.pipeline import Answer, Refusal

REJECTED_PAYLOAD_BYTES = 512  # §2: a refused payload is cut to 512 bytes


@dataclass(frozen=True)
class Publication:
    """Something to publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _answer_json(body: dict[str, Any]) -> bytes:
    """`_json` of a scan answer (text, integers, booleans: no floats, whose exponents orjson
    writes differently), about 4× faster, for one answer per scan; what orjson refuses (a
    lone surrogate, an integer past 64 bits) goes `_json`'s way."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return _json(body)


class Renderer:
    """Topics and payloads for one site."""

    def __init__(self, topics: Topics, tz: dt.tzinfo) -> None:
        self.topics = topics
        self.tz = tz

    def answer(self, answer: Answer) -> Publication:
        """The scan answer on `reader/{reader}/ack` (QoS 1, not retained)."""
        body = {
            "seq": answer.seq,
            "ok": answer.ok,
            "person": answer.person,
            "message": answer.message,
            "flags": list(answer.flags),
        }
        return Publication(self.topics.ack(answer.reader), _answer_json(body), 1, False)

    def refusal(self, refusal: Refusal) -> Publication:
        """`{"topic", "reason", "payload"}` on `gateway/rejected` (QoS 0)."""
        cut = refusal.rejection.payload[:REJECTED_PAYLOAD_BYTES]
        body = {
            "topic": refusal.rejection.topic,
            "reason": refusal.reason,
            "payload": cut.decode("utf-8", errors="replace"),
        }
        return Publication(self.topics.rejected, _json(body), 0, False)

    def alert(self, alert: Alert) -> Publication:
        """The retained alert record, or the empty retained message that clears it (§2)."""
        payload = b"" if alert.state == "closed" else _json(alert.to_json(self.tz))
        return Publication(self.topics.alert(alert.id), payload, 1, True)

    def alert_record(self, alert_id: str, record: dict[str, Any] | None) -> Publication:
        """The same from a stored record (None or a closed one: the empty message)."""
        closed = record is None or record.get("state") == "closed"
        return Publication(self.topics.alert(alert_id), b"" if closed else _json(record), 1, True)

    def status(self, document: dict[str, Any]) -> Publication:
        """The retained patrol status (§3)."""
        return Publication(
            self.topics.patrol_status,
            json.dumps(document, ensure_ascii=False, sort_keys=True).encode(),
            1,
            True,
        )
