"""Optional dependencies (issue 8 item 21): the core imports none; a missing one is named."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

from gateway.extras import EXTRA_MODULES, requires_extra

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Runs the code after it with every module of `BLOCKED` made uninstallable.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Blocker())
    del sys.argv[1]
    """
)


def without(blocked: set[str], code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where the `blocked` modules cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code), ",".join(blocked), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


ALL_EXTRAS = set().union(*EXTRA_MODULES.values())


def test_core_commands_import_no_extra(tmp_path: pathlib.Path) -> None:
    """Prevents `run`, `replay` or `check-config` needing the demo broker, the device libraries,
    FastAPI or the InfluxDB client: they work with every extra missing."""
    events = tmp_path / "events.jsonl"
    line = {
        "topic": "estate/zcity/device/fd-1/status",
        "payload": "offline",
        "received_at": "2026-11-27T10:00:00+08:00",
    }
    events.write_text(json.dumps(line) + "\n", encoding="utf-8")
    site = str(ROOT / "gateway" / "sites" / "zcity.yaml")
    result = without(
        ALL_EXTRAS,
        """
        import sys
        import gateway.app, gateway.cli, gateway.replay  # what `run` and `replay` load
        from typer.testing import CliRunner
        runner = CliRunner()
        check = runner.invoke(gateway.cli.app, ["check-config", sys.argv[1]])
        replay = runner.invoke(gateway.cli.app, ["replay", "--config", sys.argv[1], sys.argv[2]])
        print(check.exit_code, replay.exit_code, repr(check.exception), repr(replay.exception))
        print(replay.stdout)
        """,
        site,
        str(events),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("0 0 None None"), result.stdout + result.stderr
    assert '"rule": "device.offline"' in result.stdout


@pytest.mark.parametrize(
    ("blocked", "code", "extra"),
    [
        (
            "iotcore",
            "import sys; from gateway.cli import main; sys.argv[0] = 'patrol-gateway'; main()",
            "demo",
        ),
        (
            "serial",
            "import runpy; runpy.run_module('devices.reader_bridge', run_name='__main__')",
            "devices",
        ),
        (
            "pymodbus",
            "import runpy; runpy.run_module('devices.meter_poller', run_name='__main__')",
            "devices",
        ),
    ],
)
def test_a_missing_extra_is_named_not_a_traceback(blocked: str, code: str, extra: str) -> None:
    """Prevents a bare ModuleNotFoundError traceback: the demo and the device programs say
    which extra to install and exit 1."""
    args = ["demo", "--seconds", "0.1"] if extra == "demo" else ["--help"]
    result = without({blocked}, code, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"pip install 'patrol-gateway[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_requires_extra_passes_other_missing_modules_through() -> None:
    """A missing module that is not the extra's is a real bug, raised as it is."""
    with pytest.raises(SystemExit, match=r"\[demo\]"), requires_extra("demo"):
        raise ModuleNotFoundError("No module named 'iotcore.x'", name="iotcore.x")
    with pytest.raises(ModuleNotFoundError), requires_extra("demo"):
        raise ModuleNotFoundError("No module named 'gateway.nothing'", name="gateway.nothing")
