"""Acceptance scenarios (site.yaml, NAME.jsonl, NAME.expected.jsonl) replayed in process.

The project's own scenarios are in tests/scenarios; the public one is in ../shared/scenarios
(tests/integration/test_shared_scenarios.py). Transitions are compared as the outside checker
(../shared/tools/check-scenarios) compares them: the instant in UTC, rule, subject, state.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from gateway.config import Site, load_site
from gateway.replay import Recorded, read_events, replay
from gateway.timeutil import parse_instant

OWN = Path(__file__).resolve().parents[1] / "scenarios"

Row = tuple[str, str, str, str]
# The transitions of the rules that the scenarios (and the outside checker) count (§7): acks,
# comments and shelves from command lines are not among them.
RULE_CHANGES = ("open", "cleared", "closed")


def own_cases() -> list[tuple[Path, str]]:
    """Every (folder, name) of the project's own scenarios."""
    cases = [
        (path.parent, path.name.removesuffix(".expected.jsonl"))
        for path in sorted(OWN.glob("*/*.expected.jsonl"))
    ]
    assert cases, f"no scenarios in {OWN}"
    return cases


def _row(at: str | dt.datetime, rule: str, subject: object, state: str) -> Row:
    instant = at if isinstance(at, dt.datetime) else parse_instant(at, dt.UTC)
    return (instant.astimezone(dt.UTC).isoformat(), rule, str(subject), state)


def expected(folder: Path, name: str) -> list[Row]:
    """The transitions a scenario must produce."""
    text = (folder / f"{name}.expected.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [_row(r["at"], r["rule"], r["subject"], r["state"]) for r in rows]


def events(folder: Path, name: str, site: Site) -> list[Recorded]:
    """A scenario's recorded traffic."""
    with (folder / f"{name}.jsonl").open(encoding="utf-8") as handle:
        return list(read_events(handle, site.tz))


def until(folder: Path, name: str, site: Site) -> dt.datetime | None:
    """The scenario's `--until`, if it has one."""
    path = folder / f"{name}.until"
    if not path.exists():
        return None
    return parse_instant(path.read_text(encoding="utf-8").strip(), site.tz)


def replayed(site: Site, folder: Path, name: str) -> list[Row]:
    """The rules' transitions of replaying a scenario, in the order they were printed."""
    return [
        _row(t.at, t.alert.rule, t.alert.subject, t.alert.state)
        for t in replay(site, events(folder, name, site), until=until(folder, name, site))
        if t.change in RULE_CHANGES
    ]


def load(folder: Path) -> Site:
    """A scenario folder's site."""
    return load_site(folder / "site.yaml")
