"""The topic tree of contract §2, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.models import ID_RE


@dataclass(frozen=True)
class Topics:
    """Topic names for one site under one root."""

    root: str
    site: str

    @property
    def base(self) -> str:
        """`{root}/{site}`."""
        return f"{self.root}/{self.site}"

    def subscriptions(self) -> list[str]:
        """What the gateway subscribes to (QoS 1): every device-to-gateway topic, and typos."""
        return [f"{self.base}/reader/+/+", f"{self.base}/equipment/+/+", f"{self.base}/device/+/+"]

    def scan(self, reader: str) -> str:
        """Where a reader publishes its scans."""
        return f"{self.base}/reader/{reader}/scan"

    def reading(self, equipment: str) -> str:
        """Where equipment publishes its readings."""
        return f"{self.base}/equipment/{equipment}/reading"

    def device_status(self, device: str) -> str:
        """A device's retained online/offline (its last will)."""
        return f"{self.base}/device/{device}/status"

    def ack(self, reader: str) -> str:
        """The scan answer of one reader."""
        return f"{self.base}/reader/{reader}/ack"

    def alert(self, alert_id: str) -> str:
        """The retained alert record."""
        return f"{self.base}/alert/{alert_id}"

    @property
    def patrol_status(self) -> str:
        """The retained duty-day summary."""
        return f"{self.base}/patrol/status"

    @property
    def gateway_status(self) -> str:
        """The gateway's own retained online/offline (last will)."""
        return f"{self.base}/gateway/status"

    @property
    def rejected(self) -> str:
        """Refused messages, for operators."""
        return f"{self.base}/gateway/rejected"

    def parse(self, topic: str) -> tuple[str, str] | str:
        """(kind, id) for an inbound topic — kind is scan, reading or status — or a reason."""
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return f"topic is not under {prefix}"
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 3:
            return "expected {kind}/{id}/{suffix} after the site"
        kind, ident, suffix = parts
        expected = {"reader": "scan", "equipment": "reading", "device": "status"}
        if kind not in expected or suffix != expected[kind]:
            want = ", ".join(f"{k}/{{id}}/{v}" for k, v in expected.items())
            return f"unknown topic {kind}/…/{suffix}: devices publish {want}"
        if not ID_RE.match(ident):
            return f"{ident[:70]!r} is not a valid id ([a-z0-9][a-z0-9_-]{{0,63}})"
        return (expected[kind], ident)

    def is_own(self, topic: str) -> bool:
        """True for what the gateway itself publishes under the subscriptions (scan answers)."""
        return topic.startswith(self.base + "/reader/") and topic.endswith("/ack")
