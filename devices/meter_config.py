"""The meter poller's YAML file: its typed model, loading it, and checking it against a site.

Validated whole at start-up: `MeterConfigError` lists every problem with its key path
(`meters[1].registers[0].type: …`). The keys: docs/meter-poller.md; a commented example:
devices/meters.example.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.config import Site, load_yaml
from gateway.config.models import ID_PATTERN, TimeZoneName
from gateway.ingest.mqtt import BrokerUrl

Kind = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
WORDS: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "bool": 1}
Id = Annotated[str, Field(pattern=ID_PATTERN, description="[a-z0-9][a-z0-9_-]{0,63}")]


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
Connection = tuple[str | float, ...]  # a connection's key, or its settings: plain values


def connection_of(m: TcpMeter | RtuMeter) -> tuple[Connection, Connection]:
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
    timezone: TimeZoneName = Field("Asia/Shanghai", description="zone of the ts offsets")
    offline_after: int = Field(3, ge=1, description="unanswered polls in a row before offline")
    meters: list[Meter] = Field(min_length=1, description="one entry per meter")

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        BrokerUrl.parse(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PollerConfig:
        seen: dict[str, int] = {}
        lines: dict[Connection, tuple[int, Connection]] = {}
        for i, m in enumerate(self.meters):
            if m.equipment in seen:
                raise ValueError(
                    f"meters[{i}].equipment: {m.equipment} is meters[{seen[m.equipment]}]"
                )
            seen[m.equipment] = i
            key, settings = connection_of(m)
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
        data = load_yaml(Path(path).read_text(encoding="utf-8"))
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
