"""`make bench`: throughput and latency of the gateway, as ratios to baselines of the same run.

These machines are shared and noisy, so an absolute figure means little from one run to the next;
a ratio against a baseline measured minutes apart on the same private broker means more. Nothing
here asserts on timing: the bench prints figures, people read them (docs/benchmarks.md).

1. Ingest: N valid QoS 1 messages are published into a persistent session while its consumer is
   offline; then the consumer connects and drains them, so the publisher's speed is not measured.
   Baseline: a bare paho consumer (auto ack, counts). Gateway: until the store holds all N.
2. Scan → answer latency at a steady rate, measured by a separate process that publishes the
   scans and subscribes to `reader/+/ack`. Baseline: the same scans echoed by the bare broker.
3. Replay: a synthetic two-day events list through `gateway.replay.replay`. Baseline: the same
   lines read (`read_events`) and decoded (`Decoder`), without store or rules.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import queue
import random
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import gateway
from gateway import payloads
from gateway.app import Gateway
from gateway.config import Site, load_site
from gateway.events import Message
from gateway.forward import Forwarder
from gateway.influx.forward import InfluxSettings
from gateway.ingest.decode import Decoder
from gateway.ingest.memory import MemoryLink
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.topics import Topics
from gateway.replay import Recorded, read_events, replay
from gateway.roster import Roster
from gateway.store.sqlite import SqliteStore
from gateway.worker import Worker
from tests.bench_influx import forwarding
from tests.support.influx import TOKEN, Influxd, V2Adapter
from tests.support.mosquitto import Mosquitto, find_mosquitto, free_port
from tests.support.mqtt import MqttClient

SITE_FILE = Path(gateway.__file__).parent / "sites" / "zcity.yaml"
EQUIPMENT = "tx-1"  # metrics winding_temp_c and load_pct: two store rows per reading
SCANS_PER_TEN = 7  # ingest mix: 7 scans to 3 readings
DRAIN_TIMEOUT = 30.0  # seconds for a consumer to drain the pre-published messages
REPLAY_BUDGET = 20.0  # seconds for the replay; a slower one is cut short (and says so)
ANSWER_WAIT = 10.0  # seconds the latency process waits for late answers after the last scan
CHILD_TIMEOUT = 60.0  # seconds for the latency process, on top of its sending time
POLL_SECONDS = 0.02


# -- small helpers --------------------------------------------------------------------------


def run_id() -> str:
    """A suffix that makes this run's client ids unique on the broker."""
    return uuid.uuid4().hex[:8]


def say(text: str) -> None:
    """Progress, as the bench goes (the table comes at the end)."""
    print(text, flush=True)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(value: float, baseline: float) -> float:
    """value / baseline, NaN when either is missing."""
    if not baseline or math.isnan(baseline) or math.isnan(value):
        return math.nan
    return value / baseline


def forget_session(url: str, client_id: str) -> None:
    """Drop a persistent session (MQTT 3.1.1 §3.1.2.4: a clean-session connect discards it)."""
    with MqttClient(url, client_id, clean_session=True, timeout=10) as client:
        client.connect()


def badges(site: Site) -> list[tuple[str, str]]:
    """(method, credential): one per person who has any, so every scan is answered `ok`.

    Scans rotate over people, not credentials: the day's duty manager then has the same share
    of the scans (1 in 8 on the example site) whatever the weekday the bench runs on.
    """
    first: dict[str, tuple[str, str]] = {}
    for key, person in site.credentials.items():
        method, _, credential = key.partition(":")
        first.setdefault(person.id, (method, credential))
    return list(first.values())


def scan_body(badge: tuple[str, str], ts: dt.datetime, seq: int) -> bytes:
    """A scan payload (contract §3)."""
    return payloads.scan(badge[1], _method(badge[0]), ts=ts, seq=seq)


def _method(name: str) -> payloads.Method:
    return "qr" if name == "qr" else "nfc"  # a site file's credentials are nfc: or qr:


def ingest_messages(site: Site, root: str, count: int) -> list[tuple[str, bytes]]:
    """`count` valid messages: scans with unique (reader, seq) and two-metric readings."""
    topics = Topics(root, site.id)
    readers = sorted(site.reader_post)
    people = badges(site)
    base = dt.datetime.now(site.tz).replace(microsecond=0) - dt.timedelta(seconds=count // 1000)
    out: list[tuple[str, bytes]] = []
    for i in range(count):
        ts = base + dt.timedelta(milliseconds=i)
        if i % 10 < SCANS_PER_TEN:
            badge = people[i // len(readers) % len(people)]
            topic = f"{topics.base}/reader/{readers[i % len(readers)]}/scan"
            out.append((topic, scan_body(badge, ts, i)))
        else:
            values = {"winding_temp_c": 60.0 + i % 20, "load_pct": 40.0 + i % 30}
            reading = payloads.reading(values, ts=ts, seq=i)
            out.append((f"{topics.base}/equipment/{EQUIPMENT}/reading", reading))
    return out


def prepublish(url: str, messages: list[tuple[str, bytes]]) -> float:
    """Publish QoS 1 and wait for every PUBACK; returns the publisher's messages per second."""
    with MqttClient(url, f"bench-pub-{run_id()}", timeout=10, max_inflight=1000) as pub:
        pub.connect()
        started = time.perf_counter()
        infos = [pub.publish_nowait(topic, payload, qos=1) for topic, payload in messages]
        pub.wait_published(infos, timeout=DRAIN_TIMEOUT)
        return len(messages) / (time.perf_counter() - started)


# -- 1. ingest throughput -------------------------------------------------------------------


@dataclass
class Drain:
    """One consumer draining N pre-published messages."""

    done: int  # messages received (raw) or stored and committed (gateway)
    expected: int
    seconds: float  # from the connect call until the last one was received / stored
    first_to_last: float = math.nan  # raw consumer only

    def rate(self) -> float:
        """Messages per second (NaN if nothing came)."""
        return self.done / self.seconds if self.done and self.seconds > 0 else math.nan

    def describe(self) -> str:
        """`20000 in 1.10 s`, or what came before the time-out."""
        if self.done < self.expected:
            return f"TIMED OUT: {self.done} of {self.expected} in {self.seconds:.1f} s"
        return f"{self.done} in {self.seconds:.2f} s"


class RawConsumer:
    """A bare paho consumer: persistent session, QoS 1, auto ack, counts, does nothing else."""

    def __init__(self, host: str, port: int, client_id: str, expected: int) -> None:
        self.host, self.port, self.expected = host, port, expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.all_in = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        self._client.on_message = self._on_message

    def drain(self, timeout: float) -> Drain:
        """Connect, take everything the session holds, disconnect."""
        started = time.perf_counter()
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        try:
            self.all_in.wait(timeout)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
        if not self.count:
            return Drain(0, self.expected, time.perf_counter() - started)
        return Drain(self.count, self.expected, self.last - started, self.last - self.first)

    def _on_message(self, _c: mqtt.Client, _u: Any, _m: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self.expected:
            self.all_in.set()


def ingest_raw(broker: Mosquitto, site: Site, count: int) -> Drain:
    """Baseline: the bare consumer drains N messages from its persistent session."""
    topics = Topics("bench-a", site.id)
    client_id = f"bench-raw-{run_id()}"
    with MqttClient(broker.url, client_id, clean_session=False, timeout=10) as setup:
        setup.connect()
        setup.subscribe(*topics.subscriptions(), qos=1)  # the gateway's own subscriptions
    publish_rate = prepublish(broker.url, ingest_messages(site, topics.root, count))
    say(f"  published {count} while offline ({publish_rate:,.0f} msgs/s); raw consumer drains")
    try:
        return RawConsumer(broker.host, broker.port, client_id, count).drain(DRAIN_TIMEOUT)
    finally:
        forget_session(broker.url, client_id)


def wait_online(url: str, topics: Topics, timeout: float = 10.0) -> None:
    """Wait for the gateway's retained `online`: its SUBSCRIBE, sent just before, is in too."""
    with MqttClient(url, f"bench-probe-{run_id()}", timeout=timeout) as probe:
        probe.connect()
        probe.subscribe(topics.gateway_status, qos=1)
        probe.wait_for(lambda m: m.payload == b"online", what="the gateway's online status")


@contextmanager
def running_gateway(
    site: Site,
    url: str,
    data: Path,
    root: str,
    client_id: str,
    influx: InfluxSettings | None = None,
) -> Iterator[Gateway]:
    """A started gateway whose subscriptions are in place; stopped on the way out."""
    gw = Gateway(site, BrokerUrl.parse(url), data, root=root, client_id=client_id, influx=influx)
    gw.start()
    try:
        if not gw.link.connected.wait(10):
            raise TimeoutError(f"the gateway did not connect to {url} in 10 s")
        wait_online(url, gw.topics)
        yield gw
    finally:
        gw.stop()


def ingest_gateway(broker: Mosquitto, site: Site, count: int, data: Path) -> tuple[Drain, str]:
    """The gateway drains N messages from its persistent session into its store."""
    return drain_gateway(
        broker, site, data, "bench-b", lambda root: ingest_messages(site, root, count)
    )


def drain_gateway(
    broker: Mosquitto,
    site: Site,
    data: Path,
    root: str,
    make: Callable[[str], list[tuple[str, bytes]]],
) -> tuple[Drain, str]:
    """The gateway drains the messages `make(root)` from its persistent session into its store."""
    topics = Topics(root, site.id)
    client_id = f"bench-gw-{run_id()}"
    with running_gateway(site, broker.url, data, topics.root, client_id):
        pass  # this first connect only creates the persistent session and its subscriptions
    messages = make(topics.root)
    count = len(messages)
    scans = sum(topic.endswith("/scan") for topic, _ in messages)
    rows = scans + 2 * (count - scans)  # a reading stores one row per metric
    publish_rate = prepublish(broker.url, messages)
    say(f"  published {count} while offline ({publish_rate:,.0f} msgs/s); gateway drains")
    gw = Gateway(site, BrokerUrl.parse(broker.url), data, root=topics.root, client_id=client_id)
    reader = SqliteStore(gw.store_path)  # opened before the worker writes: no lock to wait for
    stored = 0
    started = time.perf_counter()
    gw.start()
    try:
        while time.perf_counter() < started + DRAIN_TIMEOUT:
            stored = reader.count("scans") + reader.count("readings")
            if stored >= rows:
                break
            time.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - started
    finally:
        reader.close()
        gw.stop()
        forget_session(broker.url, client_id)
    counters = gw.counters
    keys = ("received", "scan", "reading", "duplicates", "rejected", "dropped_publications")
    note = "counters at stop: " + ", ".join(f"{k} {counters.get(k, 0)}" for k in keys)
    done = count if stored >= rows else stored * count // rows
    return Drain(done, count, elapsed), note


# -- 1b. a burst by the day's duty manager: per-scan cost must not grow with the day -----------


def duty_manager_badge(site: Site) -> tuple[str, tuple[str, str]]:
    """The day's duty manager (by the roster, now) and one of their credentials."""
    now = dt.datetime.now(site.tz)
    manager = Roster(site, []).manager(site.calendar.day_of(now), now)
    for key, person in site.credentials.items():
        if person.id == manager:
            method, _, credential = key.partition(":")
            return manager, (method, credential)
    raise RuntimeError(f"the duty manager {manager!r} has no credential in the site file")


def burst_messages(site: Site, root: str, count: int) -> list[tuple[str, bytes]]:
    """`count` scans, all by the day's duty manager, over every reader, one per millisecond."""
    topics = Topics(root, site.id)
    readers = sorted(site.reader_post)
    _, badge = duty_manager_badge(site)
    base = dt.datetime.now(site.tz).replace(microsecond=0) - dt.timedelta(seconds=count // 1000)
    return [
        (
            f"{topics.base}/reader/{readers[i % len(readers)]}/scan",
            scan_body(badge, base + dt.timedelta(milliseconds=i), i),
        )
        for i in range(count)
    ]


def burst_gateway(
    broker: Mosquitto, site: Site, count: int, data: Path, root: str
) -> tuple[Drain, str]:
    """The gateway drains `count` scans by the duty manager into a fresh store."""
    return drain_gateway(broker, site, data, root, lambda r: burst_messages(site, r, count))


# -- 2b. a forwarder that cannot keep up ------------------------------------------------------


class SlowForwarder(Forwarder):
    """Forwards every stored scan to nowhere at 100 rows/s: at 1,000 scans/s it falls behind
    at once and stays behind, committing its cursor into the same store as the worker."""

    batch_size = 50
    PAUSE = 0.5  # seconds per batch

    def fetch(self, store: SqliteStore, after: int, limit: int) -> list[tuple[int, Any]]:
        """Scan ids above the cursor (through a connection of its own: a read beside the writer)."""
        db = sqlite3.connect(store.path)
        try:
            rows = db.execute(
                "SELECT id FROM scans WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            ).fetchall()
        finally:
            db.close()
        return [(int(r[0]), int(r[0])) for r in rows]

    def deliver(self, rows: list[Any]) -> None:
        """A slow outside system."""
        time.sleep(self.PAUSE)


# -- 4. a large site ---------------------------------------------------------------------------

LARGE = {"readers": 10_000, "equipment": 2_000, "metrics": 5, "people": 500}


def large_site_file(folder: Path) -> Path:
    """The example site grown to 10,000 readers, 2,000 equipment × 5 metrics and 500 people."""
    import yaml

    config = yaml.safe_load(SITE_FILE.read_text(encoding="utf-8"))
    people = list(config["people"])
    for i in range(LARGE["people"] - len(people)):
        roles = ["engineer_strong"] if i % 10 == 0 else ["security"]
        people.append(
            {"id": f"p{i}", "name": f"人员{i}", "roles": roles, "credentials": [f"nfc:05{i:012X}"]}
        )
    config["people"] = people
    posts = list(config["posts"])
    readers_left = LARGE["readers"] - sum(len(p["readers"]) for p in posts)
    per_post = 10
    for i in range(readers_left // per_post):
        posts.append(
            {
                "id": f"post-{i}",
                "name": f"岗位{i}",
                "kind": "other",
                "readers": [f"r{i}-{k}" for k in range(per_post)],
            }
        )
    config["posts"] = posts
    equipment = []
    for i in range(LARGE["equipment"]):
        metrics = {
            f"m{k}": {"unit": "x", "min": 0, "max": 100, "for_seconds": 60}
            for k in range(LARGE["metrics"])
        }
        equipment.append(
            {
                "id": f"eq-{i}",
                "name": f"设备{i}",
                "post": posts[len(config["posts"]) - 1 - i % 100]["id"],
                "stale_after_seconds": 600,
                "metrics": metrics,
            }
        )
    config["equipment"] = equipment
    path = folder / "large.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def large_site_run(count: int, site_file: Path) -> dict[str, Any]:
    """Load the large site and run `count` messages through the worker (the in-memory link twin:
    no broker, so the figure is the gateway's own memory); peak RSS of this process."""
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        site = load_site(site_file)
        loaded = time.perf_counter() - started
        topics = Topics("bench-e", site.id)
        readers = sorted(site.reader_post)
        people = badges(site)
        equipment = sorted(site.equipment)
        now = dt.datetime.now(dt.UTC)
        link = MemoryLink()
        store = SqliteStore(folder / "large.sqlite")
        worker = Worker(site, store, link, topics, lambda: dt.datetime.now(dt.UTC), now)
        base = now - dt.timedelta(seconds=count // 1000)
        batch: list[Message] = []
        started = time.perf_counter()
        for i in range(count):
            ts = base + dt.timedelta(milliseconds=i)
            if i % 10 < SCANS_PER_TEN:
                topic = f"{topics.base}/reader/{readers[i * 7919 % len(readers)]}/scan"
                body = scan_body(people[i % len(people)], ts, i)
            else:
                eq = equipment[i * 7919 % len(equipment)]
                values = {f"m{k}": float(i % 90) for k in range(LARGE["metrics"])}
                topic = f"{topics.base}/equipment/{eq}/reading"
                body = payloads.reading(values, ts=ts, seq=i)
            batch.append(Message(topic, body, dt.datetime.now(dt.UTC), 1, False, i + 1))
            if len(batch) == 500:
                worker.step(batch)
                link.acked.clear()
                link.sent.clear()
                batch = []
        if batch:
            worker.step(batch)
        ran = time.perf_counter() - started
        stored = store.count("scans") + store.count("readings")
        store.close()
    peak_kib = peak_rss_kib()
    return {
        "load_seconds": loaded,
        "rate": count / ran,
        "peak_mb": peak_kib / 1024,
        "stored": stored,
        "messages": count,
    }


def peak_rss_kib() -> int:
    """This process's peak resident memory, KiB. Linux keeps `ru_maxrss` across `execve`, so a
    process started from a big one (the bench, after the replay phase) would report its
    parent's size: the peak of its own memory map (`VmHWM`) is read where there is one."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def run_large_site(count: int) -> dict[str, Any]:
    """The large site in a process of its own, so its peak RSS is its own (the site file is
    written here: making it is the bench's work, not the gateway's)."""
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        site_file = large_site_file(Path(tmp))
        cmd = [sys.executable, "-m", "tests.bench", "--large-site", str(count), str(site_file)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"large-site process failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- 2. scan → answer latency ---------------------------------------------------------------


@dataclass
class Latency:
    """What the latency process measured, in milliseconds."""

    sent: int
    answered: int
    p50: float
    p99: float
    max: float
    send_rate: float
    not_ok: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Latency:
        """Read the latency process's result line."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def latency_client(spec: dict[str, Any]) -> Latency:
    """Publish scans at `rate` for `seconds`; time each until its answer (or echo) comes back.

    Runs in its own process (`--latency-client`), so neither the gateway nor the bench's own
    threads share its interpreter. Send and receive times are on one perf_counter.
    """
    host, port = spec["host"], int(spec["port"])
    base, readers, mode = str(spec["base"]), list(spec["readers"]), str(spec["mode"])
    people = [(str(m), str(c)) for m, c in spec["badges"]]
    rate, total = float(spec["rate"]), int(float(spec["rate"]) * float(spec["seconds"]))
    sent: dict[tuple[str, int], float] = {}
    back: dict[tuple[str, int], float] = {}
    not_ok = [0]
    lock = threading.Lock()
    all_back = threading.Event()
    subacked: queue.Queue[int] = queue.Queue()

    def on_message(_c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        body = json.loads(m.payload)
        key = (m.topic.split("/")[-2], int(body["seq"]))
        if mode == "ack" and body.get("ok") is not True:
            not_ok[0] += 1
        with lock:
            back.setdefault(key, now)
            if len(back) >= total:
                all_back.set()

    def on_subscribe(_c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        subacked.put(mid)

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"bench-lat-{run_id()}",
        protocol=mqtt.MQTTv311,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect(host, port, keepalive=30)
    # One connection stands for many readers: without TCP_NODELAY, Nagle's algorithm and the
    # peer's delayed ACK would bunch its scans into ~40 ms bursts and time this process instead.
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    try:
        suffix = "ack" if mode == "ack" else "scan"
        _, mid = client.subscribe(f"{base}/reader/+/{suffix}", qos=1)
        if subacked.get(timeout=10) != mid:
            raise RuntimeError("unexpected SUBACK")
        t0 = time.perf_counter() + 0.2
        i = 0
        while i < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            while i < due:
                reader = readers[i % len(readers)]
                ts = dt.datetime.now(dt.UTC)
                body = scan_body(people[i // len(readers) % len(people)], ts, i)
                with lock:
                    sent[(reader, i)] = time.perf_counter()
                client.publish(f"{base}/reader/{reader}/scan", body, qos=1)
                i += 1
            time.sleep(0.0005)
        send_rate = total / (time.perf_counter() - t0)
        all_back.wait(ANSWER_WAIT)
    finally:
        client.disconnect()
        client.loop_stop()
    with lock:
        millis = sorted((back[k] - sent[k]) * 1000 for k in back if k in sent)
    return Latency(
        sent=total,
        answered=len(millis),
        p50=percentile(millis, 50),
        p99=percentile(millis, 99),
        max=millis[-1] if millis else math.nan,
        send_rate=send_rate,
        not_ok=not_ok[0],
    )


def run_latency_client(
    broker: Mosquitto, site: Site, base: str, mode: str, args: argparse.Namespace
) -> Latency:
    """Start the latency process and read its one-line JSON result."""
    spec = {
        "host": broker.host,
        "port": broker.port,
        "base": base,
        "readers": sorted(site.reader_post),
        "badges": badges(site),
        "mode": mode,
        "rate": args.rate,
        "seconds": args.seconds,
    }
    cmd = [sys.executable, "-m", "tests.bench", "--latency-client", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=args.seconds + CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"latency process failed ({proc.returncode}):\n{err[-2000:]}")
    return Latency.from_json(json.loads(out.strip().splitlines()[-1]))


def latency_echo(broker: Mosquitto, site: Site, args: argparse.Namespace) -> Latency:
    """Baseline: the scans go through the bare broker straight back to a plain subscriber."""
    return run_latency_client(broker, site, Topics("bench-c", site.id).base, "echo", args)


def latency_gateway(
    broker: Mosquitto,
    site: Site,
    data: Path,
    args: argparse.Namespace,
    influx: InfluxSettings | None = None,
    root: str | None = None,
    slow_forwarder: bool = False,
) -> tuple[Latency, str]:
    """The gateway receives, stores, commits, acknowledges and answers each scan (with a
    forwarder that cannot keep up, if `slow_forwarder`)."""
    topics = Topics(root or ("bench-d" if influx is None else "bench-i"), site.id)
    client_id = f"bench-gw-{run_id()}"
    gw = Gateway(
        site,
        BrokerUrl.parse(broker.url),
        data,
        root=topics.root,
        client_id=client_id,
        influx=influx,
    )
    slow = SlowForwarder(gw.store_path, "bench-slow") if slow_forwarder else None
    if slow is not None:
        gw.forwarders.append(slow)
    gw.start()
    try:
        if not gw.link.connected.wait(10):
            raise TimeoutError(f"the gateway did not connect to {broker.url} in 10 s")
        wait_online(broker.url, gw.topics)
        result = run_latency_client(broker, site, topics.base, "ack", args)
    finally:
        gw.stop()
    forget_session(broker.url, client_id)
    counters = gw.counters
    keys = ("scan", "duplicates", "dropped_publications")
    note = ", ".join(f"{k} {counters.get(k, 0)}" for k in keys)
    if slow is not None:
        behind = counters.get("scan", 0) - slow.counters["delivered"]
        note += f"; slow forwarder delivered {slow.counters['delivered']}, {behind} behind"
    return result, note


# -- 3. replay throughput -------------------------------------------------------------------


def synthetic_events(site: Site, count: int, seed: int = 7) -> list[str]:
    """`count` JSON lines over two simulated days: scans, readings and device statuses.

    Mostly known credentials with a few unknown ones (alerts), readings of every declared
    metric inside their limits, and now and then a device going offline and back (alerts).
    """
    rng = random.Random(seed)
    base = f"estate/{site.id}"
    start = dt.datetime(2026, 11, 27, 8, 30, tzinfo=site.tz)
    step = dt.timedelta(days=2) / count
    readers = sorted(site.reader_post)
    devices = sorted(site.devices)
    known = sorted(site.credentials)
    seq: dict[str, int] = {}
    offline: set[str] = set()
    lines: list[str] = []
    for i in range(count):
        ts = (start + step * i).replace(microsecond=0)
        pick = rng.random()
        record: dict[str, Any]
        if pick < 0.45:
            reader = rng.choice(readers)
            seq[reader] = seq.get(reader, 0) + 1
            method, _, credential = rng.choice(known).partition(":")
            if rng.random() < 0.01:
                method, credential = "nfc", f"04FF{rng.randrange(16**10):010X}"
            scan = payloads.scan_body(credential, _method(method), ts=ts, seq=seq[reader])
            record = {"topic": f"{base}/reader/{reader}/scan", "payload": scan}
        elif pick < 0.98:
            equipment = rng.choice(sorted(site.equipment))
            seq[equipment] = seq.get(equipment, 0) + 1
            values: dict[str, float | bool] = {}
            for name, metric in site.equipment[equipment].metrics.items():
                if metric.expect is not None:
                    values[name] = metric.expect
                else:
                    low = metric.min if metric.min is not None else 0.0
                    high = metric.max if metric.max is not None else low + 100.0
                    values[name] = round(rng.uniform(low, high), 1)
            reading = payloads.reading_body(values, ts=ts, seq=seq[equipment])
            record = {"topic": f"{base}/equipment/{equipment}/reading", "payload": reading}
        else:
            device = rng.choice(devices)
            state: payloads.State = "online" if device in offline else "offline"
            offline.symmetric_difference_update({device})
            status = payloads.status(state).decode()
            record = {"topic": f"{base}/device/{device}/status", "payload": status}
            record["received_at"] = payloads.timestamp(ts)
        lines.append(json.dumps(record, ensure_ascii=False))
    return lines


class Budget:
    """Passes records on until a time budget is spent, counting them (bounds a slow replay)."""

    def __init__(self, records: Iterable[Recorded], seconds: float) -> None:
        self.records = records
        self.seconds = seconds
        self.taken = 0
        self.cut = False

    def __iter__(self) -> Iterator[Recorded]:
        deadline = time.perf_counter() + self.seconds
        taken = 0  # a local: counted on the object, each record cost a timed attribute write
        try:
            for record in self.records:  # one at a time: a list made ahead would go cold
                if not taken % 1000 and time.perf_counter() > deadline:
                    self.cut = True
                    return
                taken += 1
                yield record
        finally:
            self.taken = taken


@dataclass
class ReplaySpeed:
    """Replay against read+decode over the same lines: the best of the rounds run, and each."""

    replay_rate: float
    decode_rate: float
    lines: int  # lines the replay got through (fewer than all when its budget ran out)
    cut: bool
    transitions: int
    rounds: list[tuple[float, float]] = field(default_factory=list)  # (decode, replay) each


REPLAY_ROUNDS = 5  # about 2.5 s each; on this shared machine rounds vary by a fifth or more


def replay_speed(
    site: Site, lines: list[str], budget: float, rounds: int = REPLAY_ROUNDS
) -> ReplaySpeed:
    """Time read+decode of every line, then `replay` of as many lines as `budget` seconds
    allow, `rounds` times in turn; the best of each counts, as `timeit` takes its best: this
    machine's neighbours only ever slow a round down (the rounds are printed too)."""
    speed = ReplaySpeed(0.0, 0.0, 0, False, 0)
    for _ in range(rounds):
        decoder = Decoder(site, Topics("estate", site.id))
        started = time.perf_counter()
        for rec in read_events(lines, site.tz):
            at = rec.received_at or dt.datetime.now(dt.UTC)
            # As replay decodes: the payload object the line was read into, else its bytes.
            if decoder.decode_parsed(Message(rec.topic, b"", at, qos=1), rec) is None:
                decoder.decode(Message(rec.topic, rec.payload, at, qos=1))
        decode_rate = len(lines) / (time.perf_counter() - started)
        records = Budget(read_events(lines, site.tz), budget)
        started = time.perf_counter()
        transitions = sum(1 for _ in replay(site, records))
        replay_rate = records.taken / (time.perf_counter() - started)
        speed.rounds.append((decode_rate, replay_rate))
        speed.decode_rate = max(speed.decode_rate, decode_rate)
        speed.replay_rate = max(speed.replay_rate, replay_rate)
        speed.lines, speed.cut, speed.transitions = records.taken, records.cut, transitions
        if records.cut:
            break  # a replay this slow says enough in one round
    return speed


# -- the run --------------------------------------------------------------------------------


def machine() -> str:
    """Cores, Python and Mosquitto versions, kernel."""
    binary = find_mosquitto()
    version = "not found"
    if binary:
        probe = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10)
        version = (probe.stdout or probe.stderr).splitlines()[0].replace("mosquitto ", "")
    return (
        f"nproc {os.cpu_count()}, Python {platform.python_version()}, mosquitto {version}, "
        f"{platform.system()} {platform.release()} {platform.machine()}"
    )


def fmt(value: float, digits: int = 0) -> str:
    """A figure for the table; n/a when missing."""
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def show(lat: Latency) -> str:
    """One line of latency figures."""
    text = (
        f"p50 {lat.p50:.2f} ms, p99 {lat.p99:.2f} ms, max {lat.max:.2f} ms; "
        f"{lat.answered}/{lat.sent} back, sent at {lat.send_rate:,.0f}/s"
    )
    if lat.answered < lat.sent:
        text += (
            f"; {lat.sent - lat.answered} NOT BACK within {ANSWER_WAIT:g} s (not in the figures)"
        )
    if lat.not_ok:
        text += f"; {lat.not_ok} answers said ok=false (!)"
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the three benchmarks on one private broker and print the table."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="ingest messages (N)")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency scans per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run length")
    parser.add_argument("--lines", type=int, default=100_000, help="replay events")
    parser.add_argument(
        "--burst", default="3000,10000", help="duty-manager bursts, scans each (comma-separated)"
    )
    parser.add_argument("--large", type=int, default=20_000, help="messages on the large site")
    parser.add_argument("--latency-client", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--large-site", nargs=2, metavar=("N", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.latency_client:
        result = latency_client(json.loads(args.latency_client))
        print(json.dumps(result.__dict__))
        return 0
    if args.large_site:
        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(large_site_run(int(args.large_site[0]), Path(args.large_site[1]))))
        return 0
    bursts = [int(n) for n in args.burst.split(",") if n.strip()]

    # The gateway logs every connect and disconnect, and the bench stops it on purpose.
    logging.basicConfig(level=logging.ERROR)
    site = load_site(SITE_FILE)
    bench_started = time.perf_counter()
    say(f"machine: {machine()}")
    with Mosquitto() as broker, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        say(f"broker: private Mosquitto on {broker.url}")
        say(f"1. ingest: {args.messages} QoS 1 messages pre-published into an offline session")
        raw = ingest_raw(broker, site, args.messages)
        say(f"  raw paho consumer: {fmt(raw.rate())} msgs/s ({raw.describe()})")
        gw, gw_note = ingest_gateway(broker, site, args.messages, Path(tmp) / "ingest")
        say(f"  gateway: {fmt(gw.rate())} msgs/s ({gw.describe()}; {gw_note})")

        manager, _ = duty_manager_badge(site)
        burst_runs: list[tuple[int, Drain]] = []
        for n, size in enumerate(bursts):
            say(f"1b. burst: {size} scans all by the day's duty manager ({manager}), fresh store")
            drain, note = burst_gateway(
                broker, site, size, Path(tmp) / f"burst-{n}", f"bench-burst{n}"
            )
            say(f"  gateway: {fmt(drain.rate())} scans/s ({drain.describe()}; {note})")
            burst_runs.append((size, drain))

        say(f"2. scan→answer latency: {args.rate:g} scans/s for {args.seconds:g} s")
        echo = latency_echo(broker, site, args)
        say(f"  raw broker echo: {show(echo)}")
        lat, lat_note = latency_gateway(broker, site, Path(tmp) / "latency", args)
        say(f"  gateway answers: {show(lat)} ({lat_note})")
        with Influxd() as influxd, V2Adapter(influxd) as adapter:
            influxd.create_database("latency")
            up = InfluxSettings(adapter.url, TOKEN, "patrol", "latency/autogen")
            lat_up, _ = latency_gateway(broker, site, Path(tmp) / "latency-up", args, up)
        say(f"  gateway answers, --influx with InfluxDB up: {show(lat_up)}")
        # --influx at a port where nothing listens: InfluxDB down for the whole run.
        down = InfluxSettings(f"http://127.0.0.1:{free_port()}", "u:p", "patrol", "x/autogen")
        lat_down, _ = latency_gateway(broker, site, Path(tmp) / "latency-down", args, down)
        say(f"  gateway answers, --influx with InfluxDB down: {show(lat_down)}")
        say("4. forwarding: a 30-minute backlog at the demo's rate, through the v2 stand-in")
        fwd = forwarding(site, Path(tmp))
        say(
            f"  {fwd.rows} rows ({fwd.demo_rate:g} rows/s live): drained in "
            f"{fmt(fwd.drain_seconds, 2)} s = {fmt(fwd.forwarder_rate)} lines/s; bare client "
            f"{fmt(fwd.bare_rate)} lines/s; {fmt(fwd.forwarder_rate / fwd.demo_rate)}x live rate"
        )
        slow, slow_note = latency_gateway(
            broker, site, Path(tmp) / "latency-slow", args, root="bench-f", slow_forwarder=True
        )
        say(f"  gateway answers, a forwarder backlogged: {show(slow)} ({slow_note})")

    say(f"3. replay: {args.lines} synthetic lines over two simulated days, {REPLAY_ROUNDS} rounds")
    speed = replay_speed(site, synthetic_events(site, args.lines), REPLAY_BUDGET)
    cut = f", CUT after {speed.lines} lines ({REPLAY_BUDGET:g} s budget)" if speed.cut else ""
    say(
        f"  read+decode: {fmt(speed.decode_rate)} events/s; replay: {fmt(speed.replay_rate)} "
        f"events/s ({speed.transitions} alert transitions{cut}); the best of "
        + "; ".join(f"{fmt(d)} / {fmt(r)}" for d, r in speed.rounds)
    )

    say(f"4. large site: {LARGE}, {args.large} messages through the worker, own process")
    large = run_large_site(args.large)
    say(
        f"  loaded in {large['load_seconds']:.1f} s; {fmt(large['rate'])} msgs/s; "
        f"peak RSS {large['peak_mb']:.0f} MB; {large['stored']} rows stored"
    )

    rows = [
        ("ingest (msgs/s)", gw.rate(), raw.rate(), "raw paho consumer, same N", 0),
        *[
            (f"DM burst {size:,} (msgs/s)", d.rate(), raw.rate(), "raw paho consumer", 0)
            for size, d in burst_runs
        ],
        ("scan→answer p50 (ms)", lat.p50, echo.p50, "raw broker echo, same rate", 2),
        ("scan→answer p99 (ms)", lat.p99, echo.p99, "raw broker echo, same rate", 2),
        ("scan→answer max (ms)", lat.max, echo.max, "raw broker echo, same rate", 2),
        ("answer p99, Influx up", lat_up.p99, lat.p99, "the gateway without --influx", 2),
        ("answer p99, Influx down", lat_down.p99, lat_up.p99, "--influx, InfluxDB up", 2),
        ("forward (lines/s)", fwd.forwarder_rate, fwd.bare_rate, "bare influxdb-client", 0),
        ("p99, fwd backlog (ms)", slow.p99, echo.p99, "raw broker echo, same rate", 2),
        ("replay (events/s)", speed.replay_rate, speed.decode_rate, "read+decode, same lines", 0),
        ("large site RSS (MB)", large["peak_mb"], 150.0, "the 150 MB budget", 0),
    ]
    print()
    print(f"{'figure':<22} {'gateway':>10} {'baseline':>10} {'ratio':>9}  baseline")
    for name, value, base, what, digits in rows:
        print(
            f"{name:<22} {fmt(value, digits):>10} {fmt(base, digits):>10} "
            f"{fmt(ratio(value, base), 2):>9}  {what}"
        )
    print(
        "ratio = gateway / baseline: for throughput lower is slower, for latency higher is slower"
    )
    if gw.done < gw.expected:
        print(f"! ingest: {gw.describe()}; the rate is over what was committed by then")
    if lat.answered < lat.sent:
        print(f"! latency: {lat.sent - lat.answered} scans got no answer, left out of the figures")
    if slow.answered < slow.sent:
        print(f"! latency (backlog): {slow.sent - slow.answered} scans got no answer")
    for size, d in burst_runs:
        if d.done < d.expected:
            print(f"! burst {size}: {d.describe()}")
    if len(burst_runs) >= 2 and burst_runs[0][1].rate() > 0:
        (small, first), (big, last) = burst_runs[0], burst_runs[-1]
        print(
            f"duty-manager burst: per-scan cost at {big:,} / at {small:,} = "
            f"{first.rate() / last.rate():.2f} (1.00 = flat, cost does not grow with the day)"
        )
    if speed.cut:
        print(f"! replay: cut after {speed.lines} of {args.lines} lines ({REPLAY_BUDGET:g} s)")
    print(
        f"ingest: N={args.messages} (7 scans : 3 readings), pre-published while the consumer was "
        "offline; timed from connect to the last message received (raw) / committed (gateway)"
    )
    print(f"machine: {machine()}; one run, {time.perf_counter() - bench_started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
