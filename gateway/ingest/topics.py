"""The topic tree of contract §2, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

# `gateway.config.models.ID_PATTERN` (a unit test keeps them equal), compiled here: importing the
# configuration's models (pydantic, YAML) would double the MQTT link process's start-up.
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


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
        """What the gateway subscribes to (QoS 1): the site's whole tree, so nothing is missed.

        Whatever arrives that is neither an input (`parse`) nor one of the gateway's own
        outputs (`is_output`) is refused with a reason (contract §2), never dropped silently.
        """
        return [f"{self.base}/#"]

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
        want = "devices publish reader/{id}/scan, equipment/{id}/reading or device/{id}/status"
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return f"topic is not under {prefix}: {want}"
        rest = topic[len(prefix) :]
        parts = rest.split("/")
        if len(parts) != 3:
            shape = "an empty level (a trailing '/'?)" if "" in parts else f"{len(parts)} levels"
            return f"expected 3 levels after the site, not {_cut(rest)!r} ({shape}): {want}"
        kind, ident, suffix = parts
        expected = {"reader": "scan", "equipment": "reading", "device": "status"}
        if kind not in expected or suffix != expected[kind]:
            return f"unknown topic {_cut(kind)}/…/{_cut(suffix)}: {want}"
        if not ID_RE.match(ident):
            return f"{_cut(ident)!r} is not a valid id ([a-z0-9][a-z0-9_-]{{0,63}})"
        return (expected[kind], ident)

    def is_output(self, topic: str) -> bool:
        """True for a topic the gateway itself publishes on (§2): ack, alert, the statuses.

        On an MQTT 3.1.1 broker the whole-tree subscription brings the gateway's own
        publications back; on MQTT 5 (*no local*) what still arrives here is someone else's,
        or a retained message (an earlier run's alerts). Neither is input.
        """
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return False
        parts = topic[len(prefix) :].split("/")
        if len(parts) == 3 and parts[0] == "reader" and parts[2] == "ack":
            return bool(parts[1])
        if len(parts) == 2 and parts[0] == "alert":
            return bool(parts[1])
        return parts in (["patrol", "status"], ["gateway", "status"], ["gateway", "rejected"])


def _cut(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
