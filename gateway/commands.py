"""Commands: everything that changes the record and does not arrive over MQTT (contract §6, §7).

A command comes from the command line (queued in the store by another process), from the API
(submitted in-process), or from a replay line. Whatever its source it is parsed here into a
`Command` and applied by the worker, the one writer, on the worker's clock, so acknowledgements,
confirmations and incidents are part of the record and replay exactly.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from gateway.config.site import Site
from gateway.timeutil import BadTime, parse_instant

# The actions of contract §7, with their required and optional arguments.
ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "alert.ack": (frozenset(), frozenset({"id", "rule", "subject", "comment"})),
    "alert.comment": (frozenset({"comment"}), frozenset({"id", "rule", "subject"})),
    "alert.shelve": (frozenset({"until"}), frozenset({"id", "rule", "subject", "comment"})),
    "handover.confirm": (frozenset({"date"}), frozenset({"notes"})),
    "incident.report": (
        frozenset({"title"}),
        frozenset({"id", "major", "where", "details", "when", "told"}),
    ),
    "swap.register": (frozenset({"date", "manager"}), frozenset()),
    "swap.cancel": (frozenset({"date"}), frozenset()),
    "scan.manual": (frozenset({"post", "time", "reason"}), frozenset()),
    # The records (§11, docs/records.md).
    "workorder.open": (
        frozenset({"title"}),
        frozenset({"id", "due", "department", "alert", "where"}),
    ),
    "workorder.close": (frozenset({"id"}), frozenset({"comment"})),
    "violation.waive": (frozenset({"rule", "subject", "date", "reason"}), frozenset()),
    "complaint.receive": (frozenset({"what"}), frozenset({"id", "who", "how", "where"})),
    "complaint.callback": (frozenset({"id", "comment"}), frozenset()),
    "log.add": (frozenset({"kind", "text"}), frozenset({"date", "post", "follow_up", "photo"})),
    "review.write": (frozenset({"week", "text"}), frozenset()),
}
# Actions this version parses but cannot apply yet.
NOT_YET: frozenset[str] = frozenset()
# The kinds of a work-log entry the duty manager writes (3.4, 4.5, 4.8).
LOG_KINDS = ("call", "handover", "caution", "finding", "note")
# A photo of a finding (4.5): the name the API gave the upload (its SHA-256 and type).
PHOTO = re.compile(r"[0-9a-f]{64}\.(jpg|png|webp)")

MAX_SHELVE = dt.timedelta(hours=24)  # §6
MANUAL_WINDOW = dt.timedelta(hours=1)  # §10: a manual sign-off is for the last hour


class CommandError(ValueError):
    """A command that cannot be parsed or cannot apply; the text says why (中文 / English)."""


@dataclass(frozen=True)
class Command:
    """One validated command: what, by whom, with which arguments."""

    action: str
    by: str
    args: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The JSON body stored with the command (and accepted back by `parse`)."""
        return {"action": self.action, "by": self.by, **self.args}

    # Typed access to the arguments, each checked by `parse`.
    def date(self) -> dt.date:
        """The `date` argument."""
        return dt.date.fromisoformat(str(self.args["date"]))

    def instant(self, name: str) -> dt.datetime:
        """An instant argument (stored as ISO text with an offset)."""
        return dt.datetime.fromisoformat(str(self.args[name]))


def parse(raw: object, tz: dt.tzinfo) -> Command:
    """Read a command object (`{"action": …, "by": …, …}`); raise CommandError saying why not."""
    if not isinstance(raw, dict):
        raise CommandError('命令应为对象 / a command is an object {"action": …, "by": …}')
    action = raw.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        known = ", ".join(ACTIONS)
        raise CommandError(f"未知操作 / unknown action {action!r}: one of {known}")
    by = raw.get("by")
    if not isinstance(by, str) or not by:
        raise CommandError(f"{action}: 缺少 by / by (the person id acting) is required")
    required, optional = ACTIONS[action]
    args = {k: v for k, v in raw.items() if k not in ("action", "by")}
    missing = sorted(required - args.keys())
    if missing:
        raise CommandError(f"{action}: 缺少字段 / missing {', '.join(missing)}")
    unknown = sorted(args.keys() - required - optional)
    if unknown:
        raise CommandError(f"{action}: 未知字段 / unknown field {', '.join(unknown)}")
    if action.startswith("alert.") and "id" not in args and not {"rule", "subject"} <= args.keys():
        raise CommandError(f"{action}: 需要 id 或 rule+subject / give id, or rule and subject")
    for name in ("until", "time", "due", "when"):
        if name in args:
            try:
                args[name] = parse_instant(args[name], tz).isoformat()
            except BadTime as exc:
                raise CommandError(f"{action}: {name}: {exc}") from None
    if "date" in args:
        try:
            args["date"] = dt.date.fromisoformat(str(args["date"])).isoformat()
        except ValueError:
            raise CommandError(f"{action}: date: 应为 YYYY-MM-DD / write YYYY-MM-DD") from None
    for name in (
        "comment",
        "notes",
        "title",
        "reason",
        "where",
        "details",
        "what",
        "who",
        "how",
        "text",
        "department",
        "follow_up",
        "id",
        "alert",
        "rule",
        "subject",
        "post",
    ):
        if name in args and not isinstance(args[name], str):
            raise CommandError(f"{action}: {name} 应为文本 / {name} must be text")
    if "major" in args and not isinstance(args["major"], bool):
        raise CommandError(f"{action}: major 应为 true/false / major must be true or false")
    if action == "incident.report" and "id" not in args:
        args["id"] = uuid.uuid4().hex[:12]
    if action in ("workorder.open", "complaint.receive") and "id" not in args:
        prefix = "WO" if action == "workorder.open" else "TS"
        args["id"] = f"{prefix}-{uuid.uuid4().hex[:8]}"
    if action == "log.add" and args["kind"] not in LOG_KINDS:
        raise CommandError(f"{action}: kind 应为 / kind must be one of {', '.join(LOG_KINDS)}")
    if "photo" in args and not PHOTO.fullmatch(str(args["photo"])):
        raise CommandError(
            f"{action}: photo 应为上传所得的名称 / photo must be a name /photos gave"
        )
    if action == "review.write" and not re.fullmatch(r"\d{4}-W\d{2}", str(args["week"])):
        raise CommandError(f"{action}: week 应为 / week must look like 2026-W48")
    return Command(action, by, args)


def check_actor(site: Site, command: Command) -> None:
    """The actor must be a person of the site (§6)."""
    if command.by not in site.people:
        raise CommandError(
            f"未知人员 / unknown person {command.by!r}: not in the site file's people"
        )
