"""Embedded MQTT broker (amqtt) so `patrol-gateway demo` needs nothing installed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError"]

LOOPBACK = "127.0.0.1"

# amqtt logs every connection/state change at INFO, and its state machine library
# (`transitions`) does the same; the demo console must stay readable.
_NOISY_LOGGERS = ("amqtt", "transitions")


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be started or stopped."""


# amqtt ships no type information, so its base class is `Any` to mypy.
class _OpenAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Accept every client without flagging its session as anonymous."""

    # amqtt's own AnonymousAuthPlugin marks every session `is_anonymous`, and amqtt then
    # neither queues QoS 1 messages for offline sessions nor keeps them (the session
    # monitor deletes them within a second), which breaks clean_session=False clients.
    async def authenticate(self, *, session: Session) -> bool:
        """Allow the connection."""
        return True


def _free_loopback_port() -> int:
    """Return a TCP port that is currently free on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_port_free(port: int) -> None:
    """Raise EmbeddedBrokerError if `port` cannot be bound on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option as amqtt's listener, so a port merely lingering in TIME_WAIT after a
        # previous demo run is not reported as busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            # Checked up front because amqtt reports this as a logged traceback.
            raise EmbeddedBrokerError(
                f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}"
                " (is another MQTT broker such as Mosquitto already running?)"
            ) from exc


def _quiet_library_loggers() -> None:
    """Lower amqtt's chatter to WARNING unless someone configured it explicitly."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        # An explicit level means a developer asked for amqtt's debug output; keep it.
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _mqtt_probe(host: str, port: int, timeout: float) -> None:
    """Do one MQTT 3.1.1 CONNECT/CONNACK/DISCONNECT round trip or raise OSError."""
    client_id = b"embedded-broker-probe"
    # Protocol "MQTT", level 4, clean session, keep-alive 0.
    variable_header = b"\x00\x04MQTT\x04\x02\x00\x00"
    payload = struct.pack("!H", len(client_id)) + client_id
    body = variable_header + payload
    connect = bytes([0x10, len(body)]) + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(connect)
        connack = b""
        while len(connack) < 4:
            chunk = sock.recv(4 - len(connack))
            if not chunk:
                raise ConnectionError("broker closed the probe connection")
            connack += chunk
        if connack != b"\x20\x02\x00\x00":
            raise ConnectionError(f"unexpected CONNACK {connack!r}")
        sock.sendall(b"\xe0\x00")


class EmbeddedBroker:
    """An amqtt broker on 127.0.0.1, run in a background thread with its own event loop."""

    def __init__(self, port: int = 0, *, start_timeout: float = 10.0) -> None:
        """Prepare a broker on `port` (0 picks a free port at start)."""
        if not 0 <= port <= 65535:
            raise ValueError(f"invalid TCP port: {port}")
        self._requested_port = port
        self._port = port
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None

    @property
    def host(self) -> str:
        """Address the broker listens on (always loopback)."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """TCP port the broker listens on (the chosen one once started)."""
        return self._port

    @property
    def url(self) -> str:
        """Broker URL, e.g. ``mqtt://127.0.0.1:1883``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _config(self) -> dict[str, Any]:
        """Build the amqtt configuration dict."""
        return {
            # Loopback only: the demo broker has no authentication, so it must not be
            # reachable from the network (amqtt's default bind is 0.0.0.0:1883).
            "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{self._port}"}},
            # Listing plugins replaces amqtt's defaults, which include the $SYS plugin
            # (emits a DeprecationWarning about psutil, fatal under -W error) and two
            # packet/event loggers we do not want.
            "plugins": {f"{__name__}.{_OpenAuthPlugin.__qualname__}": {}},
        }

    def start(self) -> None:
        """Start the broker and return once it accepts MQTT connections."""
        if self._thread is not None:
            raise EmbeddedBrokerError("embedded broker already started")
        _quiet_library_loggers()
        if self._requested_port == 0:
            # amqtt would accept port 0 too, but then the real port is only reachable through
            # its private server objects; choosing it here keeps `url` known up front.
            self._port = _free_loopback_port()
        else:
            _ensure_port_free(self._port)
        # Created here rather than in the thread so stop() can always reach the loop,
        # even if it is called before the thread got going.
        self._loop = asyncio.new_event_loop()
        self._stop_requested = asyncio.Event()
        self._started.clear()
        self._startup_error = None
        # Daemon so a demo killed with Ctrl-C before stop() can still exit.
        self._thread = threading.Thread(
            target=self._run, name=f"embedded-mqtt-broker-{self._port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        if not self._started.wait(self._start_timeout):
            self._abandon_start()
            raise EmbeddedBrokerError(
                f"embedded MQTT broker did not start on {self.url} within {self._start_timeout}s"
            )
        if self._startup_error is not None:
            error = self._startup_error
            self._abandon_start()
            raise EmbeddedBrokerError(
                f"embedded MQTT broker failed to start on {self.url}: {error}"
            ) from error
        self._wait_until_accepting(deadline)

    def _wait_until_accepting(self, deadline: float) -> None:
        """Block until an MQTT handshake succeeds or the deadline passes."""
        last_error: OSError | None = None
        while time.monotonic() < deadline:
            try:
                # A full MQTT handshake rather than a bare TCP connect: amqtt logs an
                # error for every connection that closes without sending CONNECT.
                _mqtt_probe(self.host, self._port, timeout=max(0.1, deadline - time.monotonic()))
            except OSError as exc:
                last_error = exc
                time.sleep(0.02)
            else:
                return
        self._abandon_start()
        raise EmbeddedBrokerError(
            f"embedded MQTT broker on {self.url} did not accept connections within "
            f"{self._start_timeout}s: {last_error}"
        )

    def _abandon_start(self) -> None:
        """Tear down after a failed start without masking the original error."""
        with contextlib.suppress(EmbeddedBrokerError):
            self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down and join its thread; a no-op if not running."""
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None or loop is None or stop_requested is None:
            return
        # The loop is already closed if the broker thread ended by itself (startup failure).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop_requested.set)
        thread.join(timeout)
        if thread.is_alive():
            raise EmbeddedBrokerError(f"embedded MQTT broker did not stop within {timeout}s")
        self._thread = None
        self._loop = None
        self._stop_requested = None

    def _run(self) -> None:
        """Thread body: drive the broker on this thread's own event loop."""
        loop = self._loop
        assert loop is not None
        try:
            # Runner.close() cancels leftover tasks, shuts down async generators and the
            # default executor and closes the loop, so nothing leaks into ResourceWarnings.
            # The factory hands it our pre-made loop and keeps it from calling
            # set_event_loop() on a thread that does not own it.
            with asyncio.Runner(loop_factory=lambda: loop) as runner:
                runner.run(self._serve())
        except BaseException as exc:
            if self._started.is_set():
                logging.getLogger(__name__).exception("embedded MQTT broker crashed")
            else:
                self._startup_error = exc
                self._started.set()

    async def _serve(self) -> None:
        """Run amqtt until `stop()` is requested."""
        assert self._stop_requested is not None
        broker = Broker(self._config())
        await broker.start()
        self._started.set()
        try:
            await self._stop_requested.wait()
        finally:
            await broker.shutdown()

    def __enter__(self) -> Self:
        """Start the broker."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()
