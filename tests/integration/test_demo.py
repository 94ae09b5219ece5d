"""`patrol-gateway demo`: the whole system in one command, nothing else installed (§7)."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path


def _cli() -> str:
    beside = Path(sys.executable).with_name("patrol-gateway")
    found = str(beside) if beside.exists() else shutil.which("patrol-gateway")
    assert found, "the patrol-gateway command is not installed (pip install -e .)"
    return found


def test_demo_runs_stops_by_itself_and_stores_traffic(tmp_path: Path) -> None:
    """Prevents a demo that starts but records nothing, cannot be watched with mosquitto_sub,
    or does not stop cleanly: it exits 0 after --seconds, prints where its broker listens and
    the mosquitto_sub line for it, and its store holds scans and readings and no refusals."""
    args = ["demo", "--port", "0", "--seconds", "8", "--speed", "120", "--data", str(tmp_path)]
    run = subprocess.run(
        [_cli(), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    match = re.search(r"mqtt://127\.0\.0\.1:(\d+)", run.stdout)
    assert match, output
    port = match.group(1)
    assert f"mosquitto_sub -h 127.0.0.1 -p {port} -t 'estate/#' -v" in run.stdout, output
    assert "Ctrl-C" in run.stdout
    assert str(tmp_path) in run.stdout
    [store] = tmp_path.glob("*.sqlite")
    with closing(sqlite3.connect(store)) as db:
        scans = db.execute("SELECT count(*) FROM scans").fetchone()[0]
        readings = db.execute("SELECT count(*) FROM readings").fetchone()[0]
        refused = db.execute("SELECT count(*) FROM rejected").fetchone()[0]
    assert scans > 0 and readings > 0, output
    assert refused == 0, output
