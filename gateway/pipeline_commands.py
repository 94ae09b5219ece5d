"""Commands (contract §7) applied by the pipeline: alert actions, the handover confirmation,
swaps, manual sign-offs, incidents and the records' commands, each with what it did.

`CommandSteps` is a part of `Pipeline` (gateway/pipeline.py), kept apart to keep each module
readable; it uses the pipeline's book, engine, store and recording.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway import messages
from gateway.alerts.book import AlertBook, Transition
from gateway.alerts.record import Alert
from gateway.commands import MANUAL_WINDOW, MAX_SHELVE, NOT_YET, Command, CommandError
from gateway.commands import check_actor as _check_actor
from gateway.config.site import Site
from gateway.events import (
    Event,
    HandoverConfirmed,
    Scan,
    SwapRegistered,
    WorkOrderClosed,
    WorkOrderOpened,
)
from gateway.records import apply as records
from gateway.rules.duty import MANAGERS, DutyRules
from gateway.rules.engine import Engine
from gateway.rules.registry import closes_on_acknowledge
from gateway.store.sqlite import SqliteStore, StoredCommand
from gateway.timeutil import iso

if TYPE_CHECKING:
    from collections import Counter

MANUAL = "manual"
INCIDENT_MAJOR = "incident.major"


@dataclass(frozen=True)
class CommandOutcome:
    """What a command did: `ok` and the transitions, or a refusal saying why."""

    ok: bool
    message: str
    transitions: tuple[Transition, ...] = ()
    command_id: int | None = None
    before: tuple[Transition, ...] = ()  # deadlines that fired before the command applied

    def to_json(self, tz: dt.tzinfo) -> dict[str, Any]:
        """The result as stored with the command and shown to whoever sent it."""
        return {
            "ok": self.ok,
            "message": self.message,
            "alerts": [
                {**t.alert.to_json(tz), "change": t.change, "at": iso(t.at, tz)}
                for t in self.transitions
            ],
        }


class CommandSteps:
    """How the pipeline applies one command (a part of `Pipeline`)."""

    site: Site
    book: AlertBook
    engine: Engine
    store: SqliteStore
    grace: dt.timedelta
    counters: Counter[str]

    def record(self, transitions: list[Transition]) -> None:
        """`Pipeline.record`."""
        raise NotImplementedError

    def _scan(self, scan: Scan, at: dt.datetime) -> list[Transition]:
        """`Pipeline._scan`."""
        raise NotImplementedError

    def command(
        self, command: Command, at: dt.datetime, stored_id: int | None = None
    ) -> CommandOutcome:
        """Apply one command at the worker's clock `at`, and record it with what it did.

        `stored_id` is the id of a command another process queued in the store. A command that
        cannot apply is refused with the reason, recorded too, and changes nothing else.
        """
        # The deadlines before the command fire first, as they would before a message.
        before = tuple(self.engine.catch_up((at - self.grace, False)))
        self.record(list(before))
        try:
            return self._command(command, at, stored_id, before)
        finally:
            self.engine.invalidate()  # a command may change a rule's state directly

    def _command(
        self,
        command: Command,
        at: dt.datetime,
        stored_id: int | None,
        before: tuple[Transition, ...],
    ) -> CommandOutcome:
        try:
            _check_actor(self.site, command)
            if command.action in NOT_YET:
                raise CommandError(
                    f"{command.action}: 此版本尚不支持 / not supported by this version yet"
                )
            transitions, message = self._apply(command, at)
        except CommandError as exc:
            self.counters["commands_refused"] += 1
            ident = self.store.record_command(
                stored_id, command.action, command.body(), command.by, at, "refused", str(exc)
            )
            return CommandOutcome(False, str(exc), (), ident, before)
        self.record(transitions)
        self.counters["commands"] += 1
        outcome = CommandOutcome(True, message, tuple(transitions), None, before)
        result = outcome.to_json(self.site.tz)
        ident = self.store.record_command(
            stored_id,
            command.action,
            command.body(),
            command.by,
            at,
            "done",
            json.dumps(result, ensure_ascii=False),
        )
        return dataclasses.replace(outcome, command_id=ident)

    def _apply(self, command: Command, at: dt.datetime) -> tuple[list[Transition], str]:
        action, args, by = command.action, command.args, command.by
        if action.startswith("alert."):
            alert = self._target(command)
            comment = str(args.get("comment", ""))
            if action == "alert.ack":
                if alert.state == "acknowledged":
                    raise CommandError(
                        f"告警已确认 / alert {alert.id} is already acknowledged by "
                        f"{alert.acknowledged_by}: nothing changed"
                    )
                close = closes_on_acknowledge(alert, at, self.site)
                t = self.book.acknowledge(alert.id, at, by, comment, close=close)
                assert t is not None
                word = (
                    "已确认并关闭 / acknowledged and closed" if close else "已确认 / acknowledged"
                )
                return [t], f"{word}: {alert.id}"
            if action == "alert.comment":
                t = self.book.comment(alert.id, at, by, comment)
                assert t is not None
                return [t], f"已备注 / commented: {alert.id}"
            until = command.instant("until")
            if not at < until <= at + MAX_SHELVE:
                raise CommandError(
                    f"搁置时间须在 24 小时内 / shelve until must be after now and within 24 h "
                    f"(now {iso(at, self.site.tz)})"
                )
            t = self.book.shelve(alert.id, until, at, by, comment)
            assert t is not None
            return [t], f"已搁置至 / shelved until {iso(until, self.site.tz)}: {alert.id}"
        if action == "handover.confirm":
            day = command.date()
            duty = self._duty()
            parties = set(duty.handover_parties(day, at))
            if by not in parties:
                names = ", ".join(sorted(p for p in parties if p))
                raise CommandError(
                    f"只有交接双方可以确认 / only the two managers of the handover into {day} "
                    f"({names}) may confirm it"
                )
            transitions = self.engine.process(HandoverConfirmed(day, by, at), at, self.grace)
            return transitions, f"已确认交接 / handover into {day} confirmed by {by}"
        if action in ("swap.register", "swap.cancel"):
            return self._swap(command, at)
        if action == "scan.manual":
            return self._manual_scan(command, at)
        if action == "incident.report":
            return self._incident(command, at)
        if action in records.APPLIES:
            process = lambda event: self.engine.process(event, at, self.grace)  # noqa: E731
            return records.apply(command, at, self.site, self.store.connection, process)
        raise CommandError(f"{action}: 此版本尚不支持 / not supported by this version yet")

    def _target(self, command: Command) -> Alert:
        args = command.args
        if "id" in args:
            alert = self.book.by_id(str(args["id"]))
            if alert is None:
                stored = self.store.alert(str(args["id"]))
                if stored is not None:
                    raise CommandError(
                        f"告警已关闭，未作更改 / alert {stored.id} is closed: nothing changed"
                    )
                raise CommandError(f"未知告警 / no alert with id {args['id']!r}")
            return alert
        found = self.book.get(str(args["rule"]), str(args["subject"]))
        if found is None:
            raise CommandError(
                f"没有未关闭的告警 / no open alert for {args['rule']} {args['subject']}"
            )
        return found

    def _duty(self) -> DutyRules:
        duty = self.engine.find(DutyRules)
        if duty is None:
            raise CommandError("此站点没有值班规则 / this site has no duty rules (no roster)")
        return duty

    def _swap(self, command: Command, at: dt.datetime) -> tuple[list[Transition], str]:
        duty = self._duty()
        day = command.date()
        if command.action == "swap.register":
            manager = str(command.args["manager"])
            if not self.site.has_role(manager, MANAGERS):
                raise CommandError(
                    f"{manager!r} 不是值班经理 / is not a person with the duty_manager role"
                )
            if duty.roster.manager(day, at) == manager:
                raise CommandError(
                    f"{manager} 已是 {day} 的值班经理 / is already the duty manager of {day}"
                )
            word = f"已登记替班 / swap registered: {day} → {manager}"
        else:
            swap = duty.roster.swap_in_effect(day, at)
            rostered = duty.roster.rostered(day)
            if swap is None or swap.manager == rostered or rostered is None:
                raise CommandError(f"{day} 没有可撤销的替班 / no swap for {day} to cancel")
            if at >= self.site.calendar.day_start(day):
                raise CommandError(
                    f"{day} 的当值日已开始，不能撤销 / the duty day {day} has started: register "
                    "a swap to the person who takes the duty instead"
                )
            manager = rostered
            word = f"已撤销替班 / swap cancelled: {day} → {manager} (roster)"
        transitions = self.engine.process(SwapRegistered(day, manager, at), at, self.grace)
        return transitions, word

    def _manual_scan(self, command: Command, at: dt.datetime) -> tuple[list[Transition], str]:
        post = str(command.args["post"])
        if post not in self.site.posts:
            raise CommandError(f"未知岗位 / unknown post {post!r}")
        time = command.instant("time")
        if not at - MANUAL_WINDOW <= time <= at:
            raise CommandError(
                "补签时间须在最近一小时内 / a manual sign-off is for a time within the last hour"
            )
        scan = Scan(
            reader=MANUAL,
            post=post,
            credential=f"manual:{command.by}",
            method="manual",
            person=command.by,
            time=time,
            received_at=at,
            flags=(MANUAL,),
        )
        transitions = self._scan(scan, at)
        return transitions, f"已补签 / manual sign-off at {self.site.posts[post].name}"

    def _incident(self, command: Command, at: dt.datetime) -> tuple[list[Transition], str]:
        ident = str(command.args["id"])
        title = str(command.args["title"])
        if not command.args.get("major"):
            return [], f"已记录事件 / incident {ident} recorded"
        if self.book.get(INCIDENT_MAJOR, ident) is not None:
            raise CommandError(f"事件 {ident} 已上报 / incident {ident} is already reported")
        t = self.book.raise_(
            INCIDENT_MAJOR,
            ident,
            "critical",
            at,
            messages.for_site(self.site, INCIDENT_MAJOR, title=title),
            {"title": title, "reported_by": command.by},
        )
        return [t], f"已上报重大事件 / major incident {ident} reported"


def command_event(stored: StoredCommand, site: Site) -> Event | None:
    """The rule event an applied command stands for (swaps, confirmations), if any."""
    if stored.at is None:
        return None
    body = stored.body
    if stored.action == "swap.register":
        return SwapRegistered(dt.date.fromisoformat(body["date"]), body["manager"], stored.at)
    if stored.action == "swap.cancel":
        day = dt.date.fromisoformat(body["date"])
        rostered = site.rostered_manager(day)
        return None if rostered is None else SwapRegistered(day, rostered, stored.at)
    if stored.action == "handover.confirm":
        return HandoverConfirmed(dt.date.fromisoformat(body["date"]), stored.actor, stored.at)
    if stored.action == "workorder.open":
        due = body.get("due")
        due_at = None if due is None else dt.datetime.fromisoformat(due)
        return WorkOrderOpened(body["id"], due_at, body["title"], stored.at)
    if stored.action == "workorder.close":
        return WorkOrderClosed(body["id"], stored.at)
    return None
