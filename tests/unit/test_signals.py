"""`gateway.signals.StopSignal`: Ctrl-C and SIGTERM stop the demo and the gateway, and no
second signal can hang them (issue 8 item 7)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gateway.signals import StopSignal

# Raises a second SIGINT at every line that runs inside the first SIGINT's handler, outside
# this script (so inside `Event.set()`, or inside `StopSignal`'s handler). raise_signal() runs
# the Python handler before it returns, so the second handler runs while the first one is
# suspended at that line: with `Event.set()` that is while it holds the event's lock.
SECOND_SIGNAL_INSIDE_THE_FIRST = """
import signal, sys, threading
if sys.argv[1] == "event":
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
else:
    from gateway.signals import StopSignal
    stop = StopSignal().install()
busy = False
def tracer(frame, event, arg):
    global busy
    if event == "line" and not busy and frame.f_code.co_filename != "<string>":
        busy = True
        try:
            signal.raise_signal(signal.SIGINT)
        finally:
            busy = False
    return tracer
sys.settrace(tracer)
signal.raise_signal(signal.SIGINT)
sys.settrace(None)
print("stopped", stop.is_set(), flush=True)
"""


def _second_signal_inside_the_first(handler: str) -> subprocess.CompletedProcess[str] | None:
    """Run the script above; None if it hung (killed after a few seconds)."""
    try:
        return subprocess.run(
            [sys.executable, "-c", SECOND_SIGNAL_INSIDE_THE_FIRST, handler],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None


def test_a_second_signal_inside_the_handler_cannot_deadlock() -> None:
    """Prevents `demo` and `run` hanging for ever when a second Ctrl-C (or `timeout -s INT`,
    which signals twice) arrives while the first signal's handler is running."""
    done = _second_signal_inside_the_first("stop-signal")
    assert done is not None, "StopSignal's handler deadlocked on a second signal"
    assert (done.returncode, done.stdout, done.stderr) == (0, "stopped True\n", "")


def test_the_reproduction_does_hang_a_handler_that_sets_an_event() -> None:
    """Prevents the test above passing for want of a real reproduction: the same script hangs
    with the handler the demo had (`lambda *_: stop.set()` on a `threading.Event`)."""
    assert _second_signal_inside_the_first("event") is None


@pytest.fixture
def stop() -> Iterator[StopSignal]:
    """A StopSignal installed for one test; its handlers are restored afterwards."""
    with StopSignal() as installed:
        yield installed


def test_a_signal_wakes_a_waiting_thread_at_once(stop: StopSignal) -> None:
    """Prevents a stop that is noticed only at the next poll, or never by another thread."""
    woke: list[float] = []
    waiter = threading.Thread(target=lambda: woke.append(_timed(lambda: stop.wait(10))))
    waiter.start()
    time.sleep(0.1)
    assert not stop.is_set()
    signal.raise_signal(signal.SIGTERM)
    waiter.join(5)
    assert stop.is_set() and stop.signal_name == "SIGTERM" and stop.count == 1
    assert len(woke) == 1 and woke[0] < 1.0
    signal.raise_signal(signal.SIGINT)  # a second one is counted, and changes nothing else
    assert stop.count == 2 and stop.signal_name == "SIGTERM"
    assert _timed(lambda: stop.wait(10)) < 0.1  # set for good


def test_request_from_another_thread_wakes_the_main_thread(stop: StopSignal) -> None:
    """Prevents a failed worker (the demo's simulator) leaving the main loop waiting."""
    assert stop.wait(0.05) is False
    threading.Timer(0.1, stop.request).start()
    assert _timed(lambda: stop.wait(10)) < 1.0
    assert stop.is_set() and stop.signal_name is None and stop.count == 0


def test_restore_puts_the_previous_handlers_back() -> None:
    """Prevents a stopped demo leaving its handler in place, so a later Ctrl-C is ignored."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignal():
        assert signal.getsignal(signal.SIGINT) not in before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_install_off_the_main_thread_changes_no_handler() -> None:
    """Prevents a crash (signal.signal raises off the main thread) when run from a thread."""
    before = signal.getsignal(signal.SIGINT)
    result: list[bool] = []

    def body() -> None:
        with StopSignal() as stop:
            result.append(stop.wait(0.01))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(5)
    assert result == [False]
    assert signal.getsignal(signal.SIGINT) is before


def _timed(call: Callable[[], object]) -> float:
    began = time.monotonic()
    call()
    return time.monotonic() - began
