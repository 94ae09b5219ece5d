"""The `notify` section (§9): every key validated at start-up, errors named by path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, parse_site
from tests.support.scenarios import OWN


def base() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((OWN / "notify" / "site.yaml").read_text("utf-8"))
    return data


def problems(data: dict[str, Any]) -> dict[str, str]:
    try:
        parse_site(data, "site.yaml")
    except ConfigError as exc:
        return {p.path: p.message for p in exc.problems}
    return {}


def test_the_notify_scenario_site_uses_every_key() -> None:
    """public_url, rate_per_minute, escalation with repeat_minutes, routes with post_roles."""
    notify = base()["notify"]
    assert set(notify) == {"public_url", "rate_per_minute", "escalation", "routes"}
    assert problems(base()) == {}


def _set(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("path", "value", "where", "words"),
    [
        (["notify", "public_url"], "duty.example.com", "notify.public_url", "http://"),
        (["notify", "rate_per_minute"], 0, "notify.rate_per_minute", "at least 1"),
        (
            ["notify", "escalation", 0, "repeat_minutes"],
            5,
            "notify.escalation",
            "only the last escalation stage repeats",
        ),
        (["notify", "escalation", 1, "after_minutes"], 0, "notify.escalation", "increasing"),
        (
            ["notify", "routes", 0, "escalation", 0, "to"],
            ["post_role"],
            "notify.routes[0].escalation[0].to[0]",
            "did you mean `post_roles`",
        ),
        (["notify", "routes", 0, "rules"], [], "notify.routes[0].rules", ""),
        (["people", 0, "notify"], ["dingding://TOKEN"], "people[zhang].notify[0]", "dingding"),
    ],
)
def test_each_notify_error_is_named(path: list[Any], value: Any, where: str, words: str) -> None:
    """A wrong notify key is refused at start-up with its path and what is wrong."""
    found = problems(_set(base(), path, value))
    assert where in found, found
    assert words in found[where]
