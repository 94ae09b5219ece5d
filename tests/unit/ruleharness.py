"""A small driver for rule tests: a site from YAML text, events in local time, transitions out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import yaml

from gateway.alerts import AlertBook, Transition
from gateway.config import Site, parse_site
from gateway.events import Event, Reading, Scan
from gateway.rules.base import Rule
from gateway.rules.engine import Engine

BASE: dict[str, Any] = {
    "site": {"id": "t", "name": "T", "timezone": "Asia/Shanghai", "locale": "en"},
    "people": [
        {"id": "ann", "name": "Ann", "roles": ["duty_manager"], "credentials": ["qr:ANN"]},
        {"id": "bob", "name": "Bob", "roles": ["duty_manager"], "credentials": ["qr:BOB"]},
        {"id": "cat", "name": "Cat", "roles": ["duty_manager"], "credentials": ["qr:CAT"]},
        {"id": "eng", "name": "Eng", "roles": ["engineer_strong"], "credentials": ["qr:ENG"]},
        {"id": "sec", "name": "Sec", "roles": ["security"], "credentials": ["qr:SEC"]},
    ],
    "posts": [
        {
            "id": "monitoring-center",
            "name": "MC",
            "kind": "monitoring_center",
            "key": True,
            "readers": ["mc"],
        },
        {"id": "front", "name": "Front", "kind": "front_desk", "key": True, "readers": ["fd"]},
        {
            "id": "power",
            "name": "Power",
            "kind": "plant_room",
            "readers": ["pr"],
            "rounds": {"every_minutes": 120, "roles": ["engineer_strong"]},
        },
    ],
    "equipment": [
        {
            "id": "tx",
            "name": "TX",
            "post": "power",
            "stale_after_seconds": 600,
            "metrics": {
                "temp": {"max": 95, "for_seconds": 60},
                "load": {"max": 85, "hysteresis": 5},
                "low": {"min": 10, "hysteresis": 2},
                "leak": {"expect": False, "latch": True},
            },
        },
    ],
    # 2026-11-23 is a Monday.
    "roster": {
        "weekly": {
            "mon": "ann",
            "tue": "bob",
            "wed": "ann",
            "thu": "bob",
            "fri": "ann",
            "sat": "bob",
            "sun": "cat",
        }
    },
}


def make_site(**overrides: Any) -> Site:
    """The base site with top-level sections replaced or merged."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return parse_site(data, "test")


Row = tuple[str, str, str, str]


class Driver:
    """Feeds events at local times ("2026-11-23 09:00") and collects (at, rule, subject, state)."""

    def __init__(
        self, site: Site, start: str, rules: Callable[[Site, dt.datetime], list[Rule]]
    ) -> None:
        self.site = site
        self.start = self.t(start)
        self.engine = Engine(site, rules(site, self.start), AlertBook(site.id), self.start)
        self.rows: list[Row] = []
        self.transitions: list[Transition] = []

    def t(self, local: str) -> dt.datetime:
        return dt.datetime.fromisoformat(local).replace(tzinfo=self.site.tz).astimezone(dt.UTC)

    def _keep(self, out: list[Transition]) -> list[Row]:
        rows = [
            (
                t.at.astimezone(self.site.tz).strftime("%m-%d %H:%M:%S"),
                t.alert.rule,
                t.alert.subject,
                t.alert.state,
            )
            for t in out
            if t.is_state_change
        ]
        self.transitions += out
        self.rows += rows
        return rows

    def event(self, event: Event, received: dt.datetime | None = None) -> list[Row]:
        return self._keep(self.engine.process(event, received or event.time))

    def scan(self, who: str, reader: str, local: str, received: str | None = None) -> list[Row]:
        """A scan stamped `local`, received then or at `received` (late, or stamped ahead)."""
        t = self.t(local)
        r = t if received is None else self.t(received)
        person = self.site.person_for("qr", who.upper())
        post = self.site.reader_post[reader].id
        return self.event(
            Scan(reader, post, who.upper(), "qr", None if person is None else person.id, t, r), r
        )

    def reading(
        self, equipment: str, local: str, received: str | None = None, **values: float | bool
    ) -> list[Row]:
        """A reading stamped `local`, received then or at `received`."""
        t = self.t(local)
        r = t if received is None else self.t(received)
        return self.event(Reading(equipment, dict(values), t, r), r)

    def until(self, local: str) -> list[Row]:
        return self._keep(self.engine.advance(self.t(local)))
