"""The simulator's MQTT side: simulated devices publishing a `Simulator`'s events to a broker.

`SimClock` turns real seconds into simulated time (the demo hands the same clock to the
gateway); `Publisher` connects one MQTT client per simulated device and publishes each event
when the clock reaches it. The command line (`python -m devices.simulator`) is in `__main__`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.mqtt_device import device_client
from devices.simulator.engine import Simulator
from gateway.ingest.mqtt import BrokerUrl

__all__ = ["Publisher", "SimClock"]


class SimClock:
    """Simulated time, frozen at `start` until `start()`, then `speed` simulated minutes per
    real second (60: an hour a second) until `freeze()`. Monotonic; a gateway clock."""

    def __init__(
        self, start: dt.datetime, speed: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be above 0 simulated minutes per second")
        self.origin, self.factor, self._mono = start.astimezone(dt.UTC), speed * 60.0, monotonic
        self._t0: float | None = None
        self._last, self._lock, self._frozen = self.origin, threading.Lock(), False

    def start(self) -> None:
        """Let time run (a second call, or one after `freeze()`, changes nothing)."""
        with self._lock:
            if self._t0 is None and not self._frozen:
                self._t0 = self._mono()

    def freeze(self) -> None:
        """Stop time where it is (a stopped simulation must not run into deadlines)."""
        with self._lock:
            self.origin, self._t0, self._frozen = self._now(), None, True

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now()

    def _now(self) -> dt.datetime:
        ran = 0.0 if self._t0 is None else (self._mono() - self._t0) * self.factor
        self._last = max(self._last, self.origin + dt.timedelta(seconds=ran))
        return self._last

    def real_seconds_until(self, at: dt.datetime) -> float:
        """Real seconds until the simulated instant `at` (negative once it has passed)."""
        return (at - self()).total_seconds() / self.factor


class Publisher:
    """Runs a `Simulator` against a broker: one MQTT client per device (`device_client`), each
    with its last will (`offline`, retained) on its status topic. A clean `close()` sends no
    will (MQTT)."""

    MAX_TICK, MIN_TICK = 0.25, 0.005  # real seconds between looks at the clock

    def __init__(self, sim: Simulator, broker: str, clock: SimClock) -> None:
        self.sim, self.url, self.clock, self.published = sim, BrokerUrl.parse(broker), clock, 0
        self._clients: dict[str, paho.Client] = {}
        self._up: dict[str, threading.Event] = {}
        self._status: dict[str, bytes] = {}  # last status sent, said again after a reconnect
        self._last: dict[str, paho.MQTTMessageInfo] = {}  # last publication of each device

    def connect(self, timeout: float = 10.0) -> None:
        """Connect every device; raise ConnectionError if one is not connected in `timeout`."""
        for device in sorted(self.sim.site.devices):
            client_id = f"sim-{self.sim.site.id}-{device}"
            client = device_client(self.url, client_id, self._status_topic(device))
            self._up[device] = threading.Event()
            client.on_connect = self._on_connect(device)
            client.connect_async(self.url.host, self.url.port, keepalive=30)
            client.loop_start()
            self._clients[device] = client
        deadline = time.monotonic() + timeout
        if not all(up.wait(max(0.0, deadline - time.monotonic())) for up in self._up.values()):
            self.close()
            raise ConnectionError(f"simulated devices could not connect to {self.url}")

    def _status_topic(self, device: str) -> str:
        return f"{self.sim.topics.base}/device/{device}/status"

    def _on_connect(self, device: str) -> Callable[..., None]:
        def on_connect(
            client: paho.Client,
            _u: object,
            _f: paho.ConnectFlags,
            reason: ReasonCode,
            _p: Properties | None,
        ) -> None:
            if not reason.is_failure:
                self._up[device].set()
                status = self._status.get(device)
                if status is not None:  # after a broker blip, the will said offline
                    client.publish(self._status_topic(device), status, 1, True)

        return on_connect

    def run(self, stop: threading.Event) -> None:
        """Publish every event when the simulated clock reaches it, until `stop` is set."""
        self.clock.start()
        while not stop.is_set():
            for ev in self.sim.events_until(self.clock()):
                if ev.kind == "status":
                    self._status[ev.device] = ev.payload
                info = self._clients[ev.device].publish(ev.topic, ev.payload, ev.qos, ev.retain)
                self._last[ev.device] = info
                self.published += 1
            due = self.sim.next_at()
            wait = self.MAX_TICK if due is None else self.clock.real_seconds_until(due)
            stop.wait(min(self.MAX_TICK, max(self.MIN_TICK, wait)))

    def close(self, flush_seconds: float = 2.0) -> None:
        """Let the broker acknowledge what was sent (bounded), then disconnect every device."""
        deadline = time.monotonic() + flush_seconds
        for info in self._last.values():
            with contextlib.suppress(ValueError, RuntimeError):  # never queued: nothing to wait
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        for client in self._clients.values():
            client.disconnect()
            client.loop_stop()
        self._clients.clear()
