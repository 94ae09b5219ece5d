"""Fixtures shared by every test tier: private Mosquitto brokers and the shared/ folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, find_mosquitto

REPO_ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only `../shared` folder beside the repository (contract, scenarios, tools)."""
    shared = REPO_ROOT.parent / "shared"
    if not shared.is_dir():
        pytest.fail(
            f"{shared} 不存在：它应与仓库并列。 / {shared} is missing: it must sit beside the "
            "repository (the contract, scenarios and tools live there).",
            pytrace=False,
        )
    return shared
