"""Plain `--help` and usage lines for `patrol-gateway`, whatever commands are added.

Typer prints a type beside every parameter (`<path>`, `<str>`, `<bool>`) and a required
argument as `{path}` in the usage line. `TidyGroup`, the class of the top-level app, walks
every command once when the app is built and gives each parameter a metavar that says what to
write (`FILE`, `DIR`, `URL`, `TS`): an explicit `metavar=` wins, then the table below by
parameter name, then the name in capitals. Flags show no metavar at all.
"""

from __future__ import annotations

from typing import Any

from typer import _click
from typer.core import TyperArgument, TyperGroup, TyperOption

# Parameter name -> what to write; the words of contract §7.
METAVARS: dict[str, str] = {
    "config": "FILE",
    "path": "FILE",
    "events": "EVENTS",
    "store": "FILE",
    "out": "PATH",
    "data": "DIR",
    "broker": "URL",
    "influx": "URL",
    "root": "NAME",
    "until": "TS",
    "by": "PERSON",
    "manager": "PERSON",
    "date": "DATE",
    "week": "WEEK",
    "comment": "TEXT",
    "title": "TEXT",
    "http": "HOST:PORT",
    "port": "PORT",
    "seconds": "SECONDS",
    "speed": "N",
}


class _PlainArgument(TyperArgument):
    """An argument shown by its metavar alone: `FILE`, not `{path}` or `path <path>`."""

    def display_type_rich(self, ctx: _click.Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        return name if self.nargs == 1 else f"{name}..."


def _metavar(name: str | None, param: TyperOption | TyperArgument) -> str:
    desc = param.type_descriptor
    if desc.is_choice and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    key = (name or "value").lower()
    return METAVARS.get(key, key.upper().replace("-", "_"))


def tidy(command: _click.Command) -> None:
    """Give every parameter of `command` and its subcommands a plain metavar."""
    params = list(command.params)
    help_option = command.get_help_option(_click.Context(command))
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if isinstance(param, TyperOption):
            if param.is_flag or param.count:
                param.metavar = ""
            elif param.metavar is None:
                param.metavar = _metavar(param.name, param)
        elif isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = _metavar(param.name, param)
            param.__class__ = _PlainArgument
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)


class TidyGroup(TyperGroup):
    """The top-level group: its commands, at any depth, get plain help (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tidy(self)
