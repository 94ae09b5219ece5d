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
SCENARIOS = pathlib.Path(__file__).resolve().parents[1] / "scenarios"


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


def test_repository_scenario_sites_are_valid() -> None:
    """The project's own scenario sites must load, and a card UID written with separators and
    in lower case finds its person (the public scenario's site: tests/integration)."""
    for site_file in sorted(SCENARIOS.glob("*/site.yaml")):
        assert load_site(site_file).people, site_file
    site = load_site(SITES / "zcity.yaml")
    who = site.person_for("nfc", "04:a2:24:b1:c2:33:80")
    assert who is not None and who.id == "zhang-wei"


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
    data["duty"]["day_starts"] = 510  # YAML 1.1 reads an unquoted 8:30 as 510
    data["people"][1]["credentials"] = ["nfc:04-a2-24-b1-c2-33-80"]
    data["equipment"][0]["post"] = "nowhere"
    data["site"]["timezone"] = "Mars/Olympus"
    data["roster"]["weekly"]["mon"] = "guo-jun"
    data["notify"]["escalation"][1]["to"] = ["nobody"]
    data["typo"] = 1
    found = problems(data)
    assert "valid id" in found["posts[gate-west].readers[0]"]
    assert "already at posts[front-desk].readers[0]" in found["posts[gate-east].readers[1]"]
    assert 'quote it: "08:30"' in found["duty.day_starts"]
    assert "already belongs to people[zhang-wei]" in found["people[li-na].credentials[0]"]
    assert "nowhere" in found["equipment[tx-1].post"]
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
        (
            lambda d: d["people"][0].update(credentials=["nfc:XYZ"]),
            "people[zhang-wei].credentials[0]",
            "hexadecimal",
        ),
        (
            lambda d: d["people"][0].update(credentials=["card:1"]),
            "people[zhang-wei].credentials[0]",
            "nfc:",
        ),
        (
            lambda d: d["equipment"][0]["metrics"]["load_pct"].update(expect=True),
            "equipment[tx-1].metrics.load_pct",
            "either expect",
        ),
        (
            lambda d: d["equipment"][1]["metrics"]["supply_temp_c"].update(min=20),
            "equipment[chiller-1].metrics.supply_temp_c",
            "above max",
        ),
        (lambda d: d["posts"][0].update(kind="lobby"), "posts[front-desk].kind", "not one of"),
        (lambda d: d["equipment"][0].update(id="fd-1"), "equipment[fd-1].id", "reader id"),
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
    with pytest.raises(ConfigError, match="no such file"):
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
    assert f"{bad}: posts[front-desk].readers[1]" in result.output
    assert f"{bad}: site.locale" in result.output
    assert "站点配置有 2 处错误 / 2 errors" in result.output


def test_a_typo_gets_the_nearest_key(zcity_data: dict[str, Any]) -> None:
    """Prevents "unknown key" with no clue: a misspelt key, choice or id names what was meant."""
    zcity_data["duty"]["handover_pots"] = zcity_data["duty"].pop("handover_post", "front-desk")
    zcity_data["site"]["timezon"] = zcity_data["site"].pop("timezone")
    zcity_data["posts"][1]["kind"] = "monitoring_centre"
    zcity_data["equipment"][0]["post"] = "power-rooms"
    zcity_data["roster"]["weekly"]["sun"] = "zhaolei"
    zcity_data["people"][0]["wrong_key_entirely"] = 1
    found = problems(zcity_data)
    assert found["duty.handover_pots"] == "unknown key: did you mean `handover_post`?"
    assert "did you mean `timezone`?" in found["site.timezon"]
    assert "did you mean `monitoring_center`?" in found["posts[monitoring-center].kind"]
    assert "did you mean `power-room`?" in found["equipment[tx-1].post"]
    assert "did you mean `zhao-lei`?" in found["roster.weekly.sun"]
    assert "did you mean" not in found["people[zhang-wei].wrong_key_entirely"]


BROKEN: list[Any] = [
    lambda d: d["duty"].update(min_patrol_hours=-1),
    lambda d: d["duty"].update(min_patrol_hours="four"),
    lambda d: d["duty"].update(patrol_max_gap_minutes=0),
    lambda d: d["duty"].update(early_warnings={"enabled": "maybe"}),
    lambda d: d["posts"][0].update(key="yes please"),
    lambda d: d["posts"][0].update(readers="fd-1"),
    lambda d: d["posts"][0].update(rounds={"every_minutes": 10, "roles": []}),
    lambda d: d["people"].append("just a name"),
    lambda d: d["people"][0].update(roles=["boss"]),
    lambda d: d["people"][0].pop("name"),
    lambda d: d["equipment"][0]["metrics"].update({"bad name!": {"max": 1}}),
    lambda d: d["roster"]["swaps"][0].update(date="someday"),
    lambda d: d["roster"]["swaps"][0].update(registered_at="yesterday"),
    lambda d: d["walking"].update(legs=[{"between": ["front-desk"], "minutes": 1}]),
    lambda d: d["site"].update(timezone="Mars/Olympus", name=None),
    lambda d: d.update(duty=[1, 2]),
]


@pytest.mark.parametrize("mutate", BROKEN)
def test_no_raw_validator_text(zcity_data: dict[str, Any], mutate: Any) -> None:
    """Prevents pydantic's own wording ("Input should be…", "Field required") reaching a
    person: every message is plain words, in Chinese and English on a Chinese site."""
    zcity_data.setdefault("walking", {})
    mutate(zcity_data)
    with pytest.raises(ConfigError) as info:
        parse_site(zcity_data, "site.yaml")
    shown = str(info.value)
    raw_words = ("Input should", "Field required", "Extra inputs", "Value error", "input_value")
    for raw in (*raw_words, "type=", "pydantic", "errors.pydantic.dev"):
        assert raw not in shown
    assert all(p.zh and p.zh in shown for p in info.value.problems), shown


def test_messages_in_the_site_locale_and_english(zcity_data: dict[str, Any]) -> None:
    """Prevents English-only errors on a Chinese site (and Chinese on an English one)."""
    zcity_data["duty"]["handover_post"] = "lobby"
    with pytest.raises(ConfigError) as info:
        parse_site(copy.deepcopy(zcity_data), "site.yaml")
    assert "未声明 id 为 'lobby' 的岗位 / no post with id 'lobby' is declared" in str(info.value)
    assert str(info.value).startswith("站点配置有 1 处错误 / 1 error:")
    zcity_data["site"]["locale"] = "en"
    with pytest.raises(ConfigError) as info:
        parse_site(zcity_data, "site.yaml")
    assert "no post with id 'lobby' is declared" in str(info.value)
    assert "未声明" not in str(info.value) and str(info.value).startswith("1 error:")


def test_unquoted_times_as_the_docs_say(tmp_path: pathlib.Path) -> None:
    """Keeps docs/site-file.md true: YAML 1.1 reads an unquoted 18:00 or 8:30 as a base-60
    number, which is refused with the quoted form to write; an unquoted 08:30 stays text."""
    path = tmp_path / "site.yaml"
    body = "site: {id: s, name: S}\nposts: [{id: monitoring-center, name: M}]\n"
    path.write_text(body + "duty: {day_starts: 08:30}\n", encoding="utf-8")
    assert load_site(path).config.duty.day_starts == "08:30"
    path.write_text(body + "duty: {day_starts: 8:30, patrol_deadline: 18:00}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    found = {p.path: p.message for p in info.value.problems}
    assert found["duty.day_starts"].startswith("510 is a number")
    assert found["duty.day_starts"].endswith('quote it: "08:30"')
    assert found["duty.patrol_deadline"].endswith('quote it: "18:00"')


def test_check_config_counts_in_plain_words() -> None:
    """Prevents "1 people": the success line counts with the right noun, in the site's
    language (minimal.yaml is an English site with one person and no equipment)."""
    runner = CliRunner()
    minimal = runner.invoke(app, ["check-config", str(SITES / "minimal.yaml")])
    assert minimal.exit_code == 0, minimal.output
    assert "1 person, 2 posts, 2 readers, 0 pieces of equipment" in minimal.output
    assert "people" not in minimal.output and "站点" not in minimal.output
    zcity = runner.invoke(app, ["check-config", str(SITES / "zcity.yaml")])
    assert "9 人，9 个岗位，10 个读卡器，3 台设备" in zcity.output
    assert "/ site file is valid: zcity (Z城物业项目), 9 people, 9 posts" in zcity.output


def test_check_config_on_a_missing_file(tmp_path: pathlib.Path) -> None:
    """A mistyped file name is said as such, in one line, with exit 1 (not a path error)."""
    missing = tmp_path / "sitee.yaml"
    result = CliRunner().invoke(app, ["check-config", str(missing)])
    assert result.exit_code == 1
    assert result.output == f"文件不存在 / no such file: {missing}\n"
