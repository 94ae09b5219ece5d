"""Notifications against real receivers on loopback (§9): apprise `json://` to an HTTP server,
`mailto://` to an SMTP server (aiosmtpd), through the real gateway and a real Mosquitto."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.notify import outbox
from gateway.store.sqlite import SqliteStore
from tests.support.gateway import (
    GatewayProcess,
    count_rows,
    gateway_command,
    running_gateway,
    unique_root,
    wait_until,
)
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient
from tests.support.receivers import JsonReceiver, SmtpReceiver

pytestmark = pytest.mark.integration

SITE = """
site: {{id: nt, name: 通知测试项目}}
duty: {{min_patrol_hours: 0}}
people:
  - {{id: zhang, name: 张伟, roles: [duty_manager], notify: ["{json}", "{mail}"]}}
posts:
  - {{id: monitoring-center, name: 监控中心, readers: [mc-1]}}
  - {{id: gate, name: 东门岗, readers: [gate-1, gate-2]}}
roster:
  weekly: {{mon: zhang, tue: zhang, wed: zhang, thu: zhang, fri: zhang, sat: zhang, sun: zhang}}
notify:
  public_url: "http://duty.example.com"
  escalation: [{{after_minutes: 0, to: [on_duty]}}]
"""
READERS = ("gate-1", "gate-2", "mc-1")
SETTLE = 1.5  # seconds to watch for a duplicate after the last expected message


@pytest.fixture
def receivers() -> Iterator[tuple[JsonReceiver, SmtpReceiver]]:
    hook, mail = JsonReceiver(), SmtpReceiver()
    mail.start()
    try:
        yield hook, mail
    finally:
        hook.down()
        mail.stop()


def site_file(tmp_path: Path, hook: JsonReceiver, mail: SmtpReceiver) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(json=hook.url, mail=mail.url("zhang@example.com")), "utf-8")
    return path


def unknown_card(broker: str, root: str, reader: str) -> None:
    with MqttClient(broker) as client:
        client.connect()
        client.publish(
            f"{root}/nt/reader/{reader}/scan", f'{{"credential": "X-{reader}", "method": "qr"}}'
        )


def health(data: Path) -> str:
    """What `patrol-gateway health` prints (it exits 0: the gateway itself runs)."""
    done = subprocess.run(
        [*gateway_command(), "health", "--data", str(data)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def failed_attempts(store: Path) -> int:
    with closing(SqliteStore(store, readonly=True)) as db:
        return sum(1 for a in outbox.attempts(db) if not a["ok"])


def test_receivers_get_each_notification_once_and_an_outage_blocks_only_its_channel(
    mosquitto: Mosquitto, tmp_path: Path, receivers: tuple[JsonReceiver, SmtpReceiver]
) -> None:
    """Each alert reaches the HTTP hook and the mailbox once; while the hook is down the mail
    still goes, the hook's messages are retried (every attempt recorded, the URL masked) and
    arrive once each when it is back."""
    hook, mail = receivers
    hook.up()
    root = unique_root()
    with running_gateway(
        mosquitto.url, tmp_path / "data", root=root, site_file=site_file(tmp_path, hook, mail)
    ) as gateway:
        gateway.notifier.backoff_first = 0.3
        gateway.notifier.backoff_max = 0.6
        unknown_card(mosquitto.url, root, READERS[0])
        wait_until(lambda: (hook.count(), mail.count()), lambda c: c == (1, 1), 10, "first")
        assert "未登记的卡" in hook.received[0]["title"]
        assert "通知测试项目" in hook.received[0]["message"]
        hook.down()
        for reader in READERS[1:]:
            unknown_card(mosquitto.url, root, reader)
        wait_until(mail.count, lambda n: n == 3, 10, "mail during the hook's outage")
        wait_until(lambda: failed_attempts(gateway.store_path), lambda n: n >= 2, 10, "retries")
        assert hook.count() == 1
        masked = f"json://127.0.0.1:{hook.port}/hook"
        wait_until(
            lambda: health(tmp_path / "data"), lambda out: masked in out, 15, "health says it"
        )
        hook.up()
        wait_until(hook.count, lambda n: n == 3, 15, "the hook's backlog")
        time.sleep(SETTLE)
        assert (hook.count(), mail.count()) == (3, 3)
        titles = sorted(m["title"] for m in hook.received)
        assert all(any(r in t for t in titles) for r in READERS)
        with closing(SqliteStore(gateway.store_path, readonly=True)) as db:
            shown = {a["url"] for a in outbox.attempts(db)}
        assert masked in shown


def test_kill_9_between_commit_and_send_then_restart_sends_each_once(
    fresh_mosquitto: Mosquitto, tmp_path: Path, receivers: tuple[JsonReceiver, SmtpReceiver]
) -> None:
    """The gateway commits three notifications and is killed before the (unreachable) hook
    took them; after the restart each arrives once, and none is decided again."""
    hook, mail = receivers
    root = unique_root()
    process = GatewayProcess(
        fresh_mosquitto.url,
        tmp_path / "data",
        root=root,
        site_file=site_file(tmp_path, hook, mail),
        extra_args=["--notify-backoff", "0.3"],
    )
    with process:
        for reader in READERS:
            unknown_card(fresh_mosquitto.url, root, reader)
        store = process.store_path
        wait_until(lambda: count_rows(store, "notifications"), lambda n: n == 6, 10, "decided")
        wait_until(lambda: failed_attempts(store), lambda n: n >= 1, 10, "a refused send")
        process.kill()
        assert hook.count() == 0
        hook.up()
        process.start()
        wait_until(hook.count, lambda n: n == 3, 15, "the hook's three notifications")
        time.sleep(SETTLE)
        assert hook.count() == 3
        assert mail.count() == 3
        assert count_rows(store, "notifications") == 6
