"""Serving the API and the page from the gateway process: uvicorn in a thread of its own.

The socket is bound here, before the thread starts, so a taken port is an error the caller
reports (not a log line from another thread).
"""

from __future__ import annotations

import logging
import pathlib
import socket
import threading
from typing import TYPE_CHECKING

import uvicorn

from gateway.api.acklinks import load_link_key
from gateway.api.app import create_app
from gateway.api.desk import Desk
from gateway.notify.outbox import was_notified

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

DEFAULT_HTTP = "127.0.0.1:8080"


def parse_http(text: str) -> tuple[str, int] | None:
    """`HOST:PORT` (`[::1]:8080` for IPv6), or None for `off`; ValueError saying why not."""
    if text.strip().lower() == "off":
        return None
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"--http {text!r}: write HOST:PORT (127.0.0.1:8080) or off")
    return host.strip("[]"), int(port)


def gateway_desk(gateway: Gateway, data: pathlib.Path) -> Desk:
    """The desk of a running gateway: its store, site, clock, command channel and status."""
    tap = gateway.status_tap

    desk = Desk(
        store_path=gateway.store_path,
        site=lambda: gateway.site,
        clock=gateway.clock,
        submit=gateway.submit,
        status=lambda: (tap.version, tap.latest()),
        link_key=load_link_key(data),
        notified=lambda alert, person: was_notified(gateway.store_path, alert, person),
    )
    tap.on_publish = desk.hub.wake
    return desk


class HttpServer:
    """uvicorn serving one app on a bound socket, in a daemon thread."""

    def __init__(self, desk: Desk, host: str, port: int) -> None:
        self.desk = desk
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(desk),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="api-http", daemon=True)

    @property
    def url(self) -> str:
        """The page's address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except Exception:
            log.exception("HTTP 服务出错 / the HTTP server failed")

    def start(self) -> None:
        """Serve; returns once the server accepts connections (or after 10 s)."""
        self._thread.start()
        for _ in range(200):
            if self._server.started or not self._thread.is_alive():
                return
            threading.Event().wait(0.05)

    def stop(self) -> None:
        """End every event stream, stop serving, close the read side."""
        self.desk.hub.stop()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        self.desk.close()


def serve_gateway(gateway: Gateway, data: pathlib.Path, host: str, port: int) -> HttpServer:
    """Start the API and page for a gateway; OSError if the address cannot be bound."""
    server = HttpServer(gateway_desk(gateway, data), host, port)
    server.start()
    return server
