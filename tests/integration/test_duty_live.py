"""A simulated morning through the `patrol-gateway run` process on an accelerated clock, killed
and restarted around the 09:00 deadlines: each alert is raised and cleared exactly once (issue 3,
clauses 4.4 and 4.8)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from tests.support.gateway import GatewayProcess, unique_root
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient

SITE = """
site: {id: live, name: 测试小区, timezone: Asia/Shanghai, locale: zh-CN}
duty: {handover_post: mc}
people:
  - {id: ann, name: 安娜, roles: [duty_manager], credentials: ["qr:ANN"]}
  - {id: bob, name: 鲍勃, roles: [duty_manager], credentials: ["qr:BOB"]}
posts:
  - {id: mc, name: 监控中心, kind: monitoring_center, key: true, readers: [mc-1]}
  - {id: fd, name: 前台, kind: front_desk, key: true, readers: [fd-1]}
roster:
  weekly: {mon: ann, tue: bob, wed: ann, thu: bob, fri: ann, sat: bob, sun: ann}
"""
TZ = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 11, 24, 8, 20, tzinfo=TZ)  # Tuesday: bob's day, ann hands over
SPEED = 300.0  # five simulated minutes a real second


def test_morning_with_two_crashes(fresh_mosquitto: Mosquitto, tmp_path: Path) -> None:
    """duty.absent and handover.overdue fire once at 09:00 although the gateway died twice."""
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE, encoding="utf-8")
    anchor = time.time() + 1.0  # the simulated 08:20 is one real second from now
    root = unique_root()

    def sim_now() -> dt.datetime:
        return START + dt.timedelta(seconds=(time.time() - anchor) * SPEED)

    def wait_sim(local: str) -> None:
        target = dt.datetime.fromisoformat(f"2026-11-24T{local}+08:00")
        time.sleep(max(0.0, (target - sim_now()).total_seconds() / SPEED))

    gateway = GatewayProcess(
        fresh_mosquitto.url,
        tmp_path / "data",
        root=root,
        site_file=site_file,
        extra_args=[
            "--clock-start",
            START.isoformat(),
            "--clock-speed",
            str(SPEED),
            "--clock-anchor",
            str(anchor),
        ],
    )
    base = f"{root}/live"
    with MqttClient(fresh_mosquitto.url, timeout=20) as watcher:
        watcher.connect()
        watcher.subscribe(f"{base}/alert/+", f"{base}/patrol/status")

        def scan(reader: str, who: str, seq: int) -> None:
            body = {"credential": who, "method": "qr", "seq": seq, "ts": sim_now().isoformat()}
            watcher.publish(f"{base}/reader/{reader}/scan", json.dumps(body))

        gateway.start()
        wait_sim("08:25")
        scan("mc-1", "ANN", 1)  # the outgoing manager is at the handover post; bob is not
        wait_sim("08:45")
        gateway.kill()
        gateway.start()  # the 09:00 deadlines fall after this restart
        wait_sim("09:15")
        gateway.kill()
        gateway.start()  # ...and before this one: they must not fire again
        wait_sim("09:25")
        scan("mc-1", "BOB", 2)  # bob arrives: checks in and completes the handover
        wait_sim("09:45")
        gateway.stop()

        alerts = [m for m in watcher.received if "/alert/" in m.topic]
        opened = [(m.topic, m.json()) for m in alerts if m.payload]
        cleared = [m.topic for m in alerts if not m.payload]
        statuses = [m.json() for m in watcher.received if m.topic.endswith("patrol/status")]

    rules = sorted((body["rule"], body["subject"]) for _, body in opened)
    assert rules == [("duty.absent", "bob"), ("handover.overdue", "2026-11-24")], opened
    for _, body in opened:
        assert body["raised_at"] == "2026-11-24T09:00:00+08:00"
        assert body["state"] == "open" and body["site"] == "live"
    assert sorted(cleared) == sorted(topic for topic, _ in opened)  # each cleared once
    assert statuses[-1]["handover"]["state"] == "done"
    assert statuses[-1]["duty_manager"]["id"] == "bob"
    assert {p["post"] for p in statuses[-1]["key_posts"]["signed"]} == {"mc"}
    assert any(len(s["on_duty"]) == 2 for s in statuses)  # ann stayed on duty until 09:25 (4.9)
