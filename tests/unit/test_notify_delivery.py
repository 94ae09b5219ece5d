"""Delivery of notifications (§9): rate per URL, digests, criticals first, retries, attempts.

The notifier runs here without its thread: a fake clock and a recording `send` stand in for
time and the channel (the live tests use real receivers: tests/integration/test_notify_live.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib

from gateway.alerts.record import Alert
from gateway.config import Site, load_site
from gateway.notify import outbox
from gateway.notify.channels import SendResult
from gateway.notify.deliver import Notifier
from gateway.notify.policy import Notice
from gateway.store.sqlite import SqliteStore
from tests.support.scenarios import OWN

ROBOT = "dingtalk://ROBOTSECRET/"
MAIL = "mailto://ops:MAILPASS@example.com"
T0 = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)


@dataclasses.dataclass
class Receiver:
    """Records what was sent; refuses while `down` holds the URL."""

    now: float = 1_800_000_000.0
    sent: list[tuple[float, str, str, str]] = dataclasses.field(default_factory=list)
    down: set[str] = dataclasses.field(default_factory=set)

    def clock(self) -> float:
        return self.now

    def send(self, url: str, title: str, body: str) -> SendResult:
        if url in self.down:
            return SendResult(False, "connection refused")
        self.sent.append((self.now, url, title, body))
        return SendResult(True, "sent")


def site() -> Site:
    return load_site(OWN / "notify" / "site.yaml")


def notice(n: int, severity: str, url: str = ROBOT, people: tuple[str, ...] = ("zhang",)) -> Notice:
    alert = Alert(
        id=f"a{n:03d}",
        site="nt",
        rule="device.offline",
        subject=f"dev-{n}",
        severity=severity,
        state="open",
        raised_at=T0,
        message=f"设备 dev-{n} 离线",
    )
    return Notice(alert, 0, 0, "raised", T0, url, people)


def setup(tmp_path: pathlib.Path, notices: list[Notice]) -> tuple[Notifier, Receiver]:
    path = tmp_path / "n.sqlite"
    store = SqliteStore(path)
    for n in notices:
        outbox.add(store, n, site().tz)
    store.commit()
    receiver = Receiver()
    notifier = Notifier(
        path, site(), receiver.clock, receiver.send, backoff_first=10, backoff_max=40
    )
    notifier.store = store
    return notifier, receiver


def pump(notifier: Notifier) -> None:
    """One pass of the forwarder's loop."""
    assert notifier.store is not None
    rows = notifier.fetch(notifier.store, 0, notifier.batch_size)
    if rows:
        notifier.deliver([row for _, row in rows])


def add(notifier: Notifier, notices: list[Notice]) -> None:
    assert notifier.store is not None
    for n in notices:
        outbox.add(notifier.store, n, site().tz)
    notifier.store.commit()


def test_a_burst_to_one_robot_is_a_digest_within_the_rate_criticals_first(
    tmp_path: pathlib.Path,
) -> None:
    """50 alerts at once to one robot taking 20 a minute: never more than 20 messages in any
    60 s, every alert delivered once, the criticals alone and first, the rest in one digest;
    alerts arriving while the robot is saturated wait and go out merged, criticals leading."""
    burst = [notice(i, "critical" if i % 5 == 0 else "warning") for i in range(50)]
    notifier, receiver = setup(tmp_path, burst)
    pump(notifier)
    assert len(receiver.sent) == 20
    criticals = [f"a{i:03d}" for i in range(0, 50, 5)]
    firsts = receiver.sent[:10]
    assert [next(c for c in criticals if f"ack={c}&" in m[3]) for m in firsts] == criticals
    for i in range(50):
        assert sum(f"ack=a{i:03d}&" in m[3] for m in receiver.sent) == 1
    assert sum(f"ack=a{i:03d}&" in receiver.sent[19][3] for i in range(50)) == 31
    # Saturated: 30 s later three more, one of them critical, wait …
    receiver.now += 30
    add(notifier, [notice(100, "warning"), notice(101, "critical"), notice(102, "warning")])
    pump(notifier)
    assert len(receiver.sent) == 20
    # … and go out as one digest once the minute has passed, the critical first.
    receiver.now += 31
    pump(notifier)
    assert len(receiver.sent) == 21
    late = receiver.sent[20][3]
    assert late.index("dev-101") < late.index("dev-100") < late.index("dev-102")
    times = [s[0] for s in receiver.sent]
    assert all(sum(1 for u in times if t <= u < t + 60) <= 20 for t in times)
    store = notifier.store
    assert store is not None
    pending = store.connection.execute("SELECT count(*) FROM notifications WHERE status != 'sent'")
    assert pending.fetchone()[0] == 0


def test_warnings_never_take_the_last_message_of_a_minute_from_a_critical(
    tmp_path: pathlib.Path,
) -> None:
    """25 warnings fill a robot's minute but for one message; a critical that comes 10 s later
    goes out at once, alone, instead of waiting behind them."""
    notifier, receiver = setup(tmp_path, [notice(i, "warning") for i in range(25)])
    pump(notifier)
    assert len(receiver.sent) == 19
    receiver.now += 10
    add(notifier, [notice(90, "warning")])
    pump(notifier)
    assert len(receiver.sent) == 19  # the warning waits
    add(notifier, [notice(91, "critical")])
    pump(notifier)
    assert len(receiver.sent) == 20
    assert "ack=a091&" in receiver.sent[19][3] and "ack=a090&" not in receiver.sent[19][3]


def test_a_restarted_notifier_keeps_counting_the_minute(tmp_path: pathlib.Path) -> None:
    """A notifier restarted 20 s after 20 messages to a robot sends nothing more to it until
    the minute has passed: a restart does not reset the rate."""
    notifier, receiver = setup(tmp_path, [notice(i, "critical") for i in range(20)])
    pump(notifier)
    assert len(receiver.sent) == 20
    assert notifier.store is not None
    again = Notifier(notifier.store_path, site(), receiver.clock, receiver.send)
    again.store = notifier.store
    receiver.now += 20
    add(again, [notice(50, "critical")])
    pump(again)
    assert len(receiver.sent) == 20
    receiver.now += 41
    pump(again)
    assert len(receiver.sent) == 21


def test_a_failing_channel_is_retried_with_backoff_and_blocks_no_other(
    tmp_path: pathlib.Path,
) -> None:
    """The robot is down: e-mail still goes at once; the robot's message is retried after the
    backoff, counted as failing, every attempt recorded with the URL masked; when the robot is
    back it gets the message exactly once."""
    notifier, receiver = setup(tmp_path, [notice(1, "warning"), notice(2, "warning", MAIL)])
    receiver.down.add(ROBOT)
    pump(notifier)
    assert [s[1] for s in receiver.sent] == [MAIL]
    assert notifier.failing == {"dingtalk://R...T//": "connection refused"}
    receiver.now += 5  # within the backoff: not tried again
    pump(notifier)
    receiver.down.clear()
    receiver.now += 6
    pump(notifier)
    assert [s[1] for s in receiver.sent] == [MAIL, ROBOT]
    assert notifier.failing == {}
    pump(notifier)
    assert len(receiver.sent) == 2
    assert notifier.store is not None
    attempts = outbox.attempts(notifier.store)
    assert [(a["url"], a["ok"]) for a in reversed(attempts)] == [
        ("dingtalk://R...T//", False),
        ("mailto://ops:****@example.com/", True),
        ("dingtalk://R...T//", True),
    ]
    assert "ROBOTSECRET" not in str(attempts) and "MAILPASS" not in str(attempts)


def test_a_channel_refusing_for_24_hours_is_given_up_and_said(tmp_path: pathlib.Path) -> None:
    """Retried with a growing backoff (capped) until 24 h after the first attempt, then marked
    failed: not retried for ever, and not silently dropped."""
    notifier, receiver = setup(tmp_path, [notice(1, "critical")])
    receiver.down.add(ROBOT)
    tries = 0
    for _ in range(5000):
        pump(notifier)
        receiver.now += 40
        assert notifier.store is not None
        status = notifier.store.connection.execute(
            "SELECT status, attempts FROM notifications"
        ).fetchone()
        tries = status[1]
        if status[0] != "pending":
            break
    assert status[0] == "failed"
    assert 24 * 3600 / 40 - 5 <= tries <= 24 * 3600 / 40 + 5
    assert receiver.sent == []
