"""The bounded queue between the MQTT network thread and the worker.

Bounded twice: by message count and by bytes, so neither many small messages nor a few large
ones can grow the process without limit (issue 8 item 3: 300 QoS 0 messages of 1 MB took the
gateway to 350 MB). The link decides what a full inbox means for a message (a QoS 1 message
waits, a QoS 0 one is dropped and counted); the inbox only says whether it took it.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from gateway.events import Message

DEFAULT_MAX_MESSAGES = 10_000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
# What a queued message costs besides its topic and payload (the object, its fields, the deque).
MESSAGE_OVERHEAD_BYTES = 200


def message_bytes(msg: Message) -> int:
    """What one message counts against the byte bound."""
    return len(msg.payload) + len(msg.topic) + MESSAGE_OVERHEAD_BYTES


class Inbox:
    """A thread-safe FIFO of `Message`s bounded by count and by bytes; consumers block, never poll.

    A message larger than the whole byte bound is still taken when the inbox is empty, so no
    message can wait for ever (the link cuts over-size payloads long before that).
    """

    def __init__(
        self, max_messages: int = DEFAULT_MAX_MESSAGES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("an inbox holds at least one message and one byte")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items: deque[Message] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def put(self, msg: Message, timeout: float) -> bool:
        """Queue `msg`, waiting up to `timeout` seconds for room; False if there was none."""
        size = message_bytes(msg)
        deadline = time.monotonic() + timeout
        with self._not_full:
            while not self._has_room(size):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            self._append(msg, size)
            return True

    def put_nowait(self, msg: Message) -> bool:
        """Queue `msg` if there is room now; False (nothing queued) otherwise."""
        size = message_bytes(msg)
        with self._lock:
            if not self._has_room(size):
                return False
            self._append(msg, size)
            return True

    def get_batch(self, max_n: int, timeout: float) -> list[Message]:
        """Up to `max_n` messages in arrival order; waits up to `timeout` s for the first one."""
        deadline = time.monotonic() + timeout
        with self._not_empty:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._not_empty.wait(remaining)
            batch: list[Message] = []
            while self._items and len(batch) < max_n:
                msg = self._items.popleft()
                self._bytes -= message_bytes(msg)
                batch.append(msg)
            self._not_full.notify_all()
            return batch

    def qsize(self) -> int:
        """How many messages are queued."""
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        """How many bytes the queued messages count against the bound."""
        with self._lock:
            return self._bytes

    def empty(self) -> bool:
        """True when nothing is queued."""
        with self._lock:
            return not self._items

    def _has_room(self, size: int) -> bool:
        if not self._items:
            return True
        return len(self._items) < self.max_messages and self._bytes + size <= self.max_bytes

    def _append(self, msg: Message, size: int) -> None:
        self._items.append(msg)
        self._bytes += size
        self._not_empty.notify()
