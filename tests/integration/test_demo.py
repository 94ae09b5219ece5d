"""`patrol-gateway demo`: the whole system in one command, nothing else installed (§7)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest


def _cli() -> str:
    beside = Path(sys.executable).with_name("patrol-gateway")
    found = str(beside) if beside.exists() else shutil.which("patrol-gateway")
    assert found, "the patrol-gateway command is not installed (pip install -e .)"
    return found


def test_demo_runs_stops_by_itself_and_stores_traffic(tmp_path: Path) -> None:
    """Prevents a demo that starts but records nothing, cannot be watched with mosquitto_sub,
    or does not stop cleanly: it exits 0 after --seconds, prints where its broker listens and
    the mosquitto_sub line for it, and its store holds scans and readings and no refusals.

    Prevents a demo whose faults stay invisible: in 16 simulated hours its injected equipment
    faults open equipment.out_of_range alerts and close them again in the store, it prints
    each transition as it happens (open and closed, as many as stored), and it prints the
    plant-room values — every equipment with its latest metrics and their units."""
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
    assert f"the record is kept in: {tmp_path}" in run.stdout, output  # --data: kept, and said
    assert "was removed" not in output
    [store] = tmp_path.glob("*.sqlite")
    with closing(sqlite3.connect(store)) as db:
        scans = db.execute("SELECT count(*) FROM scans").fetchone()[0]
        readings = db.execute("SELECT count(*) FROM readings").fetchone()[0]
        refused = db.execute("SELECT count(*) FROM rejected").fetchone()[0]
        changes = db.execute(
            "SELECT alert_id, change FROM alert_transitions"
            " WHERE json_extract(record, '$.rule') = 'equipment.out_of_range' ORDER BY id"
        ).fetchall()
    assert scans > 0 and readings > 0, output
    assert refused == 0, output

    opened = {alert for alert, change in changes if change == "open"}
    closed = {alert for alert, change in changes if change in ("closed", "cleared")}
    assert opened & closed, output  # at least one raised and cleared again
    printed = {
        change: len(re.findall(rf"{label} equipment\.out_of_range ", run.stdout))
        for change, label in (("open", "打开/open"), ("closed", "关闭/closed"))
    }
    assert printed == {"open": len(opened), "closed": len(closed)}, output

    # Prevents a demo whose notifications go nowhere visible: every message the notifier
    # sent reached the demo's local receiver and was printed, once (issue 10).
    with closing(sqlite3.connect(store)) as db:
        sent = db.execute("SELECT count(*) FROM notification_attempts WHERE ok = 1").fetchone()[0]
    notified = len(re.findall(r"✉ 通知/notified ", run.stdout))
    assert notified > 0 and notified == sent, output

    for name, metrics in PLANT.items():  # the plant-room values, with units
        line = next((ln for ln in run.stdout.splitlines() if name in ln and "⚙" in ln), "")
        assert all(re.search(metric, line) for metric in metrics), (name, output)


PLANT = {  # equipment name → what its plant-room line shows
    "1号变压器": [r"winding_temp_c \d+(\.\d)?°C", r"load_pct \d+(\.\d)?%"],
    "1号冷水机组": [r"supply_temp_c \d+(\.\d)?°C", r"leak (true|false)"],
    "1号柴油发电机": [r"battery_v \d+(\.\d)? V", r"fuel_pct \d+(\.\d)?%", r"ready (true|false)"],
}


def test_demo_moves_off_a_taken_default_port(tmp_path: Path) -> None:
    """`make run` must work when Mosquitto (installed by `make test`) already holds 1883."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", 1883))
        except OSError:
            pass  # something already holds 1883: the situation under test
        else:
            holder.listen()
        result = subprocess.run(
            [_cli(), "demo", "--seconds", "3", "--speed", "30", "--data", str(tmp_path)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )
    finally:
        holder.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Port 1883 is taken" in result.stderr
    assert "mqtt://127.0.0.1:1883" not in result.stdout


def test_double_ctrl_c_stops_the_demo_and_removes_its_temporary_store(tmp_path: Path) -> None:
    """Prevents `demo` hanging for ever when a second SIGINT arrives during the first one's
    handling (`timeout -s INT` and a quick double Ctrl-C both signal twice), leaving its broker
    running, or leaving a `patrol-demo-*` folder in the temp directory at every run without
    --data (issue 8 items 7 and 22)."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [_cli(), "demo", "--port", "0", "--speed", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        env=env,
    )
    try:
        assert demo.stdout is not None
        seen: list[str] = []
        for line in demo.stdout:  # up to the banner's last line: everything runs by then
            seen.append(line)
            if "Ctrl-C" in line:
                break
        banner = "".join(seen)
        port = re.search(r"mqtt://127\.0\.0\.1:(\d+)", banner)
        assert port and "Ctrl-C" in banner, banner
        [store_dir] = tmp_path.glob("patrol-demo-*")
        time.sleep(1.0)  # some traffic

        demo.send_signal(signal.SIGINT)
        demo.send_signal(signal.SIGINT)
        began = time.monotonic()
        rest, _ = demo.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    output = banner + rest
    assert demo.returncode == 0, output
    assert took < 15, (took, output)
    assert "final counters" in output, output
    assert f"The temporary store {store_dir} was removed" in output, output
    assert not store_dir.exists() and not list(tmp_path.glob("patrol-demo-*"))
    with pytest.raises(ConnectionRefusedError):  # the broker went with the demo
        socket.create_connection(("127.0.0.1", int(port.group(1))), timeout=5).close()
