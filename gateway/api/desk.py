"""What the API stands on: the store's read side, the command channel, the clock and the site.

`Desk` is built once per process (by `gateway.api.server` for a running gateway, by the tests
around a worker of their own) and handed to `create_app`. Nothing here imports FastAPI.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.api.live import Hub
from gateway.api.queries import ReadSide
from gateway.commands import Command
from gateway.config.site import Site
from gateway.worker import Submitted

COMMAND_TIMEOUT_SECONDS = 10.0


def never_notified(alert: str, person: str) -> bool:
    """Until notifications are recorded (§9): nobody counts as notified of an alert."""
    return False


@dataclass
class Desk:
    """The API's view of one site's gateway."""

    store_path: pathlib.Path
    site: Callable[[], Site]  # the current site file (a reload changes it)
    clock: Callable[[], dt.datetime]  # the worker's clock (simulated in the demo)
    submit: Callable[[Command], Submitted]  # the single writer's command channel
    status: Callable[[], tuple[int, dict[str, Any] | None]]  # (version, patrol status)
    link_key: bytes | None = None  # signs acknowledge links (§9); None: links refused
    notified: Callable[[str, str], bool] = never_notified  # (alert, person) → was told of it
    session_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    command_timeout: float = COMMAND_TIMEOUT_SECONDS
    reads: ReadSide = field(init=False)
    hub: Hub = field(init=False)

    def __post_init__(self) -> None:
        self.reads = ReadSide(self.store_path)
        # The hub has read-only connections of its own: it runs in its own thread.
        self.hub = Hub(ReadSide(self.store_path), self.site, self.status, self.clock)

    def close(self) -> None:
        """Stop the live board and close the read side."""
        self.hub.stop()
        self.hub.reads.close()
        self.reads.close()
