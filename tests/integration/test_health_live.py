"""`patrol-gateway health --data DIR` (issue 8 item 6): what compose's health check runs. It
must fail, saying why, when the gateway is stopped or cannot reach its broker."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.support.gateway import ZCITY, GatewayProcess, gateway_command, unique_root, wait_until
from tests.support.live import cli_process
from tests.support.mosquitto import Mosquitto


def test_health_is_ok_while_running_and_fails_once_stopped(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Exit 0 while the gateway runs and is connected; non-zero, "not running", once stopped."""
    data = tmp_path / "data"
    with GatewayProcess(mosquitto.url, data, root=unique_root()) as gateway:
        healthy = wait_until(
            lambda: cli_process("health", "--data", str(data)),
            lambda r: r.returncode == 0,
            15,
            "a healthy gateway",
        )
        assert "running" in healthy.stdout
        assert gateway.stop() == 0
    stopped = cli_process("health", "--data", str(data))
    assert stopped.returncode != 0
    assert "not running" in stopped.stderr


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_health_fails_while_the_broker_cannot_be_reached(tmp_path: Path) -> None:
    """A gateway that runs but never connects (a wrong port) is not healthy: compose must
    see it, with the reason."""
    data = tmp_path / "data"
    log = (tmp_path / "gateway.log").open("wb")
    command = [
        *gateway_command(),
        "run",
        "--config",
        str(ZCITY),
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--data",
        str(data),
        "--root",
        unique_root(),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        # The heartbeat (written by the running worker) exists: the gateway runs.
        result = wait_until(
            lambda: cli_process("health", "--data", str(data)),
            lambda r: "not connected" in r.stderr or proc.poll() is not None,
            20,
            "health to say the broker is not reached",
        )
        assert proc.poll() is None, "the gateway must keep running and retrying"
        assert result.returncode != 0
        assert "not connected to the broker" in result.stderr
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
