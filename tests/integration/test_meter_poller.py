"""The meter poller against a real pymodbus server (TCP on loopback, RTU over a socat pty pair)
and the session's Mosquitto: what a meter holds is what the gateway receives, in contract form.

Each test has its own topic root, state folder and Modbus port, and tight timings (polls every
0.2 s, a 0.5 s answer timeout), so the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices.meter_config import PollerConfig
from devices.meter_poller import MeterPoller
from tests.support.gateway import unique_root
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient, Received

pytestmark = pytest.mark.integration

T = TypeVar("T")
HOLDING, INPUT, COIL, DISCRETE = 3, 4, 5, 2  # function codes the datastore is written with
FAST = {"every_seconds": 0.2, "timeout_seconds": 0.5, "retries": 0}


class ModbusSim:
    """A pymodbus server for one unit id on its own asyncio loop in a background thread.

    The datastore is pymodbus 3.16's SimDevice (ModbusDeviceContext is deprecated there):
    coils, discrete inputs, holding and input registers 0–19 each; any other address answers
    Modbus exception 2 (illegal data address).
    """

    def __init__(self, unit: int) -> None:
        self.unit = unit
        self.server: ModbusBaseServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="modbus-sim")
        self._thread.start()

    def _device(self) -> SimDevice:
        bits = [SimData(0, count=20, values=False, datatype=DataType.BITS)]
        regs = [SimData(0, count=20, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(self.unit, simdata=(bits, list(bits), regs, list(regs)))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=5)

    def start_tcp(self, port: int) -> None:
        async def start() -> ModbusBaseServer:
            server = ModbusTcpServer(self._device(), address=("127.0.0.1", port))
            await server.serve_forever(background=True)
            return server

        self.server = self._run(start())

    def start_rtu(self, tty: str) -> None:
        async def start() -> ModbusBaseServer:
            server = ModbusSerialServer(self._device(), port=tty, baudrate=9600, timeout=0.3)
            await server.serve_forever(background=True)
            return server

        self.server = self._run(start())

    def set(self, function_code: int, address: int, values: list[int] | list[bool]) -> None:
        assert self.server is not None
        self._run(self.server.async_setValues(self.unit, function_code, address, values))

    def stop(self) -> None:
        if self.server is not None:
            self._run(self.server.shutdown())  # type: ignore[no-untyped-call]
            self.server = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@pytest.fixture
def sim_tcp() -> Iterator[tuple[ModbusSim, int]]:
    with socket.socket() as s:  # a free loopback port for the server
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sim = ModbusSim(unit=1)
    sim.start_tcp(port)
    yield sim, port
    sim.close()


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals: what a USB–RS-485 adapter and its cable look like."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail(
            "socat 未安装：请运行 `make mosquitto` / socat is missing: run `make mosquitto`"
        )
    a, b = tmp_path / "meter-tty", tmp_path / "poller-tty"
    proc = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        assert proc.poll() is None and time.monotonic() < deadline, "socat made no pty pair"
        time.sleep(0.01)
    yield str(a), str(b)
    proc.terminate()
    proc.wait(timeout=5)


class Running:
    """A poller on its own thread, and a client that sees everything under the site's topics."""

    def __init__(self, mosquitto: Mosquitto, state: Path, meter: dict[str, Any]) -> None:
        self.root = unique_root()
        self.base = f"{self.root}/zcity"
        config = {"site": "zcity", "root": self.root, "offline_after": 2, "meters": [meter]}
        self.poller = MeterPoller(PollerConfig.model_validate(config), state, broker=mosquitto.url)
        self.probe = MqttClient(mosquitto.url, timeout=10)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poller.run, args=(self.stop,), name="poller")

    def __enter__(self) -> Running:
        self.probe.connect()
        self.probe.subscribe(f"{self.base}/#")
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_poller()
        self.probe.close()

    def stop_poller(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
            assert not self.thread.is_alive(), "the poller did not stop within 10 s"

    def readings(self, equipment: str, count: int = 1, **want: object) -> list[dict[str, Any]]:
        """Wait for `count` readings whose values include `want`; all of them, parsed."""
        topic = f"{self.base}/equipment/{equipment}/reading"

        def match(m: Received) -> bool:
            return m.topic == topic and want.items() <= m.json()["values"].items()

        return [m.json() for m in self.probe.wait_for(match, count=count, what=f"{want}")]

    def statuses(self, equipment: str, state: str, count: int = 1) -> list[Received]:
        topic = f"{self.base}/device/{equipment}/status"
        return self.probe.wait_for(
            lambda m: m.topic == topic and m.text() == state, count=count, what=state
        )


def _f32_little(x: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", x))
    return [low, high]


def test_tcp_meter_readings_changes_and_outage(
    mosquitto: Mosquitto, sim_tcp: tuple[ModbusSim, int], tmp_path: Path
) -> None:
    """Register values arrive scaled and typed with a rising seq; a change shows in the next
    reading; a meter that stops answering is said offline, and online again when it is back."""
    sim, port = sim_tcp
    sim.set(HOLDING, 0, [715])  # 71.5 °C in tenths
    sim.set(INPUT, 2, _f32_little(63.25))
    sim.set(COIL, 0, [True])
    registers = [
        {"metric": "winding_temp_c", "address": 0, "type": "int16", "scale": 0.1},
        {"metric": "load_pct", "address": 2, "kind": "input", "type": "float32"}
        | {"word_order": "little"},
        {"metric": "fan_on", "address": 0, "kind": "coil"},
        {"metric": "oil_temp_c", "address": 500},  # not in the meter: exception 2, skipped
    ]
    meter = {"equipment": "tx-1", "transport": "tcp", "host": "127.0.0.1", "port": port}
    started = time.monotonic()
    with Running(mosquitto, tmp_path, {**meter, **FAST, "registers": registers}) as run:
        run.statuses("tx-1", "online")
        first = run.readings("tx-1", count=3)
        assert first[0]["values"] == {"winding_temp_c": 71.5, "load_pct": 63.25, "fan_on": True}
        seqs = [r["seq"] for r in first]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        ts = dt.datetime.fromisoformat(first[0]["ts"])
        assert ts.utcoffset() == dt.timedelta(hours=8)  # Asia/Shanghai, with its offset
        assert abs((ts - dt.datetime.now(dt.UTC)).total_seconds()) < 30

        sim.set(HOLDING, 0, [0xFFF6])  # −1.0 °C: a negative int16
        sim.set(COIL, 0, [False])
        changed = run.readings("tx-1", winding_temp_c=-1.0, fan_on=False)[0]
        assert changed["seq"] > seqs[-1]

        sim.stop()
        run.statuses("tx-1", "offline")
        sim.start_tcp(port)
        sim.set(HOLDING, 0, [300])
        run.statuses("tx-1", "online", count=2)
        back = run.readings("tx-1", winding_temp_c=30.0)[0]
        assert back["seq"] > changed["seq"]
        run.stop_poller()
        run.statuses("tx-1", "offline", count=2)  # a clean stop says offline (no will sent)
    assert time.monotonic() - started < 20


def test_rtu_meter_over_a_pty_pair(
    mosquitto: Mosquitto, pty_pair: tuple[str, str], tmp_path: Path
) -> None:
    """Modbus RTU framing on a real serial line: unit id, scale + offset, an inverted contact,
    and a register change; seq goes on from the state file after a restart of the poller."""
    meter_tty, poller_tty = pty_pair
    sim = ModbusSim(unit=2)
    try:
        sim.start_rtu(meter_tty)
        sim.set(INPUT, 10, [5250])  # (5250 × 0.01) − 40 = 12.5 °C
        sim.set(DISCRETE, 0, [True])  # normally closed contact: closed means dry
        registers = [
            {"metric": "supply_temp_c", "address": 10, "kind": "input", "scale": 0.01}
            | {"offset": -40},
            {"metric": "leak", "address": 0, "kind": "discrete", "invert": True},
        ]
        meter = {"equipment": "chiller-1", "transport": "rtu", "port": poller_tty, "unit": 2}
        meter |= {**FAST, "registers": registers}
        with Running(mosquitto, tmp_path, meter) as run:
            first = run.readings("chiller-1", count=2, supply_temp_c=12.5, leak=False)
            sim.set(DISCRETE, 0, [False])  # the contact opens: water
            leak = run.readings("chiller-1", leak=True)[0]
            assert first[0]["seq"] < first[1]["seq"] < leak["seq"]
            sim.stop()  # the meter's power fails: the line goes quiet
            run.statuses("chiller-1", "offline")
            sim.start_rtu(meter_tty)
            sim.set(INPUT, 10, [5300])
            run.statuses("chiller-1", "online", count=2)
            run.readings("chiller-1", supply_temp_c=13.0)
        with Running(mosquitto, tmp_path, meter) as again:
            assert again.readings("chiller-1")[0]["seq"] > leak["seq"]
        saved = json.loads((tmp_path / "meter-poller-zcity.json").read_text())
        assert saved["chiller-1"] > leak["seq"]
    finally:
        sim.close()
