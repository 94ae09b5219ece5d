"""The inbox between the MQTT network thread and the worker (gateway/ingest/inbox.py)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from gateway.events import Message
from gateway.ingest.inbox import MESSAGE_OVERHEAD_BYTES, Inbox, message_bytes

NOW = dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)


def msg(n: int, size: int = 10) -> Message:
    return Message(f"t/{n}", b"x" * size, NOW, 1, False, n)


def test_bounded_by_count() -> None:
    """Prevents an unbounded queue: the count bound refuses the message past it."""
    inbox = Inbox(max_messages=3)
    assert all(inbox.put_nowait(msg(i)) for i in range(3))
    assert not inbox.put_nowait(msg(3))
    assert inbox.qsize() == 3


def test_bounded_by_bytes_whatever_the_count() -> None:
    """Prevents a few large payloads growing the process (issue 8 item 3): bytes bound it too."""
    one = message_bytes(msg(0, 1000))
    inbox = Inbox(max_messages=10_000, max_bytes=3 * one)
    assert all(inbox.put_nowait(msg(i, 1000)) for i in range(3))
    assert not inbox.put_nowait(msg(3, 1000))
    assert inbox.nbytes == 3 * one
    assert inbox.put_nowait(msg(4, 0)) is False  # even a small one: the bytes are spent
    inbox.get_batch(1, 0)
    assert inbox.nbytes == 2 * one
    assert inbox.put_nowait(msg(5, 1000))


def test_a_message_larger_than_the_byte_bound_is_taken_when_empty() -> None:
    """Prevents a message that can never fit from blocking its QoS 1 sender for ever."""
    inbox = Inbox(max_messages=5, max_bytes=MESSAGE_OVERHEAD_BYTES)
    assert inbox.put_nowait(msg(0, 5000))
    assert not inbox.put_nowait(msg(1, 0))


def test_get_batch_keeps_order_and_limit() -> None:
    """Prevents reordering or oversized batches: FIFO, at most max_n each time."""
    inbox = Inbox()
    for i in range(7):
        inbox.put_nowait(msg(i))
    assert [m.mid for m in inbox.get_batch(5, 0)] == [0, 1, 2, 3, 4]
    assert [m.mid for m in inbox.get_batch(5, 0)] == [5, 6]
    assert inbox.empty() and inbox.nbytes == 0


def test_get_batch_times_out_empty() -> None:
    """Prevents a worker that never wakes for its deadlines: an empty wait ends on time."""
    inbox = Inbox()
    started = time.monotonic()
    assert inbox.get_batch(10, 0.1) == []
    assert 0.09 <= time.monotonic() - started < 2


def test_get_batch_wakes_when_a_message_arrives() -> None:
    """Prevents latency: a waiting worker is woken by put, not by its timeout."""
    inbox = Inbox()
    threading.Timer(0.05, inbox.put_nowait, args=(msg(1),)).start()
    started = time.monotonic()
    assert [m.mid for m in inbox.get_batch(10, 5)] == [1]
    assert time.monotonic() - started < 2


def test_put_waits_for_room_then_succeeds() -> None:
    """Prevents a lost QoS 1 message: put blocks until the worker makes room."""
    inbox = Inbox(max_messages=1)
    inbox.put_nowait(msg(0))
    threading.Timer(0.05, inbox.get_batch, args=(1, 0)).start()
    assert inbox.put(msg(1), timeout=5)
    assert [m.mid for m in inbox.get_batch(1, 0)] == [1]


def test_put_gives_up_after_its_timeout() -> None:
    """Prevents a network thread stuck for ever in one wait: it gets control back to retry."""
    inbox = Inbox(max_messages=1)
    inbox.put_nowait(msg(0))
    started = time.monotonic()
    assert not inbox.put(msg(1), timeout=0.1)
    assert 0.09 <= time.monotonic() - started < 2
    assert inbox.qsize() == 1


def test_concurrent_producers_and_a_consumer_lose_nothing() -> None:
    """Prevents lost or doubled messages under contention (thread safety)."""
    inbox = Inbox(max_messages=50, max_bytes=50 * message_bytes(msg(0)))
    got: list[int] = []

    def produce(base: int) -> None:
        for i in range(500):
            assert inbox.put(msg(base + i), timeout=10)

    producers = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(4)]
    for p in producers:
        p.start()
    while len(got) < 2000:
        got += [m.mid for m in inbox.get_batch(64, 5)]
    for p in producers:
        p.join()
    assert sorted(got) == sorted(k * 1000 + i for k in range(4) for i in range(500))
    assert inbox.empty() and inbox.nbytes == 0


def test_refuses_a_zero_bound() -> None:
    """Prevents an inbox that can hold nothing (every QoS 1 message would wait for ever)."""
    with pytest.raises(ValueError):
        Inbox(max_messages=0)
