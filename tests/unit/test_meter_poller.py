"""The meter poller without a network: register decoding, its config file, one poll cycle."""

from __future__ import annotations

import datetime as dt
import json
import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from devices.meter_config import (
    MeterConfigError,
    PollerConfig,
    Register,
    RtuMeter,
    TcpMeter,
    check_against_site,
    load_config,
    parse_config,
)
from devices.meter_modbus import NoAnswer, Refused, decode
from devices.meter_poller import MeterPoller, main
from gateway.config import Site

EXAMPLE = Path(__file__).resolve().parents[2] / "devices" / "meters.example.yaml"
T0 = dt.datetime(2026, 11, 27, 1, 12, 0, tzinfo=dt.UTC)  # 09:12 in Shanghai


def _f32(x: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", x))
    return [high, low]


@pytest.mark.parametrize(
    ("register", "raw", "expected"),
    [
        ({"type": "uint16"}, [65535], 65535),
        ({"type": "int16"}, [65535], -1),
        ({"type": "int16", "scale": 0.1}, [0xFFF6], -1.0),  # −10 × 0.1
        ({"type": "int16", "scale": 0.1}, [715], 71.5),  # no 71.50000000000001
        ({}, [42], 42),  # uint16 by default
        ({"type": "uint16", "scale": 0.01, "offset": -40}, [5250], 12.5),
        ({"type": "int32"}, [0xFFFF, 0xFFFE], -2),  # high word first
        ({"type": "int32", "word_order": "little"}, [0xFFFE, 0xFFFF], -2),
        ({"type": "uint32"}, [0x0001, 0x0002], 65538),
        ({"type": "uint32", "word_order": "little"}, [0x0002, 0x0001], 65538),
        ({"type": "float32"}, _f32(63.25), 63.25),
        ({"type": "float32", "word_order": "little"}, _f32(63.25)[::-1], 63.25),
        ({"type": "float32"}, _f32(3.14), 3.14),  # float32 noise rounded away
        ({"type": "float32", "scale": 2, "offset": 1}, _f32(-1.5), -2.0),
        ({"type": "bool"}, [0], False),
        ({"type": "bool"}, [0x0100], True),  # any bit set
        ({"type": "bool", "bit": 8}, [0x0100], True),
        ({"type": "bool", "bit": 0}, [0x0100], False),
        ({"type": "bool", "invert": True}, [1], False),
        ({"kind": "coil"}, [True], True),
        ({"kind": "discrete"}, [False], False),
        ({"kind": "discrete", "invert": True}, [False], True),  # NC contact open: leak
    ],
)
def test_decode_table(register: dict[str, Any], raw: list[int], expected: object) -> None:
    """Each type, word order, scale and offset decodes as the meter's manual says."""
    value = decode(Register(metric="m", address=0, **register), raw)
    assert value == expected
    assert type(value) is type(expected)  # 42 stays an int, 71.5 is a float, True a bool


@pytest.mark.parametrize(
    ("register", "raw", "message"),
    [
        ({"type": "float32"}, _f32(float("nan")), "reports no value"),  # JSON has no NaN
        ({"type": "int32"}, [1], "2 needed"),
    ],
)
def test_decode_refuses_unusable(register: dict[str, Any], raw: list[int], message: str) -> None:
    """A NaN or a short answer is an error (the metric is skipped), never a bad payload."""
    with pytest.raises(ValueError, match=message):
        decode(Register(metric="m", address=0, **register), raw)


def _meter(**extra: Any) -> dict[str, Any]:
    meter = {"equipment": "tx-1", "transport": "tcp", "host": "127.0.0.1", "port": 5020}
    meter["registers"] = [{"metric": "winding_temp_c", "address": 0}]
    return {**meter, **extra}


@pytest.mark.parametrize(
    ("meters", "problem"),
    [
        ([_meter(hots="x")], "meters[0].hots: unknown key"),
        ([_meter(host="")], "meters[0].host: String should have at least 1"),
        ([{k: v for k, v in _meter().items() if k != "host"}], "meters[0].host: required key"),
        ([_meter(transport="udp")], "meters[0]: Input tag 'udp'"),
        ([_meter(registers=[])], "meters[0].registers: List should have at least 1"),
        ([_meter(registers=[{"metric": "x", "address": 70000}])], "meters[0].registers[0].address"),
        (
            [_meter(registers=[{"metric": "x", "address": 0, "kind": "coil", "type": "int16"}])],
            "meters[0].registers[0]: a coil is one bit",
        ),
        (
            [_meter(registers=[{"metric": "x", "address": 0, "type": "bool", "scale": 2}])],
            "meters[0].registers[0]: scale and offset apply",
        ),
        (
            [_meter(registers=[{"metric": "x", "address": 0, "bit": 3}])],
            "meters[0].registers[0]: bit picks one bit",
        ),
        (
            [_meter(registers=[{"metric": "x", "address": 0}, {"metric": "x", "address": 1}])],
            "meters[0].registers: metric 'x' is mapped twice",
        ),
        ([_meter(), _meter()], "meters[1].equipment: tx-1 is meters[0]"),
        ([_meter(equipment="Tx 1")], "meters[0].equipment: String should match pattern"),
        ([_meter(), _meter(equipment="tx-2", timeout_seconds=3)], "meters[1]: shares 127.0.0.1"),
    ],
)
def test_config_errors_name_the_key(meters: list[dict[str, Any]], problem: str) -> None:
    """A bad file is refused at start-up with the path to the key, not at the first poll."""
    with pytest.raises(MeterConfigError) as caught:
        parse_config({"site": "zcity", "meters": meters}, "meters.yaml")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
    assert "meters.yaml" in str(caught.value)


def test_config_top_level_errors() -> None:
    """Unknown top-level keys, a bad broker URL and an unknown zone are all listed at once."""
    with pytest.raises(MeterConfigError) as caught:
        parse_config(
            {"site": "zcity", "broker": "http://x", "timezone": "Mars/Base", "x": 1, "meters": []}
        )
    text = "\n".join(caught.value.problems)
    for path in ("broker:", "timezone:", "x: unknown key", "meters: List should have"):
        assert path in text


def test_example_file_matches_the_example_site(zcity: Site) -> None:
    """The shipped example is valid and every metric it maps is declared in zcity.yaml."""
    config = load_config(EXAMPLE)
    assert [m.equipment for m in config.meters] == ["tx-1", "chiller-1"]
    assert isinstance(config.meters[1], RtuMeter)
    assert check_against_site(config, zcity) == []


def test_site_cross_check(zcity: Site) -> None:
    """Metrics the gateway would refuse (unknown_metric) are caught before the first poll."""
    regs = [
        {"metric": "winding_temp", "address": 0},  # typo
        {"metric": "load_pct", "address": 1, "kind": "coil"},  # a number read as a bit
    ]
    config = parse_config(
        {"site": "zcity", "meters": [_meter(registers=regs), _meter(equipment="tx-9")]}
    )
    problems = check_against_site(config, zcity)
    assert problems[0].startswith("meters[0].registers[0].metric: 'winding_temp' is not a metric")
    assert "load_pct" in problems[0]  # says what the equipment does have
    assert (
        problems[1] == "meters[0].registers[1]: the site file says load_pct is a number (min/max)"
    )
    assert problems[2] == "meters[1].equipment: tx-9 is not in the site file"
    other = parse_config({"site": "other", "meters": [_meter()]})
    assert check_against_site(other, zcity) == ["site: 'other' is not the site file's 'zcity'"]


def test_main_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m devices.meter_poller` exits 1 with every problem, before touching a network."""
    bad = tmp_path / "meters.yaml"
    bad.write_text("site: zcity\nmeters:\n  - {equipment: tx-1, transport: tcp}\n")
    assert main(["--config", str(bad), "--state", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "meters[0].host: required key is missing" in err
    assert "meters[0].registers: required key is missing" in err
    site = Path(__file__).resolve().parents[2] / "gateway" / "sites" / "zcity.yaml"
    bad.write_text(EXAMPLE.read_text().replace("winding_temp_c", "winding_c"))
    assert main(["--config", str(bad), "--site", str(site), "--state", str(tmp_path)]) == 1
    assert "'winding_c' is not a metric of tx-1" in capsys.readouterr().err


# -- one poll cycle, with in-memory twins of the Modbus connection and of MQTT ------------------


class FakeSource:
    """Registers in a dict; a missing address is a Modbus exception; `silent` is no answer."""

    def __init__(self, registers: dict[tuple[str, int], list[int]]) -> None:
        self.registers = registers
        self.silent = False
        self.reads = 0

    def read(self, unit: int, reg: Register) -> Sequence[int]:
        self.reads += 1
        if self.silent:
            raise NoAnswer("timeout")
        if (reg.kind, reg.address) not in self.registers:
            raise Refused("Modbus exception 2")
        return self.registers[(reg.kind, reg.address)]

    def close(self) -> None:
        pass


class FakeSink:
    """What one equipment's MQTT client was asked to publish."""

    def __init__(self) -> None:
        self.readings: list[dict[str, Any]] = []
        self.statuses: list[str] = []

    def reading(self, payload: bytes) -> None:
        self.readings.append(json.loads(payload))

    def status(self, state: str) -> None:
        self.statuses.append(state)

    def close(self) -> None:
        pass


def _poller(tmp_path: Path, clock: list[dt.datetime]) -> tuple[MeterPoller, dict[str, FakeSink]]:
    regs = [
        {"metric": "winding_temp_c", "address": 0, "type": "int16", "scale": 0.1},
        {"metric": "load_pct", "address": 5, "kind": "input"},
        {"metric": "fan_on", "address": 0, "kind": "coil"},
    ]
    config = PollerConfig.model_validate(
        {"site": "zcity", "offline_after": 2, "meters": [_meter(registers=regs)]}
    )
    sinks: dict[str, FakeSink] = {}
    poller = MeterPoller(
        config, tmp_path, clock=lambda: clock[0], sink=lambda eq: sinks.setdefault(eq, FakeSink())
    )
    poller.start()
    return poller, sinks


def test_poll_publishes_a_contract_reading(tmp_path: Path) -> None:
    """ts in the site's zone with its offset, decoded values, seq increasing by one."""
    clock = [T0]
    poller, sinks = _poller(tmp_path, clock)
    meter = poller.config.meters[0]
    assert isinstance(meter, TcpMeter)
    source = FakeSource({("holding", 0): [715], ("input", 5): [63], ("coil", 0): [1]})
    poller.poll(meter, source)
    clock[0] = T0 + dt.timedelta(seconds=5)
    source.registers[("holding", 0)] = [0xFFF6]
    poller.poll(meter, source)
    first, second = sinks["tx-1"].readings
    assert first["ts"] == "2026-11-27T09:12:00+08:00"
    assert first["values"] == {"winding_temp_c": 71.5, "load_pct": 63, "fan_on": True}
    assert second["values"]["winding_temp_c"] == -1.0
    assert second["seq"] == first["seq"] + 1
    assert sinks["tx-1"].statuses == []  # `online` is said on connect, not per poll


def test_failed_register_skips_only_its_metric(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Modbus exception on one register: the other metrics still go out, the meter is up,
    and the log says so once, not every poll."""
    caplog.set_level(logging.DEBUG, logger="devices.meter_poller")
    poller, sinks = _poller(tmp_path, [T0])
    source = FakeSource({("holding", 0): [200], ("coil", 0): [0]})  # input 5 is missing
    for _ in range(3):
        poller.poll(poller.config.meters[0], source)
    assert [r["values"] for r in sinks["tx-1"].readings] == [
        {"winding_temp_c": 20.0, "fan_on": False}
    ] * 3
    assert sinks["tx-1"].statuses == []
    skips = [r.levelno for r in caplog.records if "tx-1.load_pct: Modbus exception 2" in r.message]
    assert skips == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_offline_after_n_silent_polls_then_online(tmp_path: Path) -> None:
    """offline once after `offline_after` unanswered polls (not before, not again); online back."""
    poller, sinks = _poller(tmp_path, [T0])
    meter = poller.config.meters[0]
    source = FakeSource({("holding", 0): [1], ("input", 5): [2], ("coil", 0): [0]})
    source.silent = True
    poller.poll(meter, source)
    assert sinks["tx-1"].statuses == []
    assert source.reads == 1  # a silent meter is not asked for every register in turn
    for _ in range(3):
        poller.poll(meter, source)
    assert sinks["tx-1"].statuses == ["offline"]
    assert sinks["tx-1"].readings == []
    source.silent = False
    poller.poll(meter, source)
    poller.poll(meter, source)
    assert sinks["tx-1"].statuses == ["offline", "online"]
    assert len(sinks["tx-1"].readings) == 2


def test_seq_survives_a_restart(tmp_path: Path) -> None:
    """A restarted poller goes on from its saved seq: the gateway would drop a reused one."""
    source = FakeSource({("holding", 0): [1], ("input", 5): [2], ("coil", 0): [0]})
    seqs = []
    for _ in range(2):
        poller, sinks = _poller(tmp_path, [T0])
        poller.poll(poller.config.meters[0], source)
        poller.poll(poller.config.meters[0], source)
        seqs += [r["seq"] for r in sinks["tx-1"].readings]
    assert seqs == list(range(seqs[0], seqs[0] + 4))
    assert seqs[0] == int(T0.timestamp() * 1000)  # no saved seq: start at the epoch millisecond
    saved = json.loads((tmp_path / "meter-poller-zcity.json").read_text())
    assert saved == {"tx-1": seqs[-1]}


def test_damaged_state_file_is_refused_at_start(tmp_path: Path) -> None:
    """A half-written state file stops the start with a way out, rather than resetting seq."""
    (tmp_path / "meter-poller-zcity.json").write_text('{"tx-1": 12')
    with pytest.raises(ValueError, match=r"is damaged .*move it away"):
        _poller(tmp_path, [T0])


def test_a_key_written_twice_is_refused(tmp_path: Path) -> None:
    """Plain YAML keeps the last of two equal keys silently; the meters file must not."""
    path = tmp_path / "meters.yaml"
    path.write_text("site: zcity\nsite: other\nmeters: []\n", encoding="utf-8")
    with pytest.raises(MeterConfigError, match="written twice"):
        load_config(path)
