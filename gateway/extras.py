"""Optional dependencies (pyproject extras): a missing one is named with the command to fix it.

The core gateway (`run`, `replay`, `check-config`) imports none of these; the demo and the
device programs do, through `requires_extra`, so a missing package gives one clear line
instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# Each extra of pyproject.toml and the top-level modules it provides.
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "demo": frozenset({"iotcore"}),
    "devices": frozenset({"serial", "pymodbus"}),
    "api": frozenset({"fastapi", "uvicorn"}),
    "influx": frozenset({"influxdb_client"}),
    "qr": frozenset({"segno"}),
    "reports": frozenset({"fpdf"}),
}


def missing_extra_message(extra: str, module: str) -> str:
    """What to tell someone whose `module`, part of `extra`, is not installed."""
    fix = f"pip install 'patrol-gateway[{extra}]'"
    return (
        f"缺少可选依赖 {module}（属于 [{extra}]）：请运行 {fix}"
        f" / the optional dependency {module} (extra [{extra}]) is not installed: run {fix}"
    )


@contextmanager
def requires_extra(extra: str) -> Iterator[None]:
    """Imports in this block need `extra`; if one of its modules is missing, exit with a
    message naming the extra. Any other missing module is a real bug and is raised as is."""
    try:
        yield
    except ModuleNotFoundError as exc:
        root = (exc.name or "").partition(".")[0]
        if root not in EXTRA_MODULES[extra]:
            raise
        raise SystemExit(missing_extra_message(extra, root)) from None
