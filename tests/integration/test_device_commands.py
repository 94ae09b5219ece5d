"""The device commands under `python -m`: each module runs once, and the simulator starts once.

`python -m pkg.mod` runs `mod`'s file as `__main__`; if anything then imports `pkg.mod` by name,
the same file runs a second time as another module (two `Simulator` classes, two fault
tables), or runpy warns that it was already imported. A `sitecustomize` on the child's path
counts, with an audit hook, every execution of a module file of the project.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gateway.config import load_site
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "gateway" / "sites" / "zcity.yaml"

SITECUSTOMIZE = """
import atexit, collections, os, sys

_runs = collections.Counter()


def _count(event, args):
    if event == "exec" and hasattr(args[0], "co_filename"):
        _runs[args[0].co_filename] += 1


sys.addaudithook(_count)


@atexit.register
def _report():
    with open(os.environ["MODULE_RUNS_FILE"], "w", encoding="utf-8") as out:
        out.writelines(f"{n} {name}\\n" for name, n in _runs.items())
"""


def run_module(
    tmp_path: Path, module: str, *args: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], collections.Counter[str]]:
    """Run `python -m module args…`; also return how often each project file was executed."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    runs_file = tmp_path / "runs.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hook), str(REPO)]),
        "MODULE_RUNS_FILE": str(runs_file),
        "PYTHONWARNINGS": "error::RuntimeWarning",  # runpy's "found in sys.modules" warning
    }
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
    )
    runs: collections.Counter[str] = collections.Counter()
    for line in runs_file.read_text(encoding="utf-8").splitlines():
        count, name = line.split(" ", 1)
        path = Path(name)
        if path.is_absolute() and path.is_relative_to(REPO) and ".venv" not in path.parts:
            runs[str(path.relative_to(REPO))] += int(count)
    return proc, runs


@pytest.mark.parametrize(
    "module", ["devices.simulator", "devices.reader_bridge", "devices.meter_poller"]
)
def test_each_device_command_executes_each_module_once(tmp_path: Path, module: str) -> None:
    """Prevents a command whose module is executed twice under `python -m` (as `__main__` and
    again when imported by name), which the simulator's was."""
    proc, runs = run_module(tmp_path, module, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("usage:") == 1
    assert "RuntimeWarning" not in proc.stderr
    assert runs, "the audit hook saw no project module: the test is not measuring anything"
    assert any(name.startswith("devices") for name in runs)
    twice = {name: n for name, n in runs.items() if n > 1}
    assert twice == {}, f"executed more than once: {twice}"


def test_the_simulator_command_starts_once_and_publishes(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Prevents the documented `python -m devices.simulator` breaking or starting twice: it
    announces itself once, publishes the site's devices as online, stops on `--seconds`, and
    says once how much it published."""
    root = f"sim{uuid.uuid4().hex[:8]}"
    with MqttClient(mosquitto.url, timeout=15) as sub:
        sub.connect()
        sub.subscribe(f"{root}/zcity/device/+/status")
        proc, runs = run_module(
            tmp_path,
            "devices.simulator",
            *("--config", str(SITE), "--broker", mosquitto.url, "--root", root),
            *("--speed", "60", "--seconds", "2", "--start", "2026-11-27T07:50:00+08:00"),
        )
        assert proc.returncode == 0, proc.stderr
        devices = load_site(SITE).devices
        online = sub.wait_for(lambda m: m.payload == b"online", count=len(devices), what="online")
    assert {m.topic.split("/")[-2] for m in online} == set(devices)
    assert proc.stderr.count("simulating zcity's devices") == 1, proc.stderr
    assert proc.stderr.count("published ") == 1, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    assert runs["devices/simulator/engine.py"] == 1
    assert runs["devices/simulator/__main__.py"] == 1
