"""`patrol-gateway replay` (contract §7) on the project's own scenarios and small cases.

The public scenario in ../shared is checked by tests/integration/test_shared_scenarios.py."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.replay import Recorded, read_events
from tests.support.scenarios import OWN, expected, load, own_cases, replayed


@pytest.mark.parametrize(("folder", "name"), own_cases(), ids=lambda c: getattr(c, "name", c))
def test_own_scenarios_transitions_exactly(folder: pathlib.Path, name: str) -> None:
    """Every transition the project's hand-worked scenarios expect (tests/scenarios/README.md),
    nothing else, in time order (§5, §7); the public one is in tests/integration."""
    got = replayed(load(folder), folder, name)
    want = expected(folder, name)
    assert want
    assert sorted(got) == sorted(want)
    assert [g[0] for g in got] == sorted(g[0] for g in got)  # printed in time order


ZONE_SITE = """
site: {id: hq, name: HQ, timezone: America/New_York, locale: en}
duty: {handover_post: lobby}
people: [{id: ann, name: Ann, roles: [duty_manager], credentials: ["qr:ANN"]}]
posts: [{id: lobby, name: Lobby, readers: [l-1]}]
roster: {weekly: {mon: ann, tue: ann, wed: ann, thu: ann, fri: ann, sat: ann, sun: ann}}
"""


def test_cli_output_is_json_lines_in_site_time(tmp_path: pathlib.Path) -> None:
    """stdout carries only alert records with `at`, in the site's zone; stdin works as `-`."""
    site = tmp_path / "site.yaml"
    site.write_text(ZONE_SITE, encoding="utf-8")
    events = "\n".join(
        json.dumps(e)
        for e in [
            {
                "topic": "estate/hq/device/l-1/status",
                "payload": "offline",
                "received_at": "2026-07-01T10:00:00-04:00",
            },
            {
                "topic": "estate/hq/reader/l-1/scan",
                "payload": {"credential": "NOPE", "method": "qr", "ts": 1782921600},
            },
            {"topic": "estate/hq/reader/l-1/scan", "payload": {"garbage": True}},
            {
                "topic": "estate/hq/device/l-1/status",
                "payload": {"state": "online"},
                "received_at": "2026-07-01T17:00:00Z",
            },
        ]
    )
    result = CliRunner().invoke(app, ["replay", "--config", str(site), "-"], input=events)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["rule"], r["state"], r["at"]) for r in lines] == [
        ("device.offline", "open", "2026-07-01T10:00:00-04:00"),
        ("scan.unknown_credential", "open", "2026-07-01T12:00:00-04:00"),
        ("device.offline", "closed", "2026-07-01T13:00:00-04:00"),
    ]
    assert lines[0]["message"] == "Device l-1 (Lobby) is offline"


def test_bad_lines_are_skipped_with_their_number_and_the_replay_goes_on(
    tmp_path: pathlib.Path,
) -> None:
    """Issue 8: a non-JSON line, a bad received_at or a line with no time at all used to stop
    the replay part-way (exit 2); each is now skipped, named by line number and counted (§7)."""
    site = tmp_path / "site.yaml"
    site.write_text(ZONE_SITE, encoding="utf-8")
    lines = [
        json.dumps(
            {
                "topic": "estate/hq/device/l-1/status",
                "payload": "offline",
                "received_at": "2026-07-01T10:00:00-04:00",
            }
        ),
        "not json",
        json.dumps(
            {
                "topic": "estate/hq/device/l-1/status",
                "payload": "online",
                "received_at": "yesterday",
            }
        ),
        json.dumps({"topic": "estate/hq/device/l-1/status", "payload": "online"}),
        json.dumps(
            {
                "topic": "estate/hq/device/l-1/status",
                "payload": "online",
                "received_at": "2026-07-01T10:05:00-04:00",
            }
        ),
    ]
    result = CliRunner().invoke(app, ["replay", "--config", str(site), "-"], input="\n".join(lines))
    assert result.exit_code == 0, result.output
    states = [(r["state"], r["at"]) for r in map(json.loads, result.stdout.splitlines())]
    assert states == [
        ("open", "2026-07-01T10:00:00-04:00"),
        ("closed", "2026-07-01T10:05:00-04:00"),
    ]
    for number in (2, 3, 4):
        assert f"-:{number}:" in result.stderr
    assert "3 lines skipped" in result.stderr


def test_blank_lines_are_passed_over_and_keep_the_line_numbers() -> None:
    """Blank lines are ignored, not skipped as bad JSON (§7); the lines after them keep their
    numbers in the file, so a report names the right line."""
    good = json.dumps({"topic": "t", "payload": {"ts": "2026-07-01T08:50:00-04:00"}})
    read = list(read_events(["", "   ", "\t", good, " ", "not json"], dt.UTC))
    assert [type(r).__name__ for r in read] == ["Recorded", "Skipped"]
    assert [r.line for r in read] == [4, 6]


def test_a_json_string_payload_gives_its_ts_as_the_receive_time() -> None:
    """A payload recorded as a JSON string is read like the object, its `ts` included (§7)."""
    body = json.dumps({"credential": "ANN", "method": "qr", "ts": "2026-07-01T08:50:00-04:00"})
    (rec,) = list(read_events([json.dumps({"topic": "t", "payload": body})], dt.UTC))
    assert isinstance(rec, Recorded)
    assert rec.received_at == dt.datetime(2026, 7, 1, 12, 50, tzinfo=dt.UTC)


def test_until_stops_reading_lines_received_after_it(tmp_path: pathlib.Path) -> None:
    """Issue 8 item 5: with --until T, lines received after T are not read (§7)."""
    site = tmp_path / "site.yaml"
    site.write_text(ZONE_SITE, encoding="utf-8")
    lines = [
        {
            "topic": "estate/hq/device/l-1/status",
            "payload": "offline",
            "received_at": "2026-07-01T10:00:00-04:00",
        },
        {
            "topic": "estate/hq/device/l-1/status",
            "payload": "online",
            "received_at": "2026-07-01T11:00:00-04:00",
        },
    ]
    result = CliRunner().invoke(
        app,
        ["replay", "--config", str(site), "--until", "2026-07-01T10:30:00-04:00", "-"],
        input="\n".join(map(json.dumps, lines)),
    )
    assert result.exit_code == 0, result.output
    states = [r["state"] for r in map(json.loads, result.stdout.splitlines())]
    assert states == ["open"]


def test_command_lines_act_on_alerts_at_their_time(tmp_path: pathlib.Path) -> None:
    """Acknowledgements are part of a recorded scenario (§7): the command line acts on the open
    alert of (rule, subject) at its received_at; one on no open alert is refused on stderr."""
    site = tmp_path / "site.yaml"
    site.write_text(ZONE_SITE, encoding="utf-8")
    scan = {"credential": "NOBODY", "method": "qr", "ts": "2026-07-01T10:00:00-04:00", "seq": 1}
    ack = {
        "action": "alert.ack",
        "rule": "scan.unknown_credential",
        "subject": "l-1",
        "by": "ann",
        "comment": "visitor",
    }
    lines = [
        {"topic": "estate/hq/reader/l-1/scan", "payload": scan},
        {"command": ack, "received_at": "2026-07-01T10:07:00-04:00"},
        {"command": ack, "received_at": "2026-07-01T10:08:00-04:00"},
    ]
    result = CliRunner().invoke(
        app, ["replay", "--config", str(site), "-"], input="\n".join(map(json.dumps, lines))
    )
    assert result.exit_code == 0, result.output
    rows = [
        (r["change"], r["at"], r.get("by")) for r in map(json.loads, result.stdout.splitlines())
    ]
    assert ("opened", "2026-07-01T10:00:00-04:00", None) in rows
    assert ("closed", "2026-07-01T10:07:00-04:00", "ann") in rows
    assert "-:3:" in result.stderr and "1 refused" in result.stderr


def test_early_warnings_only_when_the_site_file_asks() -> None:
    """Replay keeps the contract's transitions exact; the site file can turn warnings on
    (berlin/late-swap: ben's patrol time is at risk on 1 Dec)."""
    import yaml

    from gateway.config import parse_site

    folder = OWN / "berlin"
    data = yaml.safe_load((folder / "site.yaml").read_text(encoding="utf-8"))
    data["duty"]["early_warnings"] = {"enabled": True}
    got = replayed(parse_site(data), folder, "late-swap")
    warnings = [g for g in got if g[1].endswith("_at_risk")]
    assert any(w[1] == "patrol.hours_at_risk" and w[2] == "ben" for w in warnings), got
    rules = sorted(g for g in got if not g[1].endswith("_at_risk"))
    assert rules == sorted(expected(folder, "late-swap"))


def test_late_delivery_finds_the_deadline_decided(tmp_path: pathlib.Path) -> None:
    """A scan buffered by an offline reader and received after 09:00 does not undo the absence:
    it is raised at 09:00 and cleared on arrival, exactly as live."""
    site = tmp_path / "site.yaml"
    site.write_text(ZONE_SITE, encoding="utf-8")
    scan = {"credential": "ANN", "method": "qr", "ts": "2026-07-01T08:50:00-04:00", "seq": 1}
    lines = [
        {
            "topic": "estate/hq/device/l-1/status",
            "payload": "online",
            "received_at": "2026-07-01T07:00:00-04:00",
        },
        {
            "topic": "estate/hq/reader/l-1/scan",
            "payload": scan,
            "received_at": "2026-07-01T09:20:00-04:00",
        },
    ]
    result = CliRunner().invoke(
        app, ["replay", "--config", str(site), "-"], input="\n".join(map(json.dumps, lines))
    )
    assert result.exit_code == 0, result.output
    rows = [(r["rule"], r["state"], r["at"]) for r in map(json.loads, result.stdout.splitlines())]
    assert ("duty.absent", "open", "2026-07-01T09:00:00-04:00") in rows
    assert ("duty.absent", "closed", "2026-07-01T09:20:00-04:00") in rows
