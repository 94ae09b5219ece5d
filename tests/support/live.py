"""Helpers for tests against a running `patrol-gateway run`: the command line, the broker's
retained messages, the store as another process sees it."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from gateway.cli import app
from gateway.store.sqlite import SqliteStore
from tests.support.gateway import gateway_command
from tests.support.mqtt import MqttClient


def cli(*args: str) -> Result:
    """`patrol-gateway ARGS…` in this process; `.exit_code`, `.stdout`, `.stderr`."""
    return CliRunner().invoke(app, list(args))


def cli_process(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`patrol-gateway ARGS…` as its own process, like a user (or compose) runs it."""
    return subprocess.run(
        [*gateway_command(), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def retained(broker_url: str, topic: str) -> list[tuple[str, bytes]]:
    """What a client subscribing now gets as retained on `topic` (a filter may match many)."""
    with MqttClient(broker_url, f"late-{uuid.uuid4().hex[:8]}") as late:
        late.connect()
        late.subscribe(topic)
        late.barrier()
        return [(m.topic, m.payload) for m in late.received if m.retain]


def scan(credential: str, seq: int, method: str = "nfc") -> bytes:
    """A scan payload (contract §3) without `ts`: its time is when the gateway receives it."""
    return json.dumps({"credential": credential, "method": method, "seq": seq}).encode()


def transitions(store_path: Path, alert_id: str) -> list[dict[str, Any]]:
    """One alert's stored transitions, oldest first, read beside the running gateway."""
    store = SqliteStore(store_path, readonly=True)
    try:
        return [t for t in store.transitions() if t["alert_id"] == alert_id]
    finally:
        store.close()


def wait_healthy(data: Path, timeout: float = 15.0) -> None:
    """Until the gateway on `--data` has said in its store that it runs and is connected.

    `online` on MQTT comes first; a command sent before the first heartbeat is only queued
    (the command line cannot tell a starting gateway from a stopped one).
    """
    from gateway.cli_ops import gateway_running
    from gateway.store.sqlite import find_store
    from tests.support.gateway import wait_until

    def probe() -> tuple[bool, str]:
        try:
            store = SqliteStore(find_store(data), readonly=True)
        except FileNotFoundError as exc:
            return False, str(exc)
        try:
            return gateway_running(store.reads.heartbeat())
        finally:
            store.close()

    wait_until(probe, lambda r: r[0], timeout, f"a heartbeat in the store under {data}")
