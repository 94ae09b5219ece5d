"""The ingest phase of `make bench` alone, alternating the bare consumer and the gateway with its
MQTT link in a child process and in-process, with each process's CPU per message.

    .venv/bin/python -m tests.bench_link --messages 20000 --pairs 3

Same load and timing as figure 1 of tests/bench.py (docs/benchmarks.md). The rate is timed
from `start()` (the link process's start-up included) to the last stored row. The CPU figures
run from the moment the link is connected (the drain starts then) to the last stored row, per
thread of the gateway (`/proc/self/task/TID/stat`; the bench's own polling thread left out)
and for the whole link process (`/proc/PID/stat`).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from gateway.app import Gateway
from gateway.config import load_site
from gateway.ingest.mqtt import BrokerUrl
from gateway.ingest.process import ProcessLink
from gateway.ingest.topics import Topics
from gateway.store.sqlite import SqliteStore
from tests.bench import (
    DRAIN_TIMEOUT,
    POLL_SECONDS,
    SITE_FILE,
    forget_session,
    ingest_messages,
    ingest_raw,
    prepublish,
    run_id,
    running_gateway,
)
from tests.support.mosquitto import Mosquitto

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a process, or of one of its threads (`/proc/.../stat`)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def gateway_threads() -> dict[str, float]:
    """CPU seconds of this process's threads by name (the bench's own main thread left out)."""
    me, main = os.getpid(), threading.main_thread()
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread is main or thread.native_id is None:
            continue
        name = "worker" if thread.name == "gateway-worker" else thread.name
        name = name if name in ("worker", "link-process", "link-send") else "other"
        out[name] = out.get(name, 0.0) + cpu_of(me, thread.native_id)
    return out


def drain(broker: Mosquitto, count: int, data: Path, process: bool) -> dict[str, float]:
    """The gateway drains `count` messages from its session; rate and CPU µs per message."""
    site = load_site(SITE_FILE)
    topics = Topics(f"bench-l{run_id()}", site.id)
    client_id = f"bench-link-{run_id()}"
    with running_gateway(site, broker.url, data, topics.root, client_id):
        pass  # creates the persistent session and its subscriptions
    messages = ingest_messages(site, topics.root, count)
    scans = sum(topic.endswith("/scan") for topic, _ in messages)
    rows = scans + 2 * (count - scans)
    prepublish(broker.url, messages)
    gw = Gateway(
        site,
        BrokerUrl.parse(broker.url),
        data,
        root=topics.root,
        client_id=client_id,
        link_process=process,
    )
    reader = SqliteStore(gw.store_path)
    started = time.perf_counter()
    gw.start()
    try:
        gw.link.connected.wait(10)
        connected = time.perf_counter() - started
        child = gw.link.pid if isinstance(gw.link, ProcessLink) else None
        threads0, child0 = gateway_threads(), cpu_of(child) if child else 0.0
        while time.perf_counter() < started + DRAIN_TIMEOUT:
            if reader.count("scans") + reader.count("readings") >= rows:
                break
            time.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - started
        threads = gateway_threads()
        child_cpu = cpu_of(child) - child0 if child else 0.0
    finally:
        reader.close()
        gw.stop()
        forget_session(broker.url, client_id)
    used = {k: (v - threads0.get(k, 0.0)) / count * 1e6 for k, v in threads.items()}
    return {
        "rate": count / elapsed,
        "connected_s": connected,
        "parent_us": sum(used.values()),
        "worker_us": used.get("worker", 0.0),
        "link_us": used.get("link-process", 0.0) + used.get("link-send", 0.0),
        "other_us": used.get("other", 0.0),
        "child_us": child_cpu / count * 1e6,
    }


def main() -> None:
    """Alternate raw, gateway (link process), gateway (in-process) `--pairs` times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--only-process", action="store_true", help="skip the in-process link")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the bench connects and stops on purpose
    site = load_site(SITE_FILE)
    with Mosquitto() as broker, tempfile.TemporaryDirectory(prefix="bench-") as folder:
        if True:
            for n in range(args.pairs):
                raw = ingest_raw(broker, site, args.messages)
                raw_rate = raw.done / raw.seconds
                for process in (True,) if args.only_process else (True, False):
                    data = Path(folder) / f"run{n}-{process}"
                    got = drain(broker, args.messages, data, process)
                    print(
                        f"pair {n + 1} {'process ' if process else 'in-proc '}"
                        f" raw {raw_rate:8,.0f}/s  gateway {got['rate']:8,.0f}/s"
                        f"  ratio {got['rate'] / raw_rate:.2f}"
                        f"  connected after {got['connected_s']:.2f} s;  CPU µs/msg: gateway"
                        f" {got['parent_us']:4.0f} (worker {got['worker_us']:3.0f},"
                        f" link threads {got['link_us']:3.0f}, other {got['other_us']:3.0f}),"
                        f" link process {got['child_us']:3.0f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
