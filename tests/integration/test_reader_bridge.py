"""The reader bridge against a real Mosquitto and a real virtual serial line (a socat pty pair).

The test writes card lines into one end of the pair, as a USB reader would; the bridge reads the
other end. A persistent-session QoS 1 subscriber stands in for the gateway. Duplicates by
`(reader, seq)` are allowed (QoS 1 is at least once; the gateway stores a seq once), but every
line must come out as exactly one distinct `seq`, in the order the lines were written.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from devices.reader_bridge import BridgeOptions, ReaderBridge
from gateway.ingest.mqtt import BrokerUrl
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient, Received

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class PtyPair:
    """`socat` joining two ptys, reachable through two fixed symlinks; restartable."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("socat") is None:
            pytest.fail("socat 未安装 / socat is not installed: run `make mosquitto`")
        self.bridge_end = folder / "reader"  # the bridge opens this, as /dev/ttyUSB0
        self.card_end = folder / "cards"  # the test writes card lines here
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["socat", "-d", "-d"]
            + [f"pty,raw,echo=0,link={end}" for end in (self.bridge_end, self.card_end)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (self.bridge_end.exists() and self.card_end.exists()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("socat did not create the pty pair in 5 s")
            time.sleep(0.01)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(5)
        for end in (self.bridge_end, self.card_end):  # socat removes them; a kill would not
            end.unlink(missing_ok=True)

    def writer(self) -> serial.Serial:
        return serial.Serial(str(self.card_end), 9600, timeout=1, write_timeout=5)


@pytest.fixture
def ptys(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path)
    pair.start()
    yield pair
    pair.stop()


def card_line(i: int) -> tuple[bytes, str]:
    """The i-th line in one of the supported formats, and the credential it must become."""
    uid = f"04{i:010X}AB"
    match i % 5:
        case 0:
            return f"{uid}\r\n".encode(), uid
        case 1:
            return (":".join(uid[k : k + 2] for k in range(0, 14, 2)).lower() + "\n").encode(), uid
        case 2:
            return f"UID:{uid}\r\n".encode(), uid
        case 3:
            return f"\x02uid={uid}\x03\r".encode(), uid
        case _:
            return f"QR:巡更-{i}\r\n".encode(), f"巡更-{i}"


def fresh_ids() -> tuple[str, str]:
    """A new (site, reader): the reader id is in the client id, and the session broker is shared."""
    tag = uuid.uuid4().hex[:8]
    return f"s{tag}", f"fd-{tag}"


def new_bridge(ptys: PtyPair, url: str, ids: tuple[str, str], state: Path) -> ReaderBridge:
    site, reader = ids
    options = BridgeOptions(
        port=str(ptys.bridge_end),
        reader=reader,
        site=site,
        broker=BrokerUrl.parse(url),
        state=state,
        root="bridgetest",
    )
    return ReaderBridge(options)


class ScanLog:
    """The scans a subscriber received, deduplicated by seq as the gateway does."""

    def __init__(self, client: MqttClient, topic: str) -> None:
        self.client, self.topic = client, topic
        self._seen: set[int] = set()

    def _first(self, message: Received) -> bool:
        if message.topic != self.topic:
            return False
        seq = message.json()["seq"]
        if seq in self._seen:
            return False
        self._seen.add(seq)
        return True

    def wait(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """The first `count` distinct scans (by seq), in arrival order."""
        self._seen.clear()
        found = self.client.wait_for(self._first, count=count, timeout=timeout, what="scan")
        return [m.json() for m in found[:count]]

    def all(self) -> list[Received]:
        return [m for m in self.client.received if m.topic == self.topic]


def status_is(client: MqttClient, topic: str, state: str, timeout: float = 10) -> None:
    """Wait until the newest message on `topic` says `state`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = [m for m in client.received if m.topic == topic]
        if last and last[-1].text() == state:
            return
        time.sleep(0.02)
    raise AssertionError(f"{topic} never said {state}: {[m.text() for m in last]}")


def write_lines(port: serial.Serial, lines: list[bytes]) -> None:
    for start in range(0, len(lines), 25):  # in bursts, like several readers' worth of cards
        port.write(b"".join(lines[start : start + 25]))
        port.flush()
        time.sleep(0.005)


def assert_in_order(scans: list[dict[str, Any]], credentials: list[str]) -> None:
    assert [s["credential"] for s in scans] == credentials
    seqs = [s["seq"] for s in scans]
    assert all(a < b for a, b in itertools.pairwise(seqs)), "seq must increase"


def test_500_scans_arrive_once_in_order_while_the_broker_goes_away(
    ptys: PtyPair, fresh_mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Done-when of the issue: 500 lines, the broker stopped for part of the run."""
    site, reader = fresh_ids()
    scan_topic = f"bridgetest/{site}/reader/{reader}/scan"
    status_topic = f"bridgetest/{site}/device/{reader}/status"
    lines, credentials = zip(*(card_line(i) for i in range(500)), strict=True)
    noise = [b"\x00\x00\r\n", b" \x07\r\n", b"UID:zz\r\n"]  # ignored, logged, no seq used
    with MqttClient(fresh_mosquitto.url, f"gw-{site}", clean_session=False, timeout=10) as sub:
        sub.connect()
        sub.subscribe(scan_topic, status_topic)
        scans = ScanLog(sub, scan_topic)
        bridge = new_bridge(ptys, fresh_mosquitto.url, (site, reader), tmp_path / "state")
        with bridge, ptys.writer() as cards:
            status_is(sub, status_topic, "online")
            write_lines(cards, [*noise, *lines[:200]])
            scans.wait(100, timeout=15)  # traffic is flowing when the broker stops

            fresh_mosquitto.stop()
            write_lines(cards, list(lines[200:400]))
            deadline = time.monotonic() + 15
            while bridge.counts["scans"] < 400 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert bridge.counts["scans"] == 400, bridge.counts
            assert bridge.queued >= 200, "what was read while the broker was down is on disk"

            fresh_mosquitto.start()
            write_lines(cards, list(lines[400:]))
            got = scans.wait(500, timeout=40)
            deadline = time.monotonic() + 5
            while bridge.queued and time.monotonic() < deadline:
                time.sleep(0.02)
            assert bridge.queued == 0
        status_is(sub, status_topic, "offline")  # a clean stop says so (retained)

    assert_in_order(got, list(credentials))
    assert {s["method"] for s in got[4::5]} == {"qr"}
    assert bridge.counts["ignored"] == 3 and bridge.counts["refused"] == 0
    # Any redelivery is a byte-identical copy of a scan that already arrived.
    first = {s["seq"]: s for s in got}
    received = scans.all()
    assert all(m.json() == first[m.json()["seq"]] for m in received)
    print(f"{len(received) - 500} duplicate deliveries after the broker restart")


def test_the_bridge_survives_the_serial_port_going_away(
    ptys: PtyPair, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Unplugged reader: status offline, port reopened with backoff, scanning resumes."""
    site, reader = fresh_ids()
    scan_topic = f"bridgetest/{site}/reader/{reader}/scan"
    status_topic = f"bridgetest/{site}/device/{reader}/status"
    answers: list[dict[str, Any]] = []
    with MqttClient(mosquitto.url, timeout=10) as sub:
        sub.connect()
        sub.subscribe(scan_topic, status_topic)
        scans = ScanLog(sub, scan_topic)
        bridge = new_bridge(ptys, mosquitto.url, (site, reader), tmp_path / "state")
        bridge.on_answer = answers.append
        with bridge:
            status_is(sub, status_topic, "online")
            with ptys.writer() as cards:
                write_lines(cards, [card_line(i)[0] for i in range(5)])
                scans.wait(5, timeout=10)

            ptys.stop()  # the USB cable is pulled
            status_is(sub, status_topic, "offline")
            ptys.start()
            status_is(sub, status_topic, "online")
            with ptys.writer() as cards:
                write_lines(cards, [card_line(i)[0] for i in range(5, 10)])
                got = scans.wait(10, timeout=10)

            # The gateway's answer reaches the bridge (to beep green or red).
            answer = {"seq": got[-1]["seq"], "ok": True, "message": "前台 已签到", "flags": []}
            sub.publish(f"bridgetest/{site}/reader/{reader}/ack", json.dumps(answer))
            deadline = time.monotonic() + 5
            while not answers and time.monotonic() < deadline:
                time.sleep(0.02)
    assert_in_order(got, [card_line(i)[1] for i in range(10)])
    assert answers == [answer]


def test_scans_queued_on_disk_survive_a_bridge_restart(
    ptys: PtyPair, fresh_mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Broker down, bridge stopped with scans queued: the next bridge sends them, seq goes on."""
    site, reader = fresh_ids()
    scan_topic = f"bridgetest/{site}/reader/{reader}/scan"
    state = tmp_path / "state"
    gateway_id = f"gw-{site}"
    with MqttClient(fresh_mosquitto.url, gateway_id, clean_session=False) as sub:
        sub.connect()
        sub.subscribe(scan_topic)
    # The broker keeps the subscriber's session (and what arrives for it) across its restart.
    fresh_mosquitto.stop()
    with (
        new_bridge(ptys, fresh_mosquitto.url, (site, reader), state) as bridge,
        ptys.writer() as cards,
    ):
        write_lines(cards, [card_line(i)[0] for i in range(20)])
        deadline = time.monotonic() + 10
        while bridge.queued < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert bridge.queued == 20
    fresh_mosquitto.start()
    with (
        new_bridge(ptys, fresh_mosquitto.url, (site, reader), state) as bridge,
        ptys.writer() as cards,
    ):
        write_lines(cards, [card_line(i)[0] for i in range(20, 25)])
        with MqttClient(fresh_mosquitto.url, gateway_id, clean_session=False, timeout=10) as sub:
            sub.connect()
            got = ScanLog(sub, scan_topic).wait(25, timeout=15)
    assert_in_order(got, [card_line(i)[1] for i in range(25)])


def test_command_line_runs_until_sigterm_and_sets_its_last_will(
    ptys: PtyPair, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """`python -m devices.reader_bridge`: scans flow; SIGTERM → offline, exit 0; SIGKILL → will."""
    site, reader = fresh_ids()
    status_topic = f"bridgetest/{site}/device/{reader}/status"
    command = [
        sys.executable,
        "-m",
        "devices.reader_bridge",
        *("--port", str(ptys.bridge_end), "--reader", reader, "--site", site),
        *("--broker", mosquitto.url, "--root", "bridgetest", "--state", str(tmp_path / "st")),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with MqttClient(mosquitto.url, timeout=10) as sub:
        sub.connect()
        sub.subscribe(f"bridgetest/{site}/#")
        for how, code in ((signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)):
            proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
            try:
                status_is(sub, status_topic, "online", timeout=15)
                with ptys.writer() as cards:
                    cards.write(b"QR:ZW-7F3K\r\n")
                sub.wait_for(lambda m: b"ZW-7F3K" in m.payload, count=1 if code == 0 else 2)
                proc.send_signal(how)
                _, err = proc.communicate(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
            assert proc.returncode == code, err.decode()
            status_is(sub, status_topic, "offline")
    seqs = [m.json()["seq"] for m in sub.received if m.topic.endswith("/scan")]
    assert len(set(seqs)) == 2 and seqs[0] < seqs[-1], "the second run continues the seq"
