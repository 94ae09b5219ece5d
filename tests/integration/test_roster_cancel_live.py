"""`patrol-gateway roster swap|cancel` (issue 8 item 11): a mistyped --data is refused, a swap
to the person already on duty is refused, and a swap can be cancelled before its day starts
(not after), through the running gateway's command channel."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.config import load_site
from tests.support.gateway import ZCITY, GatewayProcess, unique_root
from tests.support.live import cli, wait_healthy
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient, Received

# A Wednesday: wang-fang is rostered; the gateway's clock starts 150 s before its duty day
# (08:30 in Shanghai) and runs 6× as fast, so the day starts 25 s into the test.
DAY = dt.date(2026, 11, 25)
CLOCK_START = "2026-11-25T08:27:30+08:00"
SPEED = "6"


def roster(action: str, data: Path, *args: str) -> list[str]:
    return ["roster", action, "--config", str(ZCITY), "--data", str(data), *args]


def test_a_mistyped_data_folder_is_refused_unless_created(tmp_path: Path) -> None:
    """A swap written into a new, empty store the gateway never reads is a swap lost: refuse a
    --data without a store unless --create says to start one."""
    typo = tmp_path / "dtaa"
    for action, extra in (
        ("swap", ["--date", "2026-12-01", "--manager", "zhao-lei"]),
        ("cancel", ["--date", "2026-12-01"]),
    ):
        result = cli(*roster(action, typo, *extra))
        assert result.exit_code == 1, result.output
        assert "no such folder" in result.stderr
        assert ("--create" in result.stderr) == (action == "swap"), result.stderr
        assert not list(tmp_path.glob("**/*.sqlite"))
    created = cli(
        *roster("swap", typo, "--date", "2026-12-01", "--manager", "zhao-lei", "--create")
    )
    assert created.exit_code == 0, created.output
    assert (typo / "zcity.sqlite").exists()


def test_swap_to_the_manager_on_duty_is_refused_and_a_swap_cancelled_before_its_day(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """On a running gateway: a swap to the rostered manager is refused (nothing to swap); a
    swap cancelled before its day leaves the rostered manager on duty when the day starts,
    and `roster show` no longer shows it; a cancel after the day started is refused."""
    site = load_site(ZCITY)
    rostered = site.rostered_manager(DAY)
    assert rostered == "wang-fang"
    data = tmp_path / "data"
    gateway = GatewayProcess(
        mosquitto.url,
        data,
        root=unique_root(),
        extra_args=["--clock-start", CLOCK_START, "--clock-speed", SPEED],
    )
    with gateway, MqttClient(mosquitto.url, timeout=30) as watcher:
        watcher.connect()
        watcher.subscribe(gateway.topics.patrol_status)
        wait_healthy(data)

        same = cli(*roster("swap", data, "--date", DAY.isoformat(), "--manager", rostered))
        assert same.exit_code == 1
        assert "already the duty manager" in same.stderr

        swapped = cli(*roster("swap", data, "--date", DAY.isoformat(), "--manager", "zhao-lei"))
        assert swapped.exit_code == 0, swapped.output
        cancelled = cli(*roster("cancel", data, "--date", DAY.isoformat()))
        assert cancelled.exit_code == 0, cancelled.output
        assert "cancelled" in cancelled.stdout

        def the_day(m: Received) -> bool:
            return bool(m.payload) and m.json()["duty_day"] == DAY.isoformat()

        (status,) = watcher.wait_for(the_day, timeout=40, what=f"the status of {DAY}")
        assert status.json()["duty_manager"]["id"] == rostered

        week = f"{DAY.isocalendar().year}-W{DAY.isocalendar().week:02d}"
        shown = cli(*roster("show", data, "--week", week))
        assert shown.exit_code == 0, shown.output
        line = next(row for row in shown.stdout.splitlines() if DAY.isoformat() in row)
        assert "*" not in line and "zhao-lei" not in line, shown.stdout

        late = cli(*roster("swap", data, "--date", DAY.isoformat(), "--manager", "zhao-lei"))
        assert late.exit_code == 0, late.output
        too_late = cli(*roster("cancel", data, "--date", DAY.isoformat()))
        assert too_late.exit_code == 1
        assert "has started" in too_late.stderr
        assert gateway.stop() == 0
