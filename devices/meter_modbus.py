"""Reading one meter over Modbus: the `Source` seam, its pymodbus adapter, and decoding.

`decode` is pure: the words or bits a meter returned → the metric's value, as the register's
entry in the meters file describes it (type, word order, scale, offset, bit, invert).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Protocol

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException

from devices.meter_config import WORDS, Register, RtuMeter, TcpMeter

Value = float | int | bool
_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}


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
