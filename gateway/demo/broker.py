"""Embedded MQTT broker so `patrol-gateway demo` needs nothing but `pip install`.

The broker is rumqttd, compiled into the `iotcore` wheel (the `[demo]` extra). It runs in a
child process of its own (rumqttd has no shutdown call; stopping the process is the shutdown),
bound to 127.0.0.1 only. Why this broker and not amqtt: docs/embedded-broker.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from types import TracebackType
from typing import IO, Any, Self

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError"]

LOOPBACK = "127.0.0.1"
# Above the gateway's own payload limit, so an over-size message reaches the gateway and is
# refused there with a reason (rumqttd would just drop the publisher's connection).
MAX_PAYLOAD_BYTES = 256 * 1024
# Unacknowledged QoS 1 messages in flight to one client; the rest wait in its queue. The demo's
# few messages a second need less than the 1000 a busy site's broker is given
# (deploy/mosquitto.conf).
MAX_INFLIGHT = 100


_CHILD = "from gateway.demo.broker import main; main()"


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be started or stopped."""


def _free_loopback_port() -> int:
    """Return a TCP port that is currently free on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_port_free(port: int) -> None:
    """Raise EmbeddedBrokerError (caused by the OSError) if `port` cannot be bound on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option as the broker's own listener (tokio sets it), so a port merely lingering
        # in TIME_WAIT after a previous demo run is not reported as busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            # Checked up front: the child process would only report it on its stderr.
            raise EmbeddedBrokerError(
                f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}"
                " (is another MQTT broker such as Mosquitto already running?)"
            ) from exc


def _mqtt_probe(host: str, port: int, timeout: float) -> None:
    """Do one MQTT 3.1.1 CONNECT/CONNACK/DISCONNECT round trip or raise OSError."""
    client_id = b"embedded-broker-probe"
    # Protocol "MQTT", level 4, clean session, keep-alive 30 s (rumqttd refuses 0).
    variable_header = b"\x00\x04MQTT\x04\x02\x00\x1e"
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
    """rumqttd (from `iotcore`) on 127.0.0.1, in a child process that this object owns."""

    def __init__(self, port: int = 0, *, start_timeout: float = 10.0) -> None:
        """Prepare a broker on `port` (0 picks a free port at start)."""
        if not 0 <= port <= 65535:
            raise ValueError(f"invalid TCP port: {port}")
        self._requested_port = port
        self._port = port
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

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
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (for tests and diagnostics)."""
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        """Start the broker and return once it accepts MQTT connections."""
        if self._process is not None:
            raise EmbeddedBrokerError("embedded broker already started")
        if importlib.util.find_spec("iotcore") is None:
            raise EmbeddedBrokerError(
                "内置代理需要可选依赖 [demo]：pip install 'patrol-gateway[demo]'。 / "
                "the embedded broker needs the [demo] extra: pip install 'patrol-gateway[demo]'"
            )
        if self._requested_port == 0:
            # rumqttd would take port 0 too, but would not tell which port it got.
            self._port = _free_loopback_port()
        else:
            _ensure_port_free(self._port)
        options = {"port": self._port}
        # Open for the child's whole life; closed by stop().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                # -P: the working directory is not put on sys.path, so no folder named
                # `gateway` or `iotcore` there can stand in for the real package.
                [sys.executable, "-P", "-c", _CHILD, json.dumps(options)],
                # The child exits by itself when this pipe closes: a demo killed with -9
                # leaves no broker behind.
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                # Its own session: Ctrl-C (SIGINT to the terminal's process group) must reach
                # only the demo, which then stops the broker last, after the gateway said
                # goodbye through it.
                start_new_session=True,
            )
        except OSError as exc:
            self._close_stderr()
            raise EmbeddedBrokerError(f"cannot start the embedded MQTT broker: {exc}") from exc
        self._wait_until_accepting(time.monotonic() + self._start_timeout)

    def _wait_until_accepting(self, deadline: float) -> None:
        """Block until an MQTT handshake succeeds, the child dies, or the deadline passes."""
        process = self._process
        assert process is not None
        last_error: OSError | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = self._child_output()
                self._abandon_start()
                raise EmbeddedBrokerError(
                    f"embedded MQTT broker on {self.url} exited with status "
                    f"{process.returncode} while starting: {output or '(no output)'}"
                )
            try:
                # A full MQTT handshake rather than a bare TCP connect: rumqttd logs a
                # connection that closes without CONNECT.
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

    def _child_output(self) -> str:
        """What the child wrote on stderr so far (the end of it)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace").strip()[-2000:]

    def _abandon_start(self) -> None:
        """Tear down after a failed start without masking the original error."""
        with contextlib.suppress(EmbeddedBrokerError):
            self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker process (SIGTERM, then SIGKILL) and wait; a no-op if not running."""
        process = self._process
        if process is None:
            return
        self._process = None
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
        finally:
            if process.stdin is not None:
                process.stdin.close()
            self._close_stderr()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

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


def _serve(options: dict[str, Any]) -> None:
    """Child process body: run rumqttd on loopback until SIGTERM or until the parent is gone."""
    # The parent decides when the broker stops: a stray SIGINT must not take it down first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def exit_when_parent_goes_away() -> None:
        try:
            sys.stdin.buffer.read()  # returns when the parent's end of the pipe closes
        finally:
            os._exit(0)

    threading.Thread(target=exit_when_parent_goes_away, daemon=True).start()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # rumqttd wraps its routing in error-level tracing spans: every packet would be logged.
    logging.getLogger("rumqttd").setLevel(logging.CRITICAL)
    from iotcore import Broker

    Broker(
        port=int(options["port"]),
        listen=LOOPBACK,  # never 0.0.0.0 (iotcore's default): the broker has no authentication
        max_payload_size=MAX_PAYLOAD_BYTES,
        max_inflight_count=MAX_INFLIGHT,
    ).run_forever()


def main() -> None:
    """Entry point of the child process: options as JSON in the first argument."""
    _serve(json.loads(sys.argv[1]))
