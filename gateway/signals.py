"""Stop requests from SIGINT and SIGTERM that a second signal can never deadlock.

A Python signal handler runs on the main thread between two bytecodes, possibly in the middle
of code that holds a lock. A handler that calls `threading.Event.set()` takes the event's
lock; a second Ctrl-C arriving while the first handler is inside `set()` then waits for a lock
its own thread holds, for ever (`timeout -s INT` signals twice and does exactly that). So the
handler here takes no lock: it stores the signal number in a plain attribute and writes one byte
to a non-blocking pipe (a system call, no Python lock). `wait()` sleeps in `select()` on that
pipe, so a stop wakes the waiter at once without polling.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from types import FrameType, TracebackType
from typing import Self

__all__ = ["StopSignal"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Set once by SIGINT/SIGTERM (or `request()`), never cleared; safe to signal repeatedly.

    `install()` replaces the handlers (main thread only; elsewhere it does nothing, and only
    `request()` sets it), `restore()` puts the previous ones back. Any thread may call
    `is_set()`, `wait()` and `request()`.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self._signals = signals
        self._signum: int | None = None  # the first stop signal received
        self._count = 0  # signals received, a second Ctrl-C included
        self._requested = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous: dict[signal.Signals, signal.Handlers | int | object] = {}

    # -- the handler: no lock, no allocation beyond an int, no I/O but one os.write ---------

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._signum is None:
            self._signum = signum
        self._count += 1
        self._wake()

    def _wake(self) -> None:
        # A full pipe (many signals) or a closed one (after close()) is fine: it stays set.
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"\0")

    # -- public -------------------------------------------------------------------------------

    def install(self) -> Self:
        """Handle the stop signals from now on; a no-op off the main thread."""
        if threading.current_thread() is threading.main_thread() and not self._previous:
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        """Put back the handlers that were there before `install()`."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)  # type: ignore[arg-type]

    def close(self) -> None:
        """Restore the handlers and close the pipe; `is_set()` keeps its answer."""
        self.restore()
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._read_fd = self._write_fd = -1

    def request(self) -> None:
        """Ask for a stop from code (another thread, a failure), as a signal would."""
        self._requested = True
        self._wake()

    def is_set(self) -> bool:
        """Whether a stop signal arrived or a stop was requested."""
        return self._requested or self._signum is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to `timeout` seconds (None: until a stop) for a stop; return `is_set()`."""
        if self.is_set() or (timeout is not None and timeout <= 0) or self._read_fd < 0:
            return self.is_set()
        # The pipe is never drained: once set, every later wait returns at once.
        with contextlib.suppress(OSError, ValueError):
            select.select([self._read_fd], [], [], timeout)
        return self.is_set()

    @property
    def signal_name(self) -> str | None:
        """`SIGINT` / `SIGTERM` for the first signal received, None if none (yet)."""
        return None if self._signum is None else signal.Signals(self._signum).name

    @property
    def count(self) -> int:
        """How many stop signals arrived (a second Ctrl-C makes 2)."""
        return self._count

    def __enter__(self) -> Self:
        """Install the handlers."""
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore the handlers and close the pipe."""
        self.close()
