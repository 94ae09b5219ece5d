"""Run the real gateway for a test: in this process, or as the `patrol-gateway run` command.

Both wait until the gateway says `online` on its retained `gateway/status`: it publishes that
right after it has sent its SUBSCRIBE, and Mosquitto handles one client's packets in order, so
once `online` is seen the subscriptions are in place and nothing a test publishes is missed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from gateway.app import Gateway
from gateway.config import load_site
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.topics import Topics
from tests.support.mqtt import MqttClient, Received

REPO_ROOT = Path(__file__).resolve().parents[2]
ZCITY = REPO_ROOT / "gateway" / "sites" / "zcity.yaml"
START_TIMEOUT = 15.0

T = TypeVar("T")


def unique_root() -> str:
    """A topic root of its own, so retained alerts and statuses of one test never reach another."""
    return f"t{uuid.uuid4().hex[:12]}"


def store_file(data: Path, site: str = "zcity") -> Path:
    """Where the gateway keeps its SQLite store under `--data`."""
    return data / f"{site}.sqlite"


def wait_until(probe: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str) -> T:
    """Call `probe` until `done(value)`; fail after `timeout` seconds with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last seen: {value!r}")
        time.sleep(0.05)


def count_rows(store: Path, table: str) -> int:
    """Rows in one table of a store another process may be writing (WAL lets a reader in).

    Not read-only: after a SIGKILL the first connection may have to recover the WAL.
    """
    if not store.exists():
        return 0
    db = sqlite3.connect(store, timeout=5)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def _is_live_online(message: Received) -> bool:
    # A retained `online` may be left over from an earlier run; a live one (retain flag clear,
    # MQTT 3.1.1 §3.3.1.3) comes from the gateway that has just connected.
    return message.payload == b"online" and not message.retain


@contextmanager
def running_gateway(
    broker_url: str,
    data: Path,
    *,
    root: str,
    client_id: str | None = None,
    site_file: Path = ZCITY,
    timeout: float = START_TIMEOUT,
) -> Iterator[Gateway]:
    """A `Gateway` in this process, started and online; stopped (drained, offline) on exit."""
    site = load_site(site_file)
    gateway = Gateway(
        site,
        BrokerUrl.parse(broker_url),
        data,
        root=root,
        client_id=client_id or f"patrol-gateway-{site.id}-{uuid.uuid4().hex[:8]}",
    )
    try:
        with MqttClient(broker_url, timeout=timeout) as watcher:
            watcher.connect()
            watcher.subscribe(gateway.topics.gateway_status)
            gateway.start()
            watcher.wait_for(_is_live_online, what=f"{gateway.topics.gateway_status} online")
        yield gateway
    finally:
        gateway.stop()


def gateway_command() -> list[str]:
    """The installed `patrol-gateway` beside this interpreter, else `python -m gateway`."""
    script = Path(sys.executable).with_name("patrol-gateway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


class GatewayProcess:
    """`patrol-gateway run` as a child process; `kill()` is a crash, `stop()` a SIGTERM."""

    def __init__(
        self,
        broker_url: str,
        data: Path,
        *,
        root: str,
        site_file: Path = ZCITY,
        timeout: float = START_TIMEOUT,
        extra_args: list[str] | None = None,
        program: list[str] | None = None,
    ) -> None:
        self.broker_url = broker_url
        # What runs as `patrol-gateway` (a test may wrap it, e.g. `python -c …` that patches).
        self.program = program
        self.extra_args = list(extra_args or [])
        self.data = data
        self.root = root
        self.site_file = site_file
        self.timeout = timeout
        self.topics = Topics(root, load_site(site_file).id)
        self.store_path = store_file(data, self.topics.site)
        self.log_path = data.parent / f"{data.name}-gateway.log"
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Launch the command and wait until it is online, or fail with its log."""
        if self.running:
            raise RuntimeError("the gateway is already running")
        command = [
            *(self.program or gateway_command()),
            "run",
            "--config",
            str(self.site_file),
            "--broker",
            self.broker_url,
            "--data",
            str(self.data),
            "--root",
            self.root,
            *self.extra_args,
        ]
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        with MqttClient(self.broker_url, timeout=self.timeout) as watcher:
            watcher.connect()
            watcher.subscribe(self.topics.gateway_status)
            self.starts += 1
            with self.log_path.open("ab") as log:
                log.write(f"--- start {self.starts}: {' '.join(command)}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=environment,
                )
            try:
                watcher.wait_for(
                    _is_live_online,
                    what=f"{self.topics.gateway_status} online",
                    give_up=self._exited,
                )
            except AssertionError as exc:
                self.kill()
                raise AssertionError(f"{exc}\ngateway log:\n{self.log_tail()}") from None

    def _exited(self) -> str | None:
        proc = self._proc
        if proc is None or proc.poll() is None:
            return None
        return f"the gateway exited with status {proc.returncode} while waiting"

    def kill(self) -> None:
        """SIGKILL, like a crash or a power cut of the process: nothing gets to clean up."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.kill()
        proc.wait(self.timeout)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status (0 is a clean stop)."""
        proc = self._proc
        if proc is None:
            return 0
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(
                f"the gateway did not stop within {self.timeout:g} s:\n{self.log_tail()}"
            ) from None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; its exit status (fails after `timeout`)."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("the gateway is not running")
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the gateway did not exit within {timeout:g} s:\n{self.log_tail()}"
            ) from None
        self._proc = None
        return code

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._proc is None:
            raise RuntimeError("the gateway is not running")
        return self._proc.pid

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the gateway's output, for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
