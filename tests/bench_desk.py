"""`python -m tests.bench_desk`: scan answers while open pages follow the board (issue 11).

A private Mosquitto, the gateway in this process serving the API, and scans published at a
steady rate (default 1,000 a second for 5 s). The scan → answer latency is measured twice:
with no page open, then with 20 pages on the event stream. Nothing asserts on timing: the
figures are printed for people to read (docs/benchmarks.md), as a ratio of the two runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.api.server import serve_gateway
from gateway.api.tokens import issue_token
from gateway.app import Gateway
from gateway.config import load_site
from gateway.ingest.mqtt import BrokerUrl
from tests.bench import SITE_FILE, badges, percentile, scan_body
from tests.support.mosquitto import Mosquitto


class Page(threading.Thread):
    """One open page: reads the event stream and counts its events."""

    def __init__(self, url: str, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.request = urllib.request.Request(
            f"{url}/api/v1/events", headers={"Authorization": f"Bearer {token}"}
        )
        self.stop = stop
        self.events = 0

    def run(self) -> None:
        with urllib.request.urlopen(self.request, timeout=30) as stream:
            for line in stream:
                if line.startswith(b"event:"):
                    self.events += 1
                if self.stop.is_set():
                    return


def measure(broker: Mosquitto, root: str, rate: int, seconds: float) -> list[float]:
    """Publish scans at `rate` a second; the latency of each answer, in ms."""
    site = load_site(SITE_FILE)
    people = badges(site)
    sent: dict[int, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        seq = json.loads(m.payload)["seq"]
        with lock:
            if seq in sent:
                latencies.append((time.perf_counter() - sent.pop(seq)) * 1000)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-desk-{root}")
    client.on_message = on_message
    client.max_inflight_messages_set(2000)
    client.connect(broker.host, broker.port)
    client.subscribe(f"{root}/zcity/reader/+/ack", qos=1)
    client.loop_start()
    time.sleep(0.5)
    total = int(rate * seconds)
    start = time.perf_counter()
    base = dt.datetime.now(dt.UTC)
    seq0 = int(time.time() * 1000) % 1_000_000_000
    for i in range(total):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        seq = seq0 + i
        body = scan_body(people[i % len(people)], base + dt.timedelta(milliseconds=i), seq)
        with lock:
            sent[seq] = time.perf_counter()
        client.publish(f"{root}/zcity/reader/fd-1/scan", body, qos=1)
    deadline = time.monotonic() + 15
    while sent and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    if sent:
        print(f"  {len(sent)} of {total} scans unanswered after 15 s")
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000, help="scans a second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    site = load_site(SITE_FILE)
    with Mosquitto() as broker, tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        gateway = Gateway(site, BrokerUrl.parse(broker.url), data, root="bench")
        server = serve_gateway(gateway, data, "127.0.0.1", 0)
        gateway.start()
        gateway.link.connected.wait(10)
        token = issue_token(gateway.store_path, "chen-jie")
        try:
            quiet = measure(broker, "bench", args.rate, args.seconds)
            stop = threading.Event()
            pages = [Page(server.url, token, stop) for _ in range(args.pages)]
            for page in pages:
                page.start()
            time.sleep(1.0)
            busy = measure(broker, "bench", args.rate, args.seconds)
            stop.set()
            events = [p.events for p in pages]
        finally:
            server.stop()
            gateway.stop()
    for name, values in (("no page", quiet), (f"{args.pages} pages", busy)):
        if values:
            print(
                f"{name:>9}: {len(values)} answers, p50 {percentile(values, 50):.1f} ms,"
                f" p99 {percentile(values, 99):.1f} ms, max {values[-1]:.1f} ms"
            )
    if quiet and busy:
        ratio = percentile(busy, 99) / max(percentile(quiet, 99), 0.001)
        print(f"p99 with pages / without: {ratio:.2f}")
    print(f"events per page: min {min(events)}, max {max(events)}")


if __name__ == "__main__":
    main()
