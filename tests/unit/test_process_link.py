"""The MQTT link's process boundary (gateway/ingest/process.py) without a broker.

Each test names the failure it prevents: frames torn or reordered on the socket, a dead child
not noticed, a child's connection errors or logs lost, a child left running after `stop()`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time

import pytest

from gateway.ingest.inbox import Inbox
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.process import Channel, ProcessLink
from gateway.ingest.topics import Topics


def test_frames_arrive_whole_and_in_order_even_larger_than_the_socket_buffer() -> None:
    """Prevents torn frames: a batch of large payloads does not fit one send nor one read."""
    ours, theirs = socket.socketpair()
    sender, receiver = Channel(ours), Channel(theirs)
    frames = [
        [("estate/s1/reader/fd-1/scan", bytes([n % 256]) * 60_000, 1, False, n, 0)]
        for n in range(40)  # 2.4 MB in all, far beyond the socket's buffer
    ]
    frames.append([("small", b"", 0, True, 0, 0)])
    thread = threading.Thread(target=lambda: [sender.send(f) for f in frames])
    thread.start()
    got = [receiver.recv() for _ in frames]
    thread.join()
    assert got == frames
    sender.close()
    receiver.close()


def test_a_closed_or_dead_peer_is_eof_even_in_the_middle_of_a_frame() -> None:
    """Prevents a child that never notices its parent died (it must exit, for the last will),
    and a half-written frame read as a short one."""
    ours, theirs = socket.socketpair()
    receiver = Channel(theirs)
    ours.sendall(b"\x00\x00\x01\x00" + b"x" * 10)  # says 256 bytes, sends 10
    ours.close()
    with pytest.raises(EOFError):
        receiver.recv()
    with pytest.raises(EOFError):
        receiver.recv()
    receiver.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_childs_connection_errors_reach_health_and_the_log_and_stop_ends_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Prevents a link process whose failures nobody sees (health, the log), and one that
    outlives `stop()`."""
    caplog.set_level(logging.INFO)
    link = ProcessLink(
        BrokerUrl.parse(f"mqtt://127.0.0.1:{_free_port()}"),  # nothing listens there
        "process-unit",
        Topics("unit", "s1"),
        Inbox(10),
        lambda: dt.datetime.now(dt.UTC),
    )
    link.start()
    try:
        deadline = time.monotonic() + 10
        while link.health().attempts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        health = link.health()
        assert (health.connected, health.attempts) == (False, 1), health
        assert health.last_error is not None and "refused" in health.last_error.lower()
        pid = link.pid
        assert pid is not None and pid != os.getpid()
    finally:
        link.stop()
    assert link.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped
    assert any("首次连接代理失败" in r.getMessage() for r in caplog.records), caplog.text
    assert link.counters["link_restarts"] == 0


def test_topics_checks_ids_with_the_site_files_pattern() -> None:
    """Prevents the topic parser and the site file disagreeing on what an id is (the parser
    keeps its own copy of the pattern so the link process need not import the config)."""
    from gateway.config.models import ID_PATTERN
    from gateway.ingest import topics

    assert topics.ID_RE.pattern == ID_PATTERN


def test_the_link_process_starts_without_the_configuration_or_the_store() -> None:
    """Prevents a slow start of every gateway: the child imports paho and the link, not
    pydantic, YAML, SQLite or the rules."""
    import subprocess
    import sys

    code = (
        "import sys; from gateway.ingest.process import child_main; "
        "print(' '.join(m for m in ('pydantic', 'yaml', 'sqlite3', 'gateway.config', "
        "'gateway.rules', 'gateway.store') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
