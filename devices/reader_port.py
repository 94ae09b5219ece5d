"""The reader's serial port: kept open while it can be, its bytes cut into lines.

A USB reader can be unplugged and plugged back, a serial server can restart: `read_port` reopens
the port after 1 s, 2 s, 4 s … up to 30 s, and back to 1 s once it is open again. A half line
read before a failure is dropped.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

import serial

# The bridge's logger: every line `python -m devices.reader_bridge` logs carries one name.
log = logging.getLogger("devices.reader_bridge")

READ_TIMEOUT = 0.2  # seconds a serial read waits: how fast the reader thread notices a stop
MAX_LINE_BYTES = 1024  # a longer run without CR/LF is noise (wrong baud rate, binary protocol)
_EOL = re.compile(rb"[\r\n]")


def read_port(
    port: str,
    baud: int,
    stop: threading.Event,
    on_line: Callable[[bytes], None],
    on_open: Callable[[bool], None],
) -> None:
    """Until `stop` is set: hand every line read from `port` to `on_line` (without its CR/LF).

    `port` is a device path or any pyserial URL; `on_open(True)` is called when it opens,
    `on_open(False)` when it is closed again.
    """
    backoff = Backoff()
    while not stop.is_set():
        try:
            link = serial.serial_for_url(port, baudrate=baud, timeout=READ_TIMEOUT)
        except (serial.SerialException, OSError, ValueError) as error:
            delay = backoff.next()
            log.warning(
                "无法打开串口 / cannot open serial port %s: %s; retrying in %g s",
                port,
                error,
                delay,
            )
            stop.wait(delay)
            continue
        log.info("串口已打开 / serial port open: %s at %d baud", port, baud)
        backoff.reset()
        on_open(True)
        try:
            _read_lines(link, stop, on_line)
        except (serial.SerialException, OSError) as error:
            delay = backoff.next()
            log.warning("串口断开 / serial port %s lost: %s; reopening in %g s", port, error, delay)
            stop.wait(delay)
        finally:
            link.close()
            on_open(False)


def _read_lines(
    link: serial.SerialBase, stop: threading.Event, on_line: Callable[[bytes], None]
) -> None:
    splitter = LineSplitter()
    while not stop.is_set():
        data = link.read(max(1, link.in_waiting))
        for raw in splitter.feed(data):
            on_line(raw)


class Backoff:
    """1 s, 2 s, 4 s … capped; `reset()` after a success."""

    def __init__(self, first: float = 1.0, cap: float = 30.0) -> None:
        self.first, self.cap, self._next = first, cap, first

    def next(self) -> float:
        """The delay before the next attempt, doubling each time up to the cap."""
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        """Start again from the first delay."""
        self._next = self.first


class LineSplitter:
    """Bytes from the port → complete lines (ended by CR, LF or CRLF); empty lines vanish."""

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = b""
        self._overflowed = False

    def feed(self, data: bytes) -> list[bytes]:
        """The lines completed by `data`; an over-long line is dropped with a warning."""
        parts = _EOL.split(self._buffer + data)
        self._buffer = parts.pop()
        lines = []
        for part in parts:
            if self._overflowed:  # the tail of a line already dropped
                self._overflowed = False
            elif part:
                lines.append(part)
        if len(self._buffer) > self.max_bytes:
            log.warning(
                "丢弃超过 %d 字节仍无换行的数据（波特率错误？）/ dropped %d bytes without an end of"
                " line (wrong baud rate?)",
                self.max_bytes,
                len(self._buffer),
            )
            self._buffer, self._overflowed = b"", True
        return lines
