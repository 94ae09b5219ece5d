"""A worker thread that dies takes the process down with a non-zero status (issue 7 §3), so a
supervisor restarts it; before, the daemon thread died silently and the process stayed up,
wedged: connected, acknowledging nothing, answering nothing."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.gateway import GatewayProcess, unique_root
from tests.support.live import scan
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient

# `patrol-gateway` whose worker raises MemoryError (a BaseException, not an Exception: the
# worker's isolation of a bad message does not catch it) on a batch with a scan from `gr-1`.
DYING = """
import sys
import gateway.worker as worker
real = worker.Worker.step
def step(self, batch, submitted=()):
    if any(m.topic.endswith("/reader/gr-1/scan") for m in batch):
        raise MemoryError("injected by the test")
    return real(self, batch, submitted)
worker.Worker.step = step
from gateway.cli import main
sys.argv[0] = "patrol-gateway"
main()
"""


def test_a_dead_worker_makes_the_process_exit_70(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The process must exit with EX_SOFTWARE (70) within seconds and say in its log that the
    worker died and why; it must not stay up with a dead worker."""
    gateway = GatewayProcess(
        mosquitto.url,
        tmp_path / "data",
        root=unique_root(),
        program=[sys.executable, "-c", DYING],
    )
    with gateway:
        with MqttClient(mosquitto.url, timeout=10) as device:
            device.connect()
            device.subscribe(gateway.topics.ack("fd-1"))
            device.publish(gateway.topics.scan("fd-1"), scan("04A224B1C23380", 1))
            device.wait_for(lambda m: m.json()["seq"] == 1, what="an answer: the worker runs")
            device.publish(gateway.topics.scan("gr-1"), scan("04A224B1C23380", 2))
        assert gateway.wait(15) == 70
    log = gateway.log_tail(200)
    assert "the worker thread died" in log
    assert "MemoryError: injected by the test" in log  # with its traceback
    assert "exiting so a supervisor restarts us" in log
