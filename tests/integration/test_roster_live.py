"""`patrol-gateway roster swap` against a running gateway (issue 3 item 1, clause 4.4)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from typer.testing import CliRunner, Result

from gateway.cli import app
from gateway.config import load_site
from tests.support.gateway import ZCITY, running_gateway, unique_root
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient


def swap(data: Path, date: str, manager: str) -> Result:
    """`patrol-gateway roster swap` on the example site."""
    args = ["--config", str(ZCITY), "--data", str(data), "--date", date, "--manager", manager]
    return CliRunner().invoke(app, ["roster", "swap", *args])


def test_swap_registered_while_running_takes_effect_at_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The swap lands in the store from another process; the gateway applies it from that moment."""
    site = load_site(ZCITY)
    today = site.calendar.day_of(dt.datetime.now(dt.UTC))
    rostered = site.rostered_manager(today)
    stand_in = next(
        p.id for p in site.config.people if p.id != rostered and "duty_manager" in p.roles
    )
    root = unique_root()
    data = tmp_path / "data"
    with (
        running_gateway(mosquitto.url, data, root=root) as gateway,
        MqttClient(mosquitto.url, timeout=10) as watcher,
    ):
        watcher.connect()
        watcher.subscribe(gateway.topics.patrol_status, f"{gateway.topics.base}/alert/+")
        first = watcher.wait_for(lambda m: m.topic.endswith("patrol/status"), what="a status")
        assert first[-1].json()["duty_manager"]["id"] == rostered

        result = swap(data, today.isoformat(), stand_in)
        assert result.exit_code == 0, result.output
        assert "duty.unregistered_swap" in result.stderr  # the duty day has already started

        watcher.wait_for(
            lambda m: (
                m.topic.endswith("patrol/status") and m.json()["duty_manager"]["id"] == stand_in
            ),
            what=f"the status naming {stand_in}",
        )
        (late,) = watcher.wait_for(
            lambda m: (
                "/alert/" in m.topic
                and bool(m.payload)
                and m.json()["rule"] == "duty.unregistered_swap"
            ),
            what="duty.unregistered_swap",
        )
        assert late.json()["subject"] == rostered
        assert late.json()["details"]["stand_in"] == stand_in

    shown = CliRunner().invoke(app, ["roster", "show", "--config", str(ZCITY), "--data", str(data)])
    assert shown.exit_code == 0, shown.output
    assert "逾期登记" in shown.output and site.people[stand_in].name in shown.output


def test_swap_refuses_a_person_without_the_role(tmp_path: Path) -> None:
    """Only a duty manager can take a duty (roles on the domain page)."""
    result = swap(tmp_path, "2026-12-01", "guo-jun")
    assert result.exit_code == 1 and "duty_manager" in result.stderr
    assert not (tmp_path / "zcity.sqlite").exists()
