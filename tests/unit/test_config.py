"""Site file validation (contract §4): every error listed with its key path, nothing starts."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import ConfigError, load_site, parse_site

SITES = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "sites"


@pytest.fixture
def zcity_data() -> dict[str, Any]:
    data = yaml.safe_load((SITES / "zcity.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_site(data, "site.yaml")
    return {p.path: p.message for p in info.value.problems}


@pytest.mark.parametrize("name", ["zcity.yaml", "minimal.yaml"])
def test_shipped_sites_are_valid(name: str) -> None:
    """A shipped example that does not validate would break `make run` and the docs."""
    site = load_site(SITES / name)
    assert site.people and site.posts and site.reader_post


def test_shared_scenario_site_is_valid(shared_dir: pathlib.Path) -> None:
    """The acceptance scenarios' site file must load."""
    site = load_site(shared_dir / "scenarios" / "zcity" / "site.yaml")
    assert site.person_for("nfc", "04:a2:24:b1:c2:33:80") is not None


def test_minimal_site_takes_defaults() -> None:
    """Defaults of §4 apply to every key left out."""
    site = load_site(SITES / "minimal.yaml")
    assert site.config.duty.day_starts == "08:30"
    assert site.config.duty.min_patrol_hours == 4
    assert site.config.duty.max_clock_skew_seconds == 300
    assert site.tz.key == "Europe/Berlin"


def test_every_error_is_listed_with_its_path(zcity_data: dict[str, Any]) -> None:
    """One run of check-config must show all problems, not just the first."""
    data = copy.deepcopy(zcity_data)
    data["posts"][3]["readers"][0] = "Bad Id"
    data["posts"][2]["readers"].append("fd-1")
    data["duty"]["day_starts"] = 510  # YAML 1.1 reads an unquoted 08:30 as 510
    data["people"][1]["credentials"] = ["nfc:04-a2-24-b1-c2-33-80"]
    data["equipment"][0]["post"] = "nowhere"
    data["site"]["timezone"] = "Mars/Olympus"
    data["roster"]["weekly"]["mon"] = "guo-jun"
    data["notify"]["escalation"][1]["to"] = ["nobody"]
    data["typo"] = 1
    found = problems(data)
    assert "valid id" in found["posts[3].readers[0]"]
    assert "already at posts[0].readers[0]" in found["posts[2].readers[1]"]
    assert "quote clock times" in found["duty.day_starts"]
    assert "already belongs to people[0]" in found["people[1].credentials[0]"]
    assert "nowhere" in found["equipment[0].post"]
    assert "Mars/Olympus" in found["site.timezone"]
    assert "duty_manager role" in found["roster.weekly.mon"]
    assert "nobody" in found["notify.escalation[1].to[0]"]
    assert "unknown key" in found["typo"]
    assert len(found) == 9


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda d: d["people"].append(dict(d["people"][0])), "people[9].id", "duplicate id"),
        (lambda d: d["duty"].update(handover_post="lobby"), "duty.handover_post", "lobby"),
        (lambda d: d["duty"].update(patrol_deadline="25:00"), "duty.patrol_deadline", "clock"),
        (lambda d: d["roster"]["weekly"].pop("sun"), "roster.weekly", "sun"),
        (lambda d: d["roster"]["swaps"][0].update(manager="ghost"), "roster.swaps[0].manager", ""),
        (lambda d: d["people"][0].update(credentials=["nfc:XYZ"]), "people[0].credentials[0]", ""),
        (lambda d: d["people"][0].update(credentials=["card:1"]), "people[0].credentials[0]", ""),
        (
            lambda d: d["equipment"][0]["metrics"]["load_pct"].update(expect=True),
            "equipment[0].metrics.load_pct",
            "either expect",
        ),
        (
            lambda d: d["equipment"][1]["metrics"]["supply_temp_c"].update(min=20),
            "equipment[1].metrics.supply_temp_c",
            "above max",
        ),
        (lambda d: d["posts"][0].update(kind="lobby"), "posts[0].kind", ""),
        (lambda d: d["equipment"][0].update(id="fd-1"), "equipment[0].id", "reader id"),
        (lambda d: d.pop("site"), "site", "required"),
    ],
)
def test_each_kind_of_error(zcity_data: dict[str, Any], mutate: Any, path: str, words: str) -> None:
    """Each class of mistake in §4 is refused at its own key path with a useful message."""
    mutate(zcity_data)
    found = problems(zcity_data)
    assert path in found, found
    assert words in found[path]


def test_yaml_key_written_twice_is_refused(tmp_path: pathlib.Path) -> None:
    """PyYAML keeps the last of two equal keys silently; a site file must not."""
    path = tmp_path / "site.yaml"
    path.write_text("site: {id: a, name: A}\nsite: {id: b, name: B}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert "written twice" in str(info.value)
    assert "line 2" in str(info.value)


def test_unreadable_and_non_mapping_files(tmp_path: pathlib.Path) -> None:
    """A missing file or a YAML list is refused with a reason, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_site(tmp_path / "missing.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_site(path)


def test_check_config_command(tmp_path: pathlib.Path, zcity_data: dict[str, Any]) -> None:
    """`check-config` exits 0 on a good file and 1 listing every error with the file name."""
    runner = CliRunner()
    ok = runner.invoke(app, ["check-config", str(SITES / "zcity.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "zcity" in ok.output
    zcity_data["posts"][0]["readers"] = ["fd-1", "fd-1"]
    zcity_data["site"]["locale"] = "fr"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(zcity_data, allow_unicode=True), encoding="utf-8")
    result = runner.invoke(app, ["check-config", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: posts[0].readers[1]" in result.output
    assert f"{bad}: site.locale" in result.output
    assert "2 error(s)" in result.output
