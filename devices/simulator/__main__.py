"""`python -m devices.simulator`: the site simulator's command line (publishes to a broker).

It lives apart from the modules it runs, so `-m` executes each of them once: a module run as
`__main__` is a second copy of itself when something imports it by name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import threading
from pathlib import Path

from devices import simulator
from devices.simulator.engine import Simulator
from devices.simulator.faults import FAULT_NAMES, FaultConfig
from devices.simulator.publisher import Publisher, SimClock
from gateway.config import ConfigError, load_site
from gateway.timeutil import BadTime, iso, parse_instant


def main(argv: list[str] | None = None) -> int:
    """`python -m devices.simulator --config FILE --broker URL --speed 60 --seed 1`."""
    about = (simulator.__doc__ or "").split("\n")[0]
    ap = argparse.ArgumentParser("python -m devices.simulator", description=about)
    ap.add_argument("--config", type=Path, required=True, help="the site file (YAML)")
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://host:port")
    ap.add_argument("--root", default="estate", help="topic root")
    ap.add_argument("--speed", type=float, default=1.0, help="simulated minutes per real second")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", help="simulated start, ISO 8601 (default: now)")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    ap.add_argument("--faults", type=float, default=1.0, help="fault rate scale (0: none)")
    ap.add_argument(
        "--only", help=f"comma-separated faults to inject, of: {', '.join(FAULT_NAMES)}"
    )
    args = ap.parse_args(argv)
    try:
        site = load_site(args.config)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start = parse_instant(args.start, site.tz) if args.start else now
        only = [n.strip() for n in (args.only or "").split(",") if n.strip()]
        faults = (
            FaultConfig.only(*only, scale=args.faults) if only else FaultConfig(scale=args.faults)
        )
        sim = Simulator(site, args.seed, start, faults, root=args.root)
        clock = SimClock(start, args.speed)
        publisher = Publisher(sim, args.broker, clock)
        publisher.connect()
    except (ConfigError, BadTime, ValueError, OSError) as exc:
        print(f"模拟器无法启动 / simulator cannot start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    timer = threading.Timer(args.seconds, stop.set)
    if args.seconds > 0:
        timer.start()
    print(
        f"模拟 {site.id} 的设备 → {publisher.url}，每秒 {args.speed:g} 模拟分钟，Ctrl-C 停止。"
        f"时间戳快于真实时钟时，网关会标记 clock_skew。\nsimulating {site.id}'s devices → "
        f"{publisher.url} at {args.speed:g} simulated minutes per second; Ctrl-C stops. A ts "
        "ahead of the wall clock is flagged clock_skew by a gateway on the wall clock.",
        file=sys.stderr,
    )
    try:
        publisher.run(stop)
    finally:
        timer.cancel()
        publisher.close()
    print(
        f"已发布 {publisher.published} 条 / published {publisher.published} messages; "
        f"simulated time {iso(clock(), site.tz)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
