"""Meter poller: reads plant-room meters over Modbus RTU/TCP and publishes contract readings.

A small YAML file (`devices/meters.example.yaml`, docs/meter-poller.md) maps each meter's
registers to the metrics of one equipment of the site. Every meter has its own MQTT connection
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
import math
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException

from gateway.config import ConfigError, Site, load_site
from gateway.config.models import ID_PATTERN
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.topics import Topics
from gateway.timeutil import iso

log = logging.getLogger("devices.meter_poller")  # the same name under `python -m`

Value = float | int | bool
Kind = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
WORDS: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "bool": 1}
_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
Id = Annotated[str, Field(pattern=ID_PATTERN, description="[a-z0-9][a-z0-9_-]{0,63}")]

# -- configuration -----------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Register(_Strict):
    """One metric read from one register (or two, or one bit) of a meter."""

    metric: str = Field(pattern=r"^[A-Za-z0-9_]{1,64}$", description="a metric of the site file")
    address: int = Field(ge=0, le=65535, description="0-based address (manual's 40001 is 0)")
    kind: Kind = Field("holding", description="holding | input registers, coil | discrete bits")
    type: DataType | None = Field(None, description="default: bool for bits, uint16 otherwise")
    scale: float = Field(1.0, description="value = raw × scale + offset")
    offset: float = Field(0.0, description="added after scale")
    word_order: Literal["big", "little"] = Field("big", description="big: high word first")
    bit: int | None = Field(None, ge=0, le=15, description="type bool: this bit of the register")
    invert: bool = Field(False, description="type bool: report the opposite (NC contacts)")

    @property
    def bits(self) -> bool:
        """True for coils and discrete inputs (one bit each)."""
        return self.kind in ("coil", "discrete")

    @property
    def dtype(self) -> str:
        """The data type, defaults applied."""
        return "bool" if self.bits else self.type or "uint16"

    @model_validator(mode="after")
    def _coherent(self) -> Register:
        if self.bits and self.type not in (None, "bool"):
            raise ValueError(f"a {self.kind} is one bit: leave type out, or write bool")
        if self.dtype == "bool" and (self.scale != 1 or self.offset != 0):
            raise ValueError("scale and offset apply to numbers, not to type bool")
        if self.bit is not None and (self.bits or self.dtype != "bool"):
            raise ValueError("bit picks one bit of a holding/input register of type bool")
        if self.invert and self.dtype != "bool":
            raise ValueError("invert applies to type bool only")
        if self.scale == 0:
            raise ValueError("scale 0 would make every reading 0")
        if self.address + WORDS[self.dtype] > 65536:
            raise ValueError(f"{self.dtype} at {self.address} runs past address 65535")
        return self


class _Meter(_Strict):
    equipment: Id = Field(description="the equipment id of the site file")
    unit: int = Field(1, ge=0, le=247, description="Modbus unit (slave) id")
    every_seconds: float = Field(5, gt=0, description="poll interval")
    timeout_seconds: float = Field(1, gt=0, le=30, description="wait this long for an answer")
    retries: int = Field(1, ge=0, le=5, description="resend an unanswered request this often")
    registers: list[Register] = Field(min_length=1, description="what to read")

    @field_validator("registers")
    @classmethod
    def _unique(cls, registers: list[Register]) -> list[Register]:
        names = [r.metric for r in registers]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"metric {twice[0]!r} is mapped twice")
        return registers


class TcpMeter(_Meter):
    transport: Literal["tcp"] = Field(description="Modbus TCP (or a TCP gateway to RS-485)")
    host: str = Field(min_length=1, description="IP address or host name")
    port: int = Field(502, ge=1, le=65535, description="TCP port")


class RtuMeter(_Meter):
    transport: Literal["rtu"] = Field(description="Modbus RTU on a serial port")
    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(9600, gt=0, description="bits per second")
    parity: Literal["N", "E", "O"] = Field("N", description="none, even, odd")
    bytesize: Literal[7, 8] = Field(8, description="data bits")
    stopbits: Literal[1, 2] = Field(1, description="stop bits")


Meter = Annotated[TcpMeter | RtuMeter, Field(discriminator="transport")]


def _line(m: TcpMeter | RtuMeter) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(connection, settings): meters on one connection share one client, so one setting."""
    common = (m.timeout_seconds, m.retries)
    if isinstance(m, TcpMeter):
        return ("tcp", m.host, m.port), common
    return ("rtu", m.port), (*common, m.baudrate, m.parity, m.bytesize, m.stopbits)


class PollerConfig(_Strict):
    """The whole file."""

    site: Id = Field(description="site id, as in the site file and the topics")
    root: Id = Field("estate", description="topic root (the gateway's --root)")
    broker: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host:port or mqtts://")
    timezone: str = Field("Asia/Shanghai", description="zone of the ts offsets")
    offline_after: int = Field(3, ge=1, description="unanswered polls in a row before offline")
    meters: list[Meter] = Field(min_length=1, description="one entry per meter")

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        BrokerUrl.parse(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PollerConfig:
        seen: dict[str, int] = {}
        lines: dict[tuple[Any, ...], tuple[int, tuple[Any, ...]]] = {}
        for i, m in enumerate(self.meters):
            if m.equipment in seen:
                raise ValueError(
                    f"meters[{i}].equipment: {m.equipment} is meters[{seen[m.equipment]}]"
                )
            seen[m.equipment] = i
            key, settings = _line(m)
            first, want = lines.setdefault(key, (i, settings))
            if settings != want:
                raise ValueError(
                    f"meters[{i}]: shares {':'.join(map(str, key[1:]))} with meters[{first}]: "
                    "give them the same timeout_seconds, retries and line settings"
                )
        return self


class MeterConfigError(ValueError):
    """The poller's file is refused; `problems` lists `path: what is wrong` for every error."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        head = f"电表配置有 {len(problems)} 处错误 / {len(problems)} error(s) in {source}:\n"
        super().__init__(head + "\n".join(f"{source}: {p}" for p in problems))


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if part in ("tcp", "rtu") and i and isinstance(loc[i - 1], int):
            continue  # the union's tag that pydantic puts in the path
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_config(data: object, source: str = "<meters>") -> PollerConfig:
    """Validate parsed YAML; raise MeterConfigError with the key path of every problem."""
    try:
        return PollerConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            hint = {"extra_forbidden": "unknown key", "missing": "required key is missing"}
            msg = hint.get(e["type"], e["msg"])
            msg, where = msg.removeprefix("Value error, "), _where(e["loc"])
            problems.append(f"{where}: {msg}" if where else msg)
        raise MeterConfigError(source, problems) from exc


def load_config(path: str | Path) -> PollerConfig:
    """Read and validate the poller's YAML file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MeterConfigError(str(path), [f"(top): cannot read the file: {exc}"]) from exc
    return parse_config(data, str(path))


def check_against_site(config: PollerConfig, site: Site) -> list[str]:
    """Problems that would make the gateway refuse readings (unknown equipment or metric)."""
    if config.site != site.id:
        return [f"site: {config.site!r} is not the site file's {site.id!r}"]
    problems = []
    for i, m in enumerate(config.meters):
        equipment = site.equipment.get(m.equipment)
        if equipment is None:
            problems.append(f"meters[{i}].equipment: {m.equipment} is not in the site file")
            continue
        for j, reg in enumerate(m.registers):
            metric, where = equipment.metrics.get(reg.metric), f"meters[{i}].registers[{j}]"
            if metric is None:
                known = ", ".join(sorted(equipment.metrics)) or "none"
                problems.append(
                    f"{where}.metric: {reg.metric!r} is not a metric of {m.equipment} in the site"
                    f" file (it has: {known})"
                )
                continue
            boolean, number = (
                metric.expect is not None,
                metric.min is not None or metric.max is not None,
            )
            if (boolean and reg.dtype != "bool") or (number and reg.dtype == "bool"):
                want = "a boolean (expect)" if boolean else "a number (min/max)"
                problems.append(f"{where}: the site file says {reg.metric} is {want}")
    return problems


# -- decoding (pure) ---------------------------------------------------------------------------


def decode(reg: Register, raw: Sequence[int] | Sequence[bool]) -> Value:
    """The metric's value from what the meter returned; ValueError if it is not usable."""
    if len(raw) < (1 if reg.bits else WORDS[reg.dtype]):
        raise ValueError(f"{len(raw)} value(s) returned, {WORDS[reg.dtype]} needed")
    if reg.dtype == "bool":
        word = int(raw[0])
        state = bool(word >> reg.bit & 1) if reg.bit is not None else word != 0
        return state != reg.invert
    words = [int(w) for w in raw[: WORDS[reg.dtype]]]
    if reg.word_order == "little":
        words.reverse()
    data = b"".join(w.to_bytes(2, "big") for w in words)
    number: int | float = struct.unpack(">" + _STRUCT[reg.dtype], data)[0]
    if not math.isfinite(number):
        raise ValueError(f"{reg.dtype} is {number} (the meter reports no value)")
    if isinstance(number, int) and reg.scale == 1 and reg.offset == 0:
        return number
    return round(number * reg.scale + reg.offset, 6)  # 715 × 0.1 → 71.5, not 71.50000000000001


# -- Modbus ------------------------------------------------------------------------------------


class NoAnswer(Exception):
    """The meter did not answer: timeout, refused connection, missing serial port."""


class Refused(Exception):
    """The meter answered with a Modbus exception (e.g. 2: illegal data address)."""


class Source(Protocol):
    """Where registers come from: one Modbus connection (a TCP host or a serial line)."""

    def read(self, unit: int, reg: Register) -> Sequence[int] | Sequence[bool]: ...

    def close(self) -> None: ...


class ModbusSource:
    """A pymodbus synchronous client; it reconnects by itself on the next read."""

    def __init__(self, meter: TcpMeter | RtuMeter) -> None:
        self.client: ModbusTcpClient | ModbusSerialClient
        t, r = meter.timeout_seconds, meter.retries
        if isinstance(meter, TcpMeter):
            self.client = ModbusTcpClient(meter.host, port=meter.port, timeout=t, retries=r)
        else:
            self.client = ModbusSerialClient(
                meter.port,
                baudrate=meter.baudrate,
                parity=meter.parity,
                bytesize=meter.bytesize,
                stopbits=meter.stopbits,
                timeout=t,
                retries=r,
            )

    def read(self, unit: int, reg: Register) -> Sequence[int] | Sequence[bool]:
        c, count = self.client, 1 if reg.bits else WORDS[reg.dtype]
        call = {
            "holding": c.read_holding_registers,
            "input": c.read_input_registers,
            "coil": c.read_coils,
            "discrete": c.read_discrete_inputs,
        }[reg.kind]
        try:
            response = call(reg.address, count=count, device_id=unit)
        except ModbusException as exc:
            raise NoAnswer(str(exc)) from exc
        if response.isError():
            raise Refused(f"Modbus exception {getattr(response, 'exception_code', '?')}")
        return response.bits[:count] if reg.bits else response.registers

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated


def read_meter(
    meter: TcpMeter | RtuMeter, source: Source
) -> tuple[dict[str, Value], dict[str, str], str | None]:
    """(values, skipped metric → why, why the meter is silent or None if it answered at all)."""
    values: dict[str, Value] = {}
    skipped: dict[str, str] = {}
    for reg in meter.registers:
        try:
            values[reg.metric] = decode(reg, source.read(meter.unit, reg))
        except (Refused, ValueError) as exc:  # it answered, but not with a usable value
            skipped[reg.metric] = str(exc)
        except NoAnswer as exc:  # a silent meter: do not wait out a timeout per register
            return values, skipped, None if values or skipped else str(exc)
    return values, skipped, None


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

    def status(self, state: str) -> None: ...

    def close(self) -> None: ...


class MqttSink:
    """One paho client per equipment, so each has its own last will (contract §2)."""

    def __init__(self, broker: BrokerUrl, topics: Topics, equipment: str) -> None:
        self.broker, self._lock, self.state, self.dropped = broker, threading.Lock(), "online", 0
        self.status_topic = f"{topics.base}/device/{equipment}/status"
        self.reading_topic = f"{topics.base}/equipment/{equipment}/reading"
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"meter-poller-{topics.site}-{equipment}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, 30)  # paho's exponential backoff, 1 s to 30 s
        self.client.max_queued_messages_set(1000)  # readings wait out a broker outage
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.connect_async(broker.host, broker.port, keepalive=30)
        self.client.loop_start()

    def reading(self, payload: bytes) -> None:
        info = self.client.publish(self.reading_topic, payload, qos=1)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self.dropped += 1
            log.error("读数丢弃 / reading dropped (%s)", paho.error_string(info.rc))

    def status(self, state: str) -> None:
        with self._lock:
            self.state = state
            self.client.publish(self.status_topic, state.encode(), qos=1, retain=True)

    def close(self) -> None:
        """Say offline (a clean disconnect sends no will), flush (2 s at most), disconnect."""
        info = self.client.publish(self.status_topic, b"offline", qos=1, retain=True)
        with contextlib.suppress(ValueError, RuntimeError):  # never connected: nothing to flush
            info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("代理拒绝连接 / broker %s refused: %s", self.broker, reason)
            return
        with self._lock:  # after an outage the will said offline: say what is true now
            client.publish(self.status_topic, self.state.encode(), qos=1, retain=True)


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
            body = {"ts": iso(now, self.tz), "values": values, "seq": self.seqs.next(eq, now)}
            sink.reading(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
            log.debug("%s: %s", eq, body)
        return values

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set, then say offline and disconnect."""
        if not self.sinks:
            self.start()
        buses: dict[tuple[Any, ...], list[TcpMeter | RtuMeter]] = {}
        for m in self.config.meters:
            buses.setdefault(_line(m)[0], []).append(m)
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
