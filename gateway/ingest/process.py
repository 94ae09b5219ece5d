"""The MQTT link in a process of its own, so that paho and the worker run on two cores.

In one interpreter paho's network thread and the worker share the GIL: a message then costs
the sum of both threads' CPU (docs/benchmarks.md). `ProcessLink` has `MqttLink`'s surface for
the gateway (start, stop, health, counters, connected, ack, publish, the two callbacks, messages
into the gateway's `Inbox`) and runs the real `MqttLink`, unchanged, in a child process:

    parent                                      child (`python -c … child_main()`)
    ───────────────────────────────────────     ─────────────────────────────────────────────
    link-process thread: spawns the child,      paho thread → child inbox (bounded)
      reads its frames → parent inbox            shipper thread: inbox batch → one frame
    link-send thread: acks and publications     main thread: applies acks and publications;
      of the worker and forwarders → frames        EOF (the parent died) → exit, no DISCONNECT

Frames are length-prefixed pickles of tuples on a private `socketpair` (only this process and
its child hold it). Backpressure is end to end: a full parent inbox blocks the reader, the
socket fills, the shipper blocks, the child inbox fills, paho's thread waits for room and the
broker holds the rest of the QoS 1 messages back (QoS 0 ones are dropped and counted, as in
`MqttLink`). A message is acknowledged only when the worker calls `ack` after its commit.

A message's `mid` carries the child's generation (`generation << 16 | mid`): if the child dies,
a new one is started, and acks meant for the old one are dropped (the broker redelivers those
messages, the store's `(reader, seq)` dedupe recognises what was stored). Publications not yet
confirmed are sent again through the new child. If the parent dies, the child sees EOF (and
`PR_SET_PDEATHSIG` kills it on Linux): it exits without a DISCONNECT, so the broker publishes
the last will `offline`.

The child is started with `subprocess` and `-c`, not `multiprocessing`'s spawn: spawn imports
the parent's `__main__` again in the child (the whole CLI, or pytest), which would more than
double the start-up. Both exec a fresh interpreter: nothing is forked from a threaded parent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.events import Message
from gateway.ingest.inbox import Inbox
from gateway.ingest.mqtt import DEFAULT_MAX_PAYLOAD_BYTES, BrokerUrl, LinkHealth, MqttLink
from gateway.ingest.topics import Topics

log = logging.getLogger(__name__)

CHILD_INBOX_MESSAGES = 2_000  # the child's staging queue; the parent's inbox is the real one
CHILD_INBOX_BYTES = 4 * 1024 * 1024
SHIP_MAX = 500  # messages in one frame
IDLE_SECONDS = 0.25  # the shipper's longest sleep: health changes reach the parent this late
CONFIRM_POLL_SECONDS = 0.005  # while publications await their PUBACK
PUT_WAIT_SECONDS = 0.2  # the reader re-checks `stopping` while the parent inbox is full
OPS_LIMIT = 10_000  # acks and publications waiting for the sender; publish waits beyond this
START_WAIT_SECONDS = 3.0  # start() waits this long at most for the first connection's outcome
STOP_SECONDS = 10.0  # the child says offline and disconnects within this, or is killed
RESTART_MAX_SECONDS = 30.0
MID_BITS = 16  # MQTT packet ids are 16 bits (§2.2.1); the generation goes above them
_HEADER = struct.Struct("!I")
_ACK, _PUBLISH, _STOP = 0, 1, 2  # what the parent asks of the child
_CONNECTED, _OUTPUT, _LOG = 0, 1, 2  # events the child reports
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_WAKE = Message("", b"", _EPOCH)  # put into the child inbox to wake the shipper


class Channel:
    """Length-prefixed pickles over a stream socket; `send` is safe from several threads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")
        self._lock = threading.Lock()

    def send(self, frame: object) -> None:
        """Write one frame (blocks while the other side does not read: backpressure)."""
        data = pickle.dumps(frame, pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self.sock.sendall(_HEADER.pack(len(data)) + data)

    def recv(self) -> Any:
        """The next frame; EOFError once the other side has closed (or died)."""
        head = self._reader.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise EOFError
        (size,) = _HEADER.unpack(head)
        data = self._reader.read(size)
        if len(data) < size:
            raise EOFError
        return pickle.loads(data)

    def close(self) -> None:
        """Close both the reader and the socket."""
        with contextlib.suppress(OSError):
            self._reader.close()
            self.sock.close()


@dataclasses.dataclass(eq=False)
class _Publication:
    """A publication the parent handed to a child, until the broker has confirmed it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    done: bool = False

    def confirmed(self) -> bool:
        """Has the broker confirmed it (QoS 1), or has it been written (QoS 0)?"""
        return self.done


class ProcessLink:
    """`MqttLink` run in a child process; the same surface for the gateway (module docstring)."""

    def __init__(
        self,
        broker: BrokerUrl,
        client_id: str,
        topics: Topics,
        inbox: Inbox,
        clock: Callable[[], dt.datetime],
        *,
        on_connected: Callable[[bool], None] | None = None,
        on_output: Callable[[Message], None] | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        outbox_limit: int = 0,
        mqtt5: bool = True,
    ) -> None:
        self.topics = topics
        self.inbox = inbox
        self.clock = clock
        self.on_connected = on_connected
        self.on_output = on_output
        self.config = {
            "broker": broker,
            "client_id": client_id,
            "topics": topics,
            "max_payload_bytes": max_payload_bytes,
            "outbox_limit": outbox_limit,
            "mqtt5": mqtt5,
        }
        self.connected = threading.Event()
        self.restarts = 0  # children that died and were replaced
        self.stale_acks = 0  # acks for an earlier child's messages, dropped (redelivered)
        self.refused = 0  # QoS 0 publications paho's full queue refused in the child
        self._child_counters: dict[str, int] = {}  # the running child's, as last reported
        self._past_counters: dict[str, int] = {}  # the sum of the children that have exited
        self._health = LinkHealth(False, None, None, 0)
        self._stopping = threading.Event()
        self._settled = threading.Event()  # the first connection succeeded or failed
        self._cv = threading.Condition()  # guards what follows; notified for the sender
        self._generation = 0
        self._channel: Channel | None = None
        self._ops: list[tuple[Any, ...]] = []
        self._closed = False  # no more ops: the stop op is queued
        self._unconfirmed: dict[int, _Publication] = {}
        self._ids = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self._supervisor = threading.Thread(target=self._supervise, name="link-process")
        self._sender = threading.Thread(target=self._send_loop, name="link-send", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the child, and wait (START_WAIT_SECONDS at most) for its first connection to
        succeed or fail; it goes on connecting in the background, as `MqttLink` does.

        The in-process link connects within milliseconds of `start()`; a new process takes a
        tenth of a second more. Waiting keeps "started" meaning "subscribed" on a reachable
        broker, as callers (and tests that publish right after `start()`) have come to expect.
        """
        self._health = LinkHealth(False, _now(), None, 0)
        self._sender.start()
        # The thread that starts the child must outlive it: PR_SET_PDEATHSIG fires when the
        # *thread* that forked it ends. The supervisor lives until the last child has exited.
        self._supervisor.start()
        self._settled.wait(START_WAIT_SECONDS)

    def stop(self) -> None:
        """The child says offline (retained), disconnects cleanly and exits."""
        self._stopping.set()
        self._settled.set()
        with self._cv:
            self._ops.append((_STOP,))
            self._closed = True
            self._cv.notify_all()
        if not self._supervisor.ident:
            return
        self._supervisor.join(STOP_SECONDS)
        if self._supervisor.is_alive():
            log.error("链路进程未退出，强制结束 / the MQTT link process did not stop: killing it")
            process = self._process
            if process is not None:
                with contextlib.suppress(OSError):
                    process.kill()
            self._supervisor.join(STOP_SECONDS)
        self.connected.clear()

    def health(self) -> LinkHealth:
        """As `MqttLink.health`; while the child is being replaced, `last_error` says why."""
        return self._health

    @property
    def counters(self) -> dict[str, int]:
        """`MqttLink`'s counters summed over the children, and the process boundary's own."""
        out = dict(self._past_counters)
        for key, value in self._child_counters.items():
            out[key] = out.get(key, 0) + value
        out["link_restarts"] = self.restarts
        out["link_stale_acks"] = self.stale_acks
        out["link_refused_publications"] = self.refused
        return out

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the start or between two children)."""
        process = self._process
        return None if process is None else process.pid

    # -- the worker's side -------------------------------------------------------------------

    def ack(self, msg: Message) -> None:
        """Acknowledge a stored message (no-op for QoS 0, dropped for an earlier child's)."""
        if msg.qos == 0:
            return
        with self._cv:
            if msg.mid >> MID_BITS != self._generation or self._closed:
                self.stale_acks += 1
                return
            self._ops.append((_ACK, msg.mid & 0xFFFF, msg.qos))
            if len(self._ops) == 1:
                self._cv.notify_all()

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Callable[[], bool] | None:
        """Hand a publication to the child; "has the broker confirmed it?", None once stopping.

        Waits while OPS_LIMIT acks and publications are waiting for the child (backpressure);
        a publication the child has not confirmed when it dies is sent again by the next one.
        """
        pub = _Publication(topic, payload, qos, retain)
        with self._cv:
            while len(self._ops) >= OPS_LIMIT and not self._closed:
                self._cv.wait(1.0)
            if self._closed:
                return None
            ident = next(self._ids)
            self._unconfirmed[ident] = pub
            self._ops.append((_PUBLISH, ident, topic, payload, qos, retain))
            if len(self._ops) == 1:
                self._cv.notify_all()
        return pub.confirmed

    # -- the parent's threads ----------------------------------------------------------------

    def _send_loop(self) -> None:
        """Acks and publications, in order, to the current child, as one frame per wake-up."""
        while True:
            with self._cv:
                while not self._ops:
                    self._cv.wait()
                ops, self._ops = self._ops, []
                channel = self._channel
                self._cv.notify_all()  # room for publishers waiting on OPS_LIMIT
            if channel is not None:
                # A dead child: its unconfirmed publications go to the next one, its acks
                # are void (the broker redelivers those messages).
                with contextlib.suppress(OSError):
                    channel.send(ops)
            if ops[-1][0] == _STOP:
                return

    def _supervise(self) -> None:
        """Start a child; read it until it exits; start another one unless stopping."""
        failures = 0
        while not self._stopping.is_set():
            try:
                channel = self._spawn()
            except Exception as exc:  # no child, no link: say so and try again, never wedge
                failures += 1
                self._down(f"cannot start the MQTT link process: {exc}")
                log.error("无法启动链路进程 / cannot start the MQTT link process: %s", exc)
                self._reap()
                self._stopping.wait(_restart_delay(failures))
                continue
            ever_connected = self._serve(channel)
            code = self._reap()
            if self._stopping.is_set():
                break
            failures = 1 if ever_connected else failures + 1
            self.restarts += 1
            reason = f"the MQTT link process exited ({_exit_text(code)})"
            self._down(f"{reason}; restarting it")
            log.error(
                "链路进程退出，正在重启 / %s; starting a new one (restart %d)",
                reason,
                self.restarts,
            )
            self._stopping.wait(_restart_delay(failures))

    def _spawn(self) -> Channel:
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from gateway.ingest.process import child_main; child_main()",
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        channel = Channel(ours)
        try:
            # The configuration goes over the socket, not argv: the broker password stays private.
            channel.send(self.config)
        except BaseException:
            channel.close()
            raise
        with self._cv:
            self._generation += 1
            self._channel = channel
            # What an earlier child had not got confirmed goes out again, before anything new.
            again = [
                (_PUBLISH, ident, p.topic, p.payload, p.qos, p.retain)
                for ident, p in self._unconfirmed.items()
                if p.qos > 0
            ]
            for ident in [i for i, p in self._unconfirmed.items() if p.qos == 0]:
                del self._unconfirmed[ident]  # at most once: gone with the child
            self._ops = again + [op for op in self._ops if op[0] == _STOP]
            if self._ops:
                self._cv.notify_all()
        return channel

    def _serve(self, channel: Channel) -> bool:
        """Take the child's frames until it closes; True if it connected at some point."""
        generation = self._generation << MID_BITS
        connected = False
        try:
            while True:
                messages, events, confirmed, refused, health, counters = channel.recv()
                for event in events:
                    try:
                        self._event(event)
                    except Exception:  # a callback's bug must not end the link
                        log.exception("处理链路事件失败 / could not handle a link event")
                for ident in confirmed:
                    pub = self._unconfirmed.pop(ident, None)
                    if pub is not None:
                        pub.done = True
                for ident in refused:
                    self._unconfirmed.pop(ident, None)
                    self.refused += 1
                if health is not None:
                    # Like MqttLink's, `last_error` is kept after a success, for context: a
                    # fresh child has none of its own, so why the last one exited stays.
                    error = health[2] if health[2] is not None else self._health.last_error
                    self._health = LinkHealth(health[0], health[1], error, health[3])
                    connected = connected or self._health.connected
                    if self._health.attempts:
                        self._settled.set()  # a failed attempt: connecting goes on
                    if not self._health.connected:
                        self.connected.clear()
                if counters is not None:
                    self._child_counters = counters
                if messages:
                    self._deliver(messages, generation)
        except (EOFError, OSError):
            pass
        except Exception:  # a bad frame, a bug: replace the child rather than wedge the link
            log.exception("读取链路进程失败 / reading the MQTT link process failed: replacing it")
            process = self._process
            if process is not None:
                with contextlib.suppress(OSError):
                    process.kill()
        finally:
            with self._cv:
                self._channel = None
            channel.close()
            self.connected.clear()
        return connected

    def _event(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == _CONNECTED:
            self.connected.set()
            self._settled.set()
            if self.on_connected is not None:
                self.on_connected(event[1])
        elif kind == _OUTPUT:
            if self.on_output is not None:
                topic, payload, qos, retain, mid = event[1:]
                self.on_output(Message(topic, payload, self.clock(), qos, retain, mid))
        elif kind == _LOG:
            name, level, text, exc_text = event[1:]
            logger = logging.getLogger(name)
            if logger.isEnabledFor(level):
                record = logging.makeLogRecord(
                    {
                        "name": name,
                        "levelno": level,
                        "levelname": logging.getLevelName(level),
                        "msg": text,
                        "exc_text": exc_text,
                        "processName": "mqtt-link",
                    }
                )
                logger.handle(record)

    def _deliver(self, messages: list[tuple[Any, ...]], generation: int) -> None:
        """Into the parent inbox, in order; waits for room (the backpressure)."""
        received = self.clock()  # one instant per frame: they arrived together
        inbox, stopping = self.inbox, self._stopping
        for topic, payload, qos, retain, mid, oversize in messages:
            msg = Message(topic, payload, received, qos, retain, generation | mid, oversize)
            if inbox.put_nowait(msg):
                continue
            while not inbox.put(msg, PUT_WAIT_SECONDS):
                if stopping.is_set():
                    return  # unacknowledged: the broker redelivers it

    def _reap(self) -> int | None:
        process = self._process
        if process is None:
            return None
        try:
            code = process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:  # it closed the socket but lives on: end it
            process.kill()
            code = process.wait()
        self._process = None
        if self._child_counters:
            for key, value in self._child_counters.items():
                self._past_counters[key] = self._past_counters.get(key, 0) + value
            self._child_counters = {}
        return code

    def _down(self, reason: str) -> None:
        self._settled.set()
        self.connected.clear()
        self._health = LinkHealth(False, _now(), reason, self._health.attempts)


def _restart_delay(failures: int) -> float:
    """None after a child that had connected (0.1 s); then 1, 2, 4 … 30 s."""
    if failures <= 1:
        return 0.1
    return float(min(2 ** (failures - 2), RESTART_MAX_SECONDS))


def _exit_text(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"status {code}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- the child -------------------------------------------------------------------------------


class _Child:
    """One `MqttLink` with its own inbox, a shipper thread and the parent's orders."""

    def __init__(self, channel: Channel, config: dict[str, Any]) -> None:
        self.channel = channel
        self.inbox = Inbox(CHILD_INBOX_MESSAGES, CHILD_INBOX_BYTES)
        self.events: deque[tuple[Any, ...]] = deque()
        self.pending: deque[tuple[int, Callable[[], bool]]] = deque()  # awaiting confirmation
        self.refused: deque[int] = deque()
        self.link = MqttLink(
            config["broker"],
            config["client_id"],
            config["topics"],
            self.inbox,
            lambda: _EPOCH,  # the parent stamps `received_at` with its own clock
            on_connected=self._on_connected,
            on_output=self._on_output,
            max_payload_bytes=config["max_payload_bytes"],
            outbox_limit=config["outbox_limit"],
            mqtt5=config["mqtt5"],
        )
        self._health: tuple[Any, ...] | None = None
        self._counters: dict[str, int] | None = None

    def report(self, event: tuple[Any, ...]) -> None:
        """Queue an event for the parent and wake the shipper (any thread; never blocks)."""
        self.events.append(event)
        self.inbox.put_nowait(_WAKE)

    def _on_connected(self, session_present: bool) -> None:
        self.report((_CONNECTED, session_present))

    def _on_output(self, msg: Message) -> None:
        self.report((_OUTPUT, msg.topic, msg.payload, msg.qos, msg.retain, msg.mid))

    def run(self) -> None:
        """Connect, ship in a thread, apply the parent's orders here until stop or EOF."""
        threading.Thread(target=self._ship, name="link-ship", daemon=True).start()
        self.link.start()
        while True:
            try:
                ops = self.channel.recv()
            except (EOFError, OSError):
                # The parent is gone: exit at once, no DISCONNECT, so the broker publishes
                # the last will (MQTT 3.1.1 §3.1.2.5) and keeps the session for the next run.
                os._exit(0)
            for op in ops:
                if op[0] == _ACK:
                    self.link.ack(Message("", b"", _EPOCH, op[2], mid=op[1]))
                elif op[0] == _PUBLISH:
                    _, ident, topic, payload, qos, retain = op
                    confirmed = self.link.publish(topic, payload, qos, retain)
                    if confirmed is None:
                        self.refused.append(ident)
                    else:
                        self.pending.append((ident, confirmed))
                else:
                    self.link.stop()
                    self.flush([])
                    self.channel.close()
                    os._exit(0)

    def _ship(self) -> None:
        try:
            while True:
                wait = CONFIRM_POLL_SECONDS if self.pending else IDLE_SECONDS
                batch = self.inbox.get_batch(SHIP_MAX, wait)
                self.flush(
                    [
                        (m.topic, m.payload, m.qos, m.retain, m.mid, m.oversize)
                        for m in batch
                        if m is not _WAKE
                    ]
                )
        except OSError:
            os._exit(0)  # the parent is gone (the main thread exits the same way)

    def flush(self, messages: list[tuple[Any, ...]]) -> None:
        """Send messages, events, confirmations and changed health or counters (if any)."""
        events = _drain(self.events)
        confirmed = []
        pending = self.pending
        while pending and pending[0][1]():
            confirmed.append(pending.popleft()[0])
        refused = _drain(self.refused)
        h = self.link.health()
        health: tuple[Any, ...] | None = (h.connected, h.since, h.last_error, h.attempts)
        if health == self._health:
            health = None
        else:
            self._health = health
        counters: dict[str, int] | None = self.link.counters
        if counters == self._counters:
            counters = None
        else:
            self._counters = counters
        if messages or events or confirmed or refused or health or counters:
            self.channel.send((messages, events, confirmed, refused, health, counters))


def _drain(queue: deque[Any]) -> list[Any]:
    out = []
    while queue:
        out.append(queue.popleft())
    return out


class _ShipLogs(logging.Handler):
    """The child's log records go to the parent, which logs them as its own."""

    def __init__(self, child: _Child) -> None:
        super().__init__(logging.INFO)
        self.child = child

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the formatted record (never blocks: the paho thread logs too)."""
        exc_text = None
        if record.exc_info:
            exc_text = logging.Formatter().formatException(record.exc_info)
        self.child.report((_LOG, record.name, record.levelno, record.getMessage(), exc_text))


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the parent dies (PR_SET_PDEATHSIG, prctl(2))."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(0)


def child_main() -> None:
    """The child's entry point: `python -c … child_main() FD PARENT_PID`."""
    fd, parent = int(sys.argv[1]), int(sys.argv[2])
    _die_with_parent(parent)
    # Ctrl-C or a service manager's SIGTERM reach the whole process group: the parent says
    # when to stop (offline, then DISCONNECT), or its death ends this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = Channel(socket.socket(fileno=fd))
    try:
        config = channel.recv()
    except (EOFError, OSError):
        os._exit(0)
    child = _Child(channel, config)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(_ShipLogs(child))
    child.run()
