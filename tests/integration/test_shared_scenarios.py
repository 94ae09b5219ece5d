"""Checks against `../shared`, the public scenario and the outside checker beside the repository.

They run in addition to the repository's own tests, which stand on the repository's data
(tests/scenarios, gateway/sites). Where `../shared` is missing they are skipped with a loud
reason, and in CI (`CI` set to a true value) they fail: CI always has `../shared`.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import subprocess
import sys

import pytest
import yaml

from gateway.config import parse_site
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.store.sqlite import SqliteStore
from tests.support.scenarios import OWN, events, expected, load, own_cases, replayed
from tests.unit.test_restart import run

PG = str(pathlib.Path(sys.executable).with_name("patrol-gateway"))


@pytest.fixture(scope="module")
def zcity(shared_dir: pathlib.Path) -> pathlib.Path:
    """The public scenario's folder."""
    return shared_dir / "scenarios" / "zcity"


def test_shared_scenario_site_is_valid(zcity: pathlib.Path) -> None:
    """The acceptance scenarios' site file must load."""
    site = load(zcity)
    assert site.person_for("nfc", "04:a2:24:b1:c2:33:80") is not None


def test_scenario_transitions_exactly(zcity: pathlib.Path) -> None:
    """All 21 transitions of the two-day scenario, nothing else, in time order (§5, §7)."""
    got = replayed(load(zcity), zcity, "two-days")
    want = expected(zcity, "two-days")
    assert len(want) == 21
    assert sorted(got) == sorted(want)
    assert [g[0] for g in got] == sorted(g[0] for g in got)  # printed in time order


def check_scenarios(shared_dir: pathlib.Path, *folders: str) -> subprocess.CompletedProcess[str]:
    """The outside checker, run on the installed command."""
    return subprocess.run(
        [sys.executable, str(shared_dir / "tools" / "check-scenarios"), PG, *folders],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_scenarios_tool_accepts_the_command(
    shared_dir: pathlib.Path, zcity: pathlib.Path
) -> None:
    """The outside checker, run on the installed command, finds the scenario exact."""
    result = check_scenarios(shared_dir, str(zcity))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/1 scenarios exact" in result.stdout


def test_own_scenarios_on_another_site_and_time_zone(shared_dir: pathlib.Path) -> None:
    """The outside checker agrees on the project's own scenarios, written by hand from §5."""
    folders = sorted(str(p) for p in OWN.iterdir() if p.is_dir())
    assert folders
    result = check_scenarios(shared_dir, *folders)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = len(own_cases())  # a folder may hold several scenarios (tests/scenarios/notify)
    assert f"{cases}/{cases} scenarios exact" in result.stdout


def test_early_warnings_only_when_the_site_file_asks(zcity: pathlib.Path) -> None:
    """Replay keeps the contract's transitions exact; the site file can turn warnings on."""
    data = yaml.safe_load((zcity / "site.yaml").read_text(encoding="utf-8"))
    data["duty"]["early_warnings"] = {"enabled": True}
    site = parse_site(data)
    got = replayed(site, zcity, "two-days")
    warnings = [g for g in got if g[1].endswith("_at_risk")]
    key_post = ("2026-11-28T09:00:00+00:00", "patrol.key_post_at_risk", "model-home", "open")
    assert key_post in got  # 17:00 in Shanghai
    assert any(w[1] == "patrol.hours_at_risk" and w[2] == "li-na" for w in warnings)
    rules = sorted(g for g in got if not g[1].endswith("_at_risk"))
    assert rules == sorted(expected(zcity, "two-days"))


@pytest.mark.parametrize(("every", "grace"), [(4, 0), (7, 0), (333, 0), (5, 2), (7, 120)])
def test_restarts_change_nothing(
    zcity: pathlib.Path, tmp_path: pathlib.Path, every: int, grace: int
) -> None:
    """Restarting every N messages gives the same transitions, ids included, each exactly once,
    also with a live grace (messages received within the grace before the mark count)."""
    site = load(zcity)
    recorded = events(zcity, "two-days", site)
    delay = dt.timedelta(seconds=grace)
    baseline = run(site, recorded, tmp_path / "a.sqlite", set(), delay)
    assert len(baseline) == 21
    cuts = set(range(every, len(recorded), every))
    assert run(site, recorded, tmp_path / "b.sqlite", cuts, delay) == baseline


def test_restart_at_two_pm_knows_the_morning(zcity: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Restart at 14:00 on the 28th: morning patrol time, signed posts and handover come back."""
    site = load(zcity)
    recorded = events(zcity, "two-days", site)
    cut = next(
        i
        for i, e in enumerate(recorded)
        if e.received_at and e.received_at >= dt.datetime(2026, 11, 28, 6, 0, tzinfo=dt.UTC)
    )
    path = tmp_path / "c.sqlite"
    before = run(site, recorded[:cut], path, set())
    store = SqliteStore(path)
    pipeline = Pipeline(
        site, Topics("estate", site.id), store, recorded[0].received_at or dt.datetime.min
    )
    pipeline.restore("2026-11-28T06:00:00+00:00")
    status = pipeline.status()
    assert status is not None

    body = status
    assert body["duty_day"] == "2026-11-28"
    assert body["duty_manager"]["id"] == "li-na"
    assert body["handover"]["state"] == "done"
    assert body["patrol"]["minutes"] > 60
    assert {p["post"] for p in body["key_posts"]["signed"]} >= {"front-desk", "monitoring-center"}
    assert "model-home" in {p["post"] for p in body["key_posts"]["missing"]}
    store.close()
    assert any("duty.absent" in line for line in before)


def test_ci_variable_is_read_as_a_switch() -> None:
    """Prevents a missing ../shared passing silently in CI: `CI=true`/`1` means CI (the shared
    checks fail there), `CI=false`/unset does not (they are skipped, loudly)."""
    from tests.conftest import in_ci

    assert in_ci({"CI": "true"}) and in_ci({"CI": "1"}) and in_ci({"CI": "True "})
    assert not in_ci({}) and not in_ci({"CI": "false"}) and not in_ci({"CI": "0"})
