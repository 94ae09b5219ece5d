"""An in-memory twin of `MqttLink` for unit tests (the httpx `MockTransport` habit): it records
what the worker and the forwarders acknowledge and publish, and confirms on demand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.events import Message


@dataclass(frozen=True)
class Sent:
    """One publication as the twin received it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class MemoryLink:
    """Acks and publications in order; `confirm` decides whether the "broker" confirms them."""

    confirm: bool = True
    accept: bool = True  # False: the client's queue is "full"; publish returns None
    acked: list[Message] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    on_ack: Callable[[Message], None] | None = None

    def ack(self, msg: Message) -> None:
        """Record an acknowledgement."""
        if self.on_ack is not None:
            self.on_ack(msg)
        self.acked.append(msg)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Callable[[], bool] | None:
        """Record a publication; its confirmation follows `self.confirm` when asked."""
        if not self.accept:
            return None
        self.sent.append(Sent(topic, payload, qos, retain))
        return lambda: self.confirm

    def topics(self, suffix: str = "") -> list[str]:
        """The topics published so far (ending in `suffix`)."""
        return [s.topic for s in self.sent if s.topic.endswith(suffix)]
