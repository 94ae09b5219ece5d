"""`patrol-gateway demo` as `make run` starts it, for tests of what its page shows."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.gateway import gateway_command


@dataclass(frozen=True)
class DemoPage:
    """The page's address and the duty manager's token, as the demo printed them."""

    base: str
    token: str
    printed: str  # the demo's output up to its login line

    def get(self, path: str) -> Any:
        """GET `/api/v1{path}` as the printed token's person; the JSON answer."""
        request = urllib.request.Request(
            f"{self.base}/api/v1{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())


@contextmanager
def demo_page(data: pathlib.Path, speed: int, seconds: int = 8) -> Iterator[DemoPage]:
    """Run the demo (embedded broker, the page on a free port) until it has printed its login
    link; after the block, wait for it to end and require exit status 0."""
    options = ["--port", "0", "--http", "127.0.0.1:0", "--speed", str(speed)]
    demo = subprocess.Popen(
        [*gateway_command(), "demo", *options, "--seconds", str(seconds), "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
    )
    printed = ""
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            printed += line
            if "logs in as" in line:
                break
        found = re.search(r"(http://127\.0\.0\.1:\d+)/#token=(\S+)", printed)
        assert found, printed
        yield DemoPage(found[1], found[2], printed)
    finally:
        rest, _ = demo.communicate(timeout=60)  # drains and closes the pipe
    assert demo.returncode == 0, printed + rest
