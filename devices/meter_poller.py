"""Meter poller: reads plant-room meters over Modbus RTU/TCP and publishes contract readings.

A small YAML file (`devices/meters.example.yaml`, docs/meter-poller.md; its model is
`devices.meter_config`) maps each meter's registers to the metrics of one equipment of the site;
`devices.meter_modbus` reads and decodes them. Every meter has its own MQTT connection
(client id `meter-poller-{site}-{equipment}`) whose last will is `offline`, retained, on
`device/{equipment}/status` (contract §2); a meter that does not answer `offline_after` polls
in a row is said `offline` too, and `online` again when it answers. Readings (§3) go out at
QoS 1 with a per-equipment `seq` kept in `--state DIR` across restarts.

    python -m devices.meter_poller --config devices/meters.example.yaml [--broker URL] [--state DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.meter_config import (
    Connection,
    MeterConfigError,
    PollerConfig,
    RtuMeter,
    TcpMeter,
    check_against_site,
    connection_of,
    load_config,
)
from devices.mqtt_device import device_client, held
from gateway import payloads
from gateway.config import ConfigError, load_site
from gateway.extras import requires_extra
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.topics import Topics

with requires_extra("devices"):
    from devices.meter_modbus import ModbusSource, Source, Value, read_meter

log = logging.getLogger("devices.meter_poller")  # the same name under `python -m`

# -- state and MQTT ----------------------------------------------------------------------------


class SeqStore:
    """`seq` per equipment in a JSON file, saved before each reading is sent.

    Saved first, so a crash can skip a number but never reuse one (the gateway would drop the
    reading as a duplicate). With no saved number an equipment starts at the epoch millisecond,
    so even a lost state file does not fall back below numbers the gateway already has.
    """

    def __init__(self, path: Path) -> None:
        self.path, self._lock = path, threading.Lock()
        try:
            self._seq: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
        except ValueError as exc:
            raise ValueError(f"{path} is damaged ({exc}): move it away to start afresh") from exc

    def next(self, equipment: str, now: dt.datetime) -> int:
        with self._lock:
            last = self._seq.get(equipment)
            self._seq[equipment] = int(now.timestamp() * 1000) if last is None else last + 1
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._seq, sort_keys=True))
            os.replace(tmp, self.path)
            return self._seq[equipment]


class Sink(Protocol):
    """The MQTT side of one equipment."""

    def reading(self, payload: bytes) -> None: ...

    def status(self, state: payloads.State) -> None: ...

    def close(self) -> None: ...


class MqttSink:
    """One paho client per equipment, so each has its own last will (contract §2)."""

    def __init__(self, broker: BrokerUrl, topics: Topics, equipment: str) -> None:
        self.broker, self._lock, self.dropped = broker, threading.Lock(), 0
        self.state: payloads.State = "online"
        self.status_topic = topics.device_status(equipment)
        self.reading_topic = topics.reading(equipment)
        self.client = device_client(
            broker, f"meter-poller-{topics.site}-{equipment}", self.status_topic
        )
        self.client.max_queued_messages_set(1000)  # readings wait out a broker outage
        self.client.on_connect = self._on_connect
        self.client.connect_async(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def reading(self, payload: bytes) -> None:
        info = self.client.publish(self.reading_topic, payload, qos=1)
        if not held(info):  # sent, or queued until the broker is back: anything else is lost
            self.dropped += 1
            log.error("读数丢弃 / reading dropped (%s)", paho.error_string(info.rc))

    def status(self, state: payloads.State) -> None:
        with self._lock:
            self.state = state
            self.client.publish(self.status_topic, payloads.status(state), qos=1, retain=True)

    def close(self) -> None:
        """Say offline (a clean disconnect sends no will), flush (2 s at most), disconnect."""
        info = self.client.publish(
            self.status_topic, payloads.status("offline"), qos=1, retain=True
        )
        with contextlib.suppress(ValueError, RuntimeError):  # never connected: nothing to flush
            info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self,
        client: paho.Client,
        _u: object,
        _f: paho.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("代理拒绝连接 / broker %s refused: %s", self.broker, reason)
            return
        with self._lock:  # after an outage the will said offline: say what is true now
            client.publish(self.status_topic, payloads.status(self.state), qos=1, retain=True)


# -- the poller --------------------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MeterPoller:
    """Polls every meter on its schedule (one thread per connection) and publishes."""

    def __init__(
        self,
        config: PollerConfig,
        state_dir: Path,
        *,
        broker: str | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
        sink: Callable[[str], Sink] | None = None,
        source: Callable[[TcpMeter | RtuMeter], Source] = ModbusSource,
    ) -> None:
        self.config, self.clock, self.tz = config, clock, ZoneInfo(config.timezone)
        self.topics = Topics(config.root, config.site)
        self.broker = BrokerUrl.parse(broker or config.broker)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.seqs = SeqStore(state_dir / f"meter-poller-{config.site}.json")
        self._new_sink = sink or (lambda eq: MqttSink(self.broker, self.topics, eq))
        self._new_source = source
        self.sinks: dict[str, Sink] = {}
        self.failures = {m.equipment: 0 for m in config.meters}
        self.down: set[str] = set()
        self._skipping: dict[str, set[str]] = {}  # metrics already logged as skipped

    def start(self) -> None:
        """Open one MQTT connection per equipment (they connect in the background)."""
        for m in self.config.meters:
            self.sinks[m.equipment] = self._new_sink(m.equipment)

    def poll(self, meter: TcpMeter | RtuMeter, source: Source) -> dict[str, Value]:
        """One cycle of one meter: read, say offline/online on a change, publish the reading."""
        eq, sink = meter.equipment, self.sinks[meter.equipment]
        values, skipped, silent = read_meter(meter, source)
        for metric, why in skipped.items():  # said once, not every few seconds
            known = metric in self._skipping.get(eq, ())
            log.log(
                logging.DEBUG if known else logging.WARNING, "跳过 / %s.%s: %s", eq, metric, why
            )
        self._skipping[eq] = set(skipped)
        self.failures[eq] = 0 if silent is None else self.failures[eq] + 1
        if silent is not None:
            first = self.failures[eq] == 1
            log.log(logging.WARNING if first else logging.DEBUG, "无应答 / %s: %s", eq, silent)
        if silent is None and eq in self.down:
            self.down.discard(eq)
            sink.status("online")
            log.info("恢复 / %s answers again", eq)
        elif self.failures[eq] == self.config.offline_after:
            self.down.add(eq)
            sink.status("offline")
            log.warning("离线 / %s: %d polls unanswered", eq, self.failures[eq])
        if values:
            now = self.clock()
            seq = self.seqs.next(eq, now)
            sink.reading(payloads.reading(values, ts=now.astimezone(self.tz), seq=seq))
            log.debug("%s: seq=%d %s", eq, seq, values)
        return values

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set, then say offline and disconnect."""
        if not self.sinks:
            self.start()
        buses: dict[Connection, list[TcpMeter | RtuMeter]] = {}
        for m in self.config.meters:
            buses.setdefault(connection_of(m)[0], []).append(m)
        threads = [
            threading.Thread(target=self._bus, args=(ms, stop), name=f"modbus {key[1]}")
            for key, ms in buses.items()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for sink in self.sinks.values():
            sink.close()

    def _bus(self, meters: list[TcpMeter | RtuMeter], stop: threading.Event) -> None:
        """One connection's meters in turn (an RS-485 line carries one request at a time)."""
        source = self._new_source(meters[0])
        due = [time.monotonic()] * len(meters)
        try:
            while not stop.is_set():
                i = min(range(len(meters)), key=due.__getitem__)
                if stop.wait(max(0.0, due[i] - time.monotonic())):
                    break
                try:
                    self.poll(meters[i], source)
                except Exception:  # a bug must not stop the other meters: log it, poll on
                    log.exception("轮询出错 / polling %s failed", meters[i].equipment)
                due[i] = max(due[i] + meters[i].every_seconds, time.monotonic())
        finally:
            source.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m devices.meter_poller --config FILE [--broker URL] [--state DIR] [--site FILE]`."""
    ap = argparse.ArgumentParser(
        "python -m devices.meter_poller", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--config", type=Path, required=True, help="the meters file (YAML)")
    ap.add_argument("--broker", help="mqtt://host:port (default: $PATROL_BROKER, then the file)")
    ap.add_argument("--state", type=Path, default=Path("data"), help="where seq is kept")
    ap.add_argument("--site", type=Path, help="site file: refuse metrics it does not declare")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every poll")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pymodbus logs every failed request with a frame dump; ours says it once, in two languages
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    try:
        config = load_config(args.config)
        problems = check_against_site(config, load_site(args.site)) if args.site else []
        if problems:
            raise MeterConfigError(str(args.config), problems)
        poller = MeterPoller(
            config, args.state, broker=args.broker or os.environ.get("PATROL_BROKER")
        )
    except (MeterConfigError, ConfigError, ValueError, OSError) as exc:
        print(f"电表轮询无法启动 / meter poller cannot start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "轮询 %d 台电表 / polling %d meter(s) → %s",
        len(config.meters),
        len(config.meters),
        poller.broker,
    )
    poller.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
