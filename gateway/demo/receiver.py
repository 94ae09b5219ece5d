"""The demo's notification receiver: a local HTTP server that takes apprise `json://` posts and
prints each notification, so `patrol-gateway demo` shows what would go to DingTalk or e-mail."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.config.site import Site


class DemoReceiver:
    """Listens on 127.0.0.1 (a free port); `say(person, title, body)` for each message."""

    def __init__(self, say: Callable[[str, str, str], None]) -> None:
        self.received = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    body = {}
                person = self.path.rstrip("/").rsplit("/", 1)[-1]
                receiver.received += 1
                say(person, str(body.get("title", "")), str(body.get("message", "")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the demo prints the notification itself."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-notify-receiver", daemon=True
        )

    def url(self, person: str) -> str:
        """The apprise URL that reaches this receiver for one person."""
        return f"json://127.0.0.1:{self.port}/notify/{person}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def to_receiver(site: Site, receiver: DemoReceiver) -> Site:
    """The demo site with every person's notify URL pointing at the local receiver."""
    people = [p.model_copy(update={"notify": [receiver.url(p.id)]}) for p in site.config.people]
    return Site(site.config.model_copy(update={"people": people}))
