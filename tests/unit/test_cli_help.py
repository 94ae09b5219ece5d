"""`patrol-gateway --version` and `--help` as a new user reads them (issue 8 item 20)."""

from __future__ import annotations

import re
from importlib.metadata import version

from typer import _click
from typer.main import get_command
from typer.testing import CliRunner

from gateway.cli import app

# What typer prints by itself: a `<type>` beside a parameter, `{name}` in a usage line.
TYPE_NOISE = re.compile(r"<(path|str|bool|int|float|datetime|%[^>]*)>|\{\w+\}")


def command_paths(command: _click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under `command`, as the words to type."""
    out = [path]
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            out += command_paths(sub, (*path, name))
    return out


def test_version_prints_the_package_version() -> None:
    """Prevents `--version` being refused as an unknown option (contract §7)."""
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"patrol-gateway {version('patrol-gateway')}\n"


def test_help_of_every_command_is_without_type_noise() -> None:
    """Prevents `{path}` in usage lines and `<path>`/`<str>`/`<bool>` beside options, on every
    command, including ones added later (the top-level group tidies them all)."""
    paths = command_paths(get_command(app))
    assert ("check-config",) in paths and ("roster", "swap") in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert not TYPE_NOISE.search(result.output), (path, result.output)


def test_usage_lines_name_what_to_write() -> None:
    """The metavars of contract §7: `check-config FILE`, `replay … EVENTS`, `--config FILE`."""
    runner = CliRunner()
    check = runner.invoke(app, ["check-config", "--help"], env={"COLUMNS": "200"})
    assert re.search(r"Usage: \S+ check-config \[OPTIONS\] FILE\s*$", check.output, re.M)
    replay = runner.invoke(app, ["replay", "--help"], env={"COLUMNS": "200"})
    assert re.search(r"Usage: \S+ replay \[OPTIONS\] EVENTS\s*$", replay.output, re.M)
    assert re.search(r"--config\s+-c\s+FILE", replay.output), replay.output
    assert re.search(r"--until\s+TS", replay.output), replay.output
    missing = runner.invoke(app, ["check-config"])
    assert missing.exit_code == 2 and "Missing argument 'FILE'" in missing.output
