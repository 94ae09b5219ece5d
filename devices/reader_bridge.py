"""Reader bridge: a USB/RS-232 NFC or QR reader that types one line per card → contract scans.

    python -m devices.reader_bridge --port /dev/ttyUSB0 --baud 9600 --reader fd-1 --site zcity \\
        --broker mqtt://127.0.0.1:1883 --root estate --state ./bridge-state

One thread reads the serial port (`devices.reader_port`, reopening it with backoff when it goes
away), turns each line into a scan (`devices.reader_lines`) and appends it to the on-disk outbox
(`devices.outbox`), which gives it its `seq`.
Another thread publishes the outbox, oldest first, at QoS 1, and deletes an entry only after the
broker's PUBACK; while the broker is unreachable the scans simply accumulate on disk. paho
reconnects to the broker with backoff (1 s → 30 s). The device status topic carries `online`
while the bridge is connected *and* the port is open, `offline` otherwise (also the last will).
Line formats, state folder and deployment: docs/reader-bridge.md.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import datetime as dt
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.mqtt_device import device_client, held
from devices.outbox import DEFAULT_MAX_ENTRIES, Outbox, OutboxFull
from devices.reader_lines import DefaultMethod, parse_line
from gateway import payloads
from gateway.config.models import ID_RE
from gateway.extras import requires_extra
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.topics import Topics
from gateway.payloads import Method
from gateway.trust import bridge

with requires_extra("devices"):
    from devices.reader_port import read_port

log = logging.getLogger("devices.reader_bridge")

DRAIN_SECONDS = 2.0  # on stop, how long the sender waits for the PUBACKs of what is in flight


# -- the bridge ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeOptions:
    """What one bridge process serves: one serial reader, one broker, one state folder."""

    port: str  # /dev/ttyUSB0, a pty, or any pyserial URL (loop://, rfc2217://, socket://)
    reader: str
    site: str
    broker: BrokerUrl
    state: Path
    root: str = "estate"
    baud: int = 9600
    default_method: DefaultMethod = "auto"
    encoding: str = "utf-8"
    max_queue: int = DEFAULT_MAX_ENTRIES
    window: int = 10  # scans published but not yet acknowledged, at most
    # The reader's bridge key (the gateway's secrets file, readers.{id}.bridge): every scan is
    # signed with it, so one stored while the broker was away still counts however late it
    # arrives (contract §1, §3 `auth.bridge`).
    bridge_key: bytes | None = None


def scan_payload(
    credential: str, method: Method, at: dt.datetime, seq: int, key: bytes | None
) -> bytes:
    """A scan as the bridge sends it, with `auth.bridge.mac` over the values as sent."""
    body = payloads.scan_body(credential, method, ts=at, seq=seq)
    if key is not None:
        mac = bridge.mac(key, body["credential"], body["method"], body.get("ts"), body.get("seq"))
        body["auth"] = {"bridge": {"mac": mac}}
    return payloads.encode(body)


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone()


class ReaderBridge:
    """Serial reader → on-disk outbox → broker. `start()`, then `stop()` (or use `with`)."""

    def __init__(
        self,
        options: BridgeOptions,
        *,
        clock: Callable[[], dt.datetime] = _now,  # aware: its offset is the scans' ts offset
        on_answer: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        for name in ("reader", "site", "root"):
            if not ID_RE.match(getattr(options, name)):
                raise ValueError(f"--{name} {getattr(options, name)!r}: use [a-z0-9][a-z0-9_-]*")
        try:
            codecs.lookup(options.encoding)
        except LookupError:
            raise ValueError(f"--encoding {options.encoding!r}: unknown (utf-8, gbk …)") from None
        if options.window < 1 or options.max_queue < 1:
            raise ValueError("window and max_queue must be at least 1")
        self.options, self.clock, self.on_answer = options, clock, on_answer
        topics = Topics(options.root, options.site)
        self.scan_topic = topics.scan(options.reader)
        self.ack_topic = topics.ack(options.reader)
        self.status_topic = topics.device_status(options.reader)
        self.counts: collections.Counter[str] = collections.Counter()
        self.outbox: Outbox | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # a new scan, a connect, a port change
        self._port_open = threading.Event()
        self._connected = threading.Event()
        self._generation = 0  # bumped on every CONNACK
        self._threads: list[threading.Thread] = []
        self._client = device_client(
            options.broker, f"reader-bridge-{options.reader}", self.status_topic
        )
        self._client.max_inflight_messages_set(options.window + 10)
        self._client.max_queued_messages_set(0)  # unbounded: the window bounds it
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def queued(self) -> int:
        """Scans on disk not yet acknowledged by the broker."""
        return 0 if self.outbox is None else len(self.outbox)

    def start(self) -> None:
        """Open the outbox, connect in the background, start reading and sending."""
        first = int(self.clock().timestamp() * 1000)  # a new state folder: see the docs on seq
        self.outbox = Outbox(
            self.options.state / "outbox.sqlite3",
            max_entries=self.options.max_queue,
            first_seq=first,
        )
        log.info(
            "本地队列 / outbox %s: %d scans queued, next seq %d",
            self.outbox.path,
            len(self.outbox),
            self.outbox.next_seq,
        )
        self._client.connect_async(self.options.broker.host, self.options.broker.port, 30)
        self._client.loop_start()
        for target in (self._read_loop, self._send_loop):
            thread = threading.Thread(target=target, name=f"bridge{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading, let the sender drain briefly, say offline, disconnect, close all."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if self._connected.is_set():
            info = self._client.publish(self.status_topic, b"offline", qos=1, retain=True)
            info.wait_for_publish(2.0)
        self._client.disconnect()
        self._client.loop_stop()
        if self.outbox is not None:
            self.outbox.close()

    def __enter__(self) -> ReaderBridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serial side -----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        read_port(
            self.options.port, self.options.baud, self._stop, self._handle_line, self._set_port
        )

    def _handle_line(self, raw: bytes) -> None:
        self.counts["lines"] += 1
        try:
            line = raw.decode(self.options.encoding)
        except UnicodeDecodeError:
            log.warning(
                "忽略无法解码的一行 / ignored a line that is not %s: %r",
                self.options.encoding,
                raw[:80],
            )
            self.counts["ignored"] += 1
            return
        parsed = parse_line(line, self.options.default_method)
        if parsed is None:
            self.counts["ignored"] += 1
            return
        method, credential = parsed
        at = self.clock()
        assert self.outbox is not None
        try:
            key = self.options.bridge_key
            seq = self.outbox.put(
                self.scan_topic, lambda seq: scan_payload(credential, method, at, seq, key)
            )
        except (OutboxFull, sqlite3.Error) as error:
            self.counts["refused"] += 1
            log.error(
                "扫描未能保存，已丢失 / SCAN LOST, it could not be stored: %s %s at %s (%s)",
                method,
                credential,
                at.isoformat(),
                error,
            )
            return
        self.counts["scans"] += 1
        log.info("读卡 / scan seq=%d %s %s", seq, method, credential)
        self._wake.set()

    def _set_port(self, is_open: bool) -> None:
        (self._port_open.set if is_open else self._port_open.clear)()
        self._wake.set()

    # -- broker side -----------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            try:
                self._send_until_stopped()
                return
            except sqlite3.Error as error:  # a disk error: the thread must not die of it
                log.error("本地队列读写失败 / outbox error: %s; retrying in 5 s", error)
                if self._stop.wait(5.0):
                    return

    def _send_until_stopped(self) -> None:
        """Publish the outbox in order, `window` at a time; remove the acknowledged prefix."""
        assert self.outbox is not None
        outbox, window = self.outbox, self.options.window
        inflight: collections.deque[tuple[int, int, paho.MQTTMessageInfo]] = collections.deque()
        status: tuple[int, bytes, paho.MQTTMessageInfo] | None = None
        last = -1  # the highest seq handed to paho
        drain_until: float | None = None
        while True:
            self._wake.clear()
            stopping = self._stop.is_set()
            if stopping and drain_until is None:
                drain_until = time.monotonic() + DRAIN_SECONDS
            if not stopping:
                status = self._send_status(status)
            done = []
            while inflight and _acked(inflight[0][2]):
                done.append(inflight.popleft()[0])
            outbox.remove(done)
            if stopping and (not inflight or not self._connected.is_set()):
                return  # whatever is unacknowledged stays on disk for the next start
            # After a reconnect paho resends what it holds first; new scans wait behind them.
            generation = self._generation
            if (
                self._connected.is_set()
                and not stopping
                and all(g == generation for _, g, _ in inflight)
            ):
                for entry in outbox.peek(after=last, limit=window - len(inflight)):
                    info = _queued(self._client.publish(entry.topic, entry.payload, qos=1))
                    if info is None:
                        break  # retried on the next round, in order
                    inflight.append((entry.seq, generation, info))
                    last = entry.seq
            if inflight:
                inflight[0][2].wait_for_publish(0.1)
            else:
                self._wake.wait(0.5)
            if drain_until is not None and time.monotonic() > drain_until:
                return

    def _send_status(
        self, last: tuple[int, bytes, paho.MQTTMessageInfo] | None
    ) -> tuple[int, bytes, paho.MQTTMessageInfo] | None:
        """Publish online/offline after each connect and port change, one at a time, so that a
        stale status paho resends after a reconnect can never land after the current one."""
        if not self._connected.is_set():
            return last
        want = payloads.status("online" if self._port_open.is_set() else "offline")
        generation = self._generation
        if last is not None and (last[:2] == (generation, want) or not _acked(last[2])):
            return last
        info = _queued(self._client.publish(self.status_topic, want, qos=1, retain=True))
        return last if info is None else (generation, want, info)

    # -- paho callbacks (network thread: quick, never raise) -------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        _u: object,
        _f: paho.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("代理拒绝连接 / broker refused the connection: %s", reason)
            return
        client.subscribe(self.ack_topic, qos=1)
        self._generation += 1
        self._connected.set()
        self._wake.set()
        log.info("已连接代理 / connected to %s", self.options.broker)

    def _on_disconnect(
        self,
        _c: paho.Client,
        _u: object,
        _f: paho.DisconnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning(
                "与代理断开，扫描暂存本地 / disconnected from %s: %s; scans are kept on disk",
                self.options.broker,
                reason,
            )

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        try:
            answer = json.loads(message.payload)
            if not isinstance(answer, dict):
                raise ValueError("not an object")
        except ValueError as error:
            log.warning("无法解析网关应答 / bad scan answer %r: %s", message.payload[:80], error)
            return
        ok = answer.get("ok")
        log.info("网关应答 / answer seq=%s ok=%s %s", answer.get("seq"), ok, answer.get("message"))
        if self.on_answer is not None:
            try:
                self.on_answer(answer)
            except Exception:
                log.exception("应答回调失败 / the answer callback failed")


def _queued(info: paho.MQTTMessageInfo) -> paho.MQTTMessageInfo | None:
    """The info of a QoS 1 publication paho holds (`held`), or None (logged) if it refused it."""
    if not held(info):
        log.error("发布被拒绝 / paho refused a publication: %s", paho.error_string(info.rc))
        return None
    return info


def _acked(info: paho.MQTTMessageInfo) -> bool:
    return bool(info.is_published())


# -- command line --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/reader-bridge.md)."""
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m devices.reader_bridge",
        description="串口读卡器桥接 / serial NFC or QR reader → MQTT scans (store and forward)",
    )
    p.add_argument("--port", required=True, help="/dev/ttyUSB0, a pty or a pyserial URL")
    p.add_argument("--baud", type=int, default=9600, help="default 9600")
    p.add_argument("--reader", required=True, help="reader id in the site file, e.g. fd-1")
    p.add_argument("--site", required=True, help="site id, e.g. zcity")
    p.add_argument("--broker", default=env("PATROL_BROKER", "mqtt://127.0.0.1:1883"))
    p.add_argument("--root", default=env("PATROL_ROOT", "estate"), help="topic root")
    p.add_argument("--state", type=Path, default=Path("./bridge-state"), help="outbox folder")
    p.add_argument("--default-method", choices=["auto", "nfc", "qr"], default="auto")
    p.add_argument("--encoding", default="utf-8", help="of the reader's lines (gbk for some)")
    p.add_argument("--max-queue", type=int, default=DEFAULT_MAX_ENTRIES)
    p.add_argument(
        "--bridge-key-file",
        type=Path,
        default=env("PATROL_BRIDGE_KEY_FILE"),
        help="the reader's bridge key (hex, first line): signs each scan's time",
    )
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM or Ctrl-C; exit 0, or 2 on a bad option."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        key = None
        if args.bridge_key_file is not None:
            text = Path(args.bridge_key_file).read_text(encoding="utf-8").strip()
            key = bytes.fromhex(text.splitlines()[0] if text else "")
            if not key:
                raise ValueError(f"--bridge-key-file {args.bridge_key_file}: empty")
        options = BridgeOptions(
            port=args.port,
            reader=args.reader,
            site=args.site,
            broker=BrokerUrl.parse(args.broker),
            state=args.state,
            root=args.root,
            baud=args.baud,
            default_method=args.default_method,
            encoding=args.encoding,
            max_queue=args.max_queue,
            bridge_key=key,
        )
        bridge = ReaderBridge(options)
    except (ValueError, OSError) as error:
        print(f"reader_bridge: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        bridge.start()
    except (OSError, sqlite3.Error) as error:
        print(f"reader_bridge: cannot use --state {args.state}: {error}", file=sys.stderr)
        bridge.stop()
        return 1
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("正在停止 / stopping (%d scans still queued on disk)", bridge.queued)
        bridge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
