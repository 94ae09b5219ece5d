"""Fixtures shared by every test tier: private Mosquitto brokers and the ../shared folder."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from gateway.rules.engine import CHECK_ENV
from tests.support.influx import Influxd, find_influxd
from tests.support.mosquitto import Mosquitto, find_mosquitto

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """`patrol-gateway run` serves HTTP on 127.0.0.1:8080 by default; gateways started by tests
    in parallel would fight over that port. Tests that want the page pass --http themselves."""
    os.environ["PATROL_HTTP"] = "off"
    # Every engine in the tests (and in the gateways and replays they start) checks its cache
    # of the rules' deadlines against the rules at every step (gateway/rules/engine.py).
    os.environ[CHECK_ENV] = "1"


def _new_broker() -> Mosquitto:
    # Integration tests fail, never skip, without a broker: a skipped tier looks green in CI.
    if find_mosquitto() is None:
        pytest.fail(
            "mosquitto 未安装：请运行 `make mosquitto`。"
            " / mosquitto is not installed: run `make mosquitto`.",
            pytrace=False,
        )
    return Mosquitto()


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """One private broker for the whole session; tests must not stop or restart it."""
    with _new_broker() as broker:
        yield broker


@pytest.fixture
def fresh_mosquitto() -> Iterator[Mosquitto]:
    """A private broker for one test, which may stop, kill or restart it."""
    with _new_broker() as broker:
        yield broker


SHARED = REPO_ROOT.parent / "shared"
_skipped_for_shared: list[str] = []


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the `CI` variable says so (CI services set it to `true` or `1`)."""
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only `../shared` folder beside the repository (the public scenario, the outside
    checker). Only tests/integration/test_shared_scenarios.py uses it: the repository's own
    tests stand on its own data. Missing: a failure in CI, a loud skip elsewhere."""
    if SHARED.is_dir():
        return SHARED
    if in_ci():
        pytest.fail(
            f"{SHARED} 不存在，而 CI 必须有它：请把 shared/ 放在仓库旁。"
            f" / {SHARED} is missing, and CI must have it: put shared/ beside the repository.",
            pytrace=False,
        )
    reason = (
        f"{SHARED} 不存在：跳过公共场景的检查。 / {SHARED} is missing: the checks against the "
        "public scenario are SKIPPED (they run, and must pass, in CI)"
    )
    _skipped_for_shared.append(reason)
    pytest.skip(reason)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say it once more, at the end, where nobody can miss it."""
    if _skipped_for_shared:
        terminalreporter.write_sep("!", "../shared MISSING", yellow=True, bold=True)
        terminalreporter.write_line(_skipped_for_shared[0], yellow=True, bold=True)


def _new_influxd() -> Influxd:
    # Like the broker: a missing influxd fails (`make influxdb` installs it), never skips.
    if find_influxd() is None:
        pytest.fail(
            "influxd 未安装：请运行 `make influxdb`。"
            " / influxd is not installed: run `make influxdb`.",
            pytrace=False,
        )
    return Influxd()


@pytest.fixture(scope="session")
def influxd() -> Iterator[Influxd]:
    """One private InfluxDB 1.6 for the session; tests use databases of their own."""
    with _new_influxd() as server:
        yield server


@pytest.fixture
def fresh_influxd() -> Iterator[Influxd]:
    """A private InfluxDB for one test, which may stop and start it."""
    with _new_influxd() as server:
        yield server
