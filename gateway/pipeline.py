"""Decode → store → rules: the one path every message and command takes, live or replayed.

The pipeline returns domain results (scan answers, refusals, alert transitions); rendering them
to MQTT topics and payloads is the MQTT side's job (`gateway/ingest/render.py`). The caller owns
the commit: it commits the store after a batch and only then acknowledges the batch to the
broker and delivers the answers. Alert transitions reach the outside through the forwarders,
which read them from the store after commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import messages
from gateway.alerts.book import AlertBook, Transition
from gateway.alerts.record import Alert
from gateway.commands import MANUAL_WINDOW, MAX_SHELVE, NOT_YET, Command, CommandError
from gateway.commands import check_actor as _check_actor
from gateway.config.models import Role
from gateway.config.site import Site
from gateway.events import (
    SEQ_RESET,
    DeviceStatus,
    Event,
    HandoverConfirmed,
    Message,
    Reading,
    Rejection,
    Scan,
    SwapRegistered,
    WorkOrderClosed,
    WorkOrderOpened,
)
from gateway.ingest.decode import (
    MAX_PAYLOAD_BYTES,
    MAX_REASON_CHARS,
    Decoder,
    Parsed,
    reason_text,
)
from gateway.ingest.topics import Topics
from gateway.notify import outbox
from gateway.notify.policy import Escalation, Notice, ObservedBook
from gateway.records import apply as records
from gateway.roster import Swap
from gateway.rules.duty import DutyRules
from gateway.rules.engine import Engine
from gateway.rules.flags import Flagger
from gateway.rules.registry import build_rules, closes_on_acknowledge
from gateway.rules.status import on_duty, patrol_status
from gateway.rules.workorders import WorkOrders, open_orders
from gateway.store.sqlite import SqliteStore, StoredCommand
from gateway.timeutil import iso
from gateway.trust.secrets import Secrets, no_secrets
from gateway.trust.verify import EXCLUDING, Verifier

# How far back a restart reads the record to rebuild the rules: the duty rules look at the
# current and the previous duty day; rounds and staleness at the last scan or reading.
RESTORE_DAYS = 2
MANUAL = "manual"
INCIDENT_MAJOR = "incident.major"


@dataclass(frozen=True)
class Answer:
    """The answer to one scan (contract §3), for the reader to beep green or red."""

    reader: str
    seq: int | None
    ok: bool
    person: str | None  # the person's name
    message: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    """A message (or part of one) refused, with the reason a person reads (§2)."""

    rejection: Rejection
    reason: str


@dataclass
class Outcome:
    """What one message, command or tick of the clock produced."""

    answers: list[Answer] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)


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


# The counter of each kind of message (`received`'s parts).
_KIND: dict[type, str] = {Scan: "scan", Reading: "reading", DeviceStatus: "devicestatus"}


class ShelfExpiry:
    """Brings shelved alerts back when their shelve ends (§6): a deadline like any rule's."""

    events: tuple[type, ...] = ()  # no event moves a shelve
    watches_book = True  # its deadline follows the book (the engine re-reads it on a change)

    def __init__(self, book: AlertBook) -> None:
        self.book = book

    def on_event(self, ctx: Any, event: Event) -> None:
        """Events do not move a shelve."""

    def next_deadline(self) -> dt.datetime | None:
        """The earliest end of a shelve."""
        return self.book.shelf_expiry()

    def on_deadline(self, ctx: Any) -> None:
        """Unshelve what is due."""
        ctx.transitions.extend(ctx.book.unshelve_due(ctx.now))


class Pipeline:
    """Shared by `run`, `demo` and `replay`; holds the engine and the store, no clock, no I/O."""

    def __init__(
        self,
        site: Site,
        topics: Topics,
        store: SqliteStore,
        start: dt.datetime,
        live: bool = False,
        grace: dt.timedelta = dt.timedelta(0),
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        secrets: Callable[[], Secrets] = no_secrets,
    ) -> None:
        self.site = site
        self.grace = grace
        self.topics = topics
        self.store = store
        self.live = live
        self.start = start
        self.decoder = Decoder(site, topics, max_payload_bytes=max_payload_bytes)
        # Notifications (§9): the escalation policy sees every transition of the book at its
        # instant and runs as the engine's last rule; `decided` are its notices since taken.
        self.escalation = Escalation(site, self._on_duty, self._duty_manager)
        self.decided: list[Notice] = []
        self.book: AlertBook = ObservedBook(site.id, store.open_alerts(), self.escalation.observe)
        self.flagger = Flagger(site)
        self.verifier = Verifier(site, secrets, store)  # signatures and backdating (§1, §3)
        self.engine = self._engine(start, [])
        self.counters: Counter[str] = Counter()
        self.answers = True  # replay throws the scan answers away: it sets this False
        self._last_status: dict[str, Any] | None = None

    def _engine(self, start: dt.datetime, swaps: list[Swap]) -> Engine:
        rules = [
            *build_rules(self.site, start, self.live, swaps),
            ShelfExpiry(self.book),
            self.escalation,
        ]
        return Engine(self.site, rules, self.book, start)

    def mark(self) -> str:
        """What to persist with each commit so a restart knows which deadlines have fired."""
        instant, inclusive = self.engine.fired_through
        return f"{instant.isoformat()}{'+=' if inclusive else ''}"

    def restore(self, mark: str | None) -> int:
        """Rebuild the rules from the stored record up to a persisted `mark()`, silently.

        Deadlines up to the mark fired before the restart and are not fired again; the alert
        book is the stored one. Every stored message counts (each was received no later than
        the mark plus the grace), and every applied command (swaps, confirmations). Returns
        the number of events read back.
        """
        if mark is None:
            until, inclusive = self.start, False
        else:
            until = dt.datetime.fromisoformat(mark.removesuffix("+="))
            inclusive = mark.endswith("+=")
        cal = self.site.calendar
        horizon = max(self.start, cal.day_start(cal.day_of(until) - dt.timedelta(RESTORE_DAYS)))
        earlier: list[Swap] = []
        for row in self.store.applied_commands(("swap.register", "swap.cancel"), horizon):
            command = command_event(row, self.site)
            if isinstance(command, SwapRegistered):
                earlier.append(Swap.live(command))
        book, self.book = self.book, AlertBook(self.site.id)
        scratch = self._engine(horizon, earlier)
        orders = scratch.find(WorkOrders)
        if orders is not None:  # open ones older than the horizon (§11: overdue however old)
            orders.seed(open_orders(self.store.connection, horizon))
            scratch.invalidate()
        events = self.store.events_between(horizon, until + self.grace)
        for received, stored in events:
            event = (
                command_event(stored, self.site) if isinstance(stored, StoredCommand) else stored
            )
            if event is None:
                continue
            if isinstance(event, Scan):
                if not EXCLUDING.isdisjoint(event.flags):
                    continue  # backdated or a bad signature: counts for no rule (§5)
                self.flagger.remember(event)
            scratch.process(event, received, self.grace)
        scratch.catch_up((until, inclusive))
        self.book = book
        scratch.book = book
        for rule in scratch.rules:
            if isinstance(rule, ShelfExpiry):
                rule.book = book
        self.engine = scratch
        # What the escalation had decided at the last commit (restarts neither repeat nor skip).
        self.escalation.load(self.store.meta(outbox.STATE_KEY), {a.id for a in book.all_open()})
        scratch.invalidate()  # a new book, the escalation's state: ask every rule again
        return len(events)

    # -- messages ----------------------------------------------------------------------------

    def handle(self, msg: Message, parsed: Parsed | None = None) -> Outcome:
        """One inbound message; the store is written but not committed.

        `parsed`: its payload already read (replay), `msg.payload` then left empty.
        """
        self.counters["received"] += 1
        decoded = None if parsed is None else self.decoder.decode_parsed(msg, parsed)
        if decoded is None:
            if parsed is not None:
                msg = dataclasses.replace(msg, payload=parsed.payload)
            decoded = self.decoder.decode(msg)
        out = Outcome(refusals=[self.refuse(r, msg.received_at) for r in decoded.rejections])
        event = decoded.event
        if isinstance(event, Scan):
            stored = self.store.stored_scan(event)
            if isinstance(stored, tuple):
                # A redelivery: answer as the first time, count it, keep it from the rules.
                self.counters["duplicates"] += 1
                if self.answers:
                    out.answers.append(self._answer(dataclasses.replace(event, flags=stored)))
            else:
                if stored is True:  # the reader's counter started again (§3)
                    event = dataclasses.replace(event, flags=(*event.flags, SEQ_RESET))
                verdict = self.verifier.check(event)
                out.transitions = self._scan(verdict.scan, msg.received_at)
                if self.answers:
                    out.answers.append(self._answer(self._last_scan, verdict.reason))
        elif isinstance(event, Reading):
            stored_reading = self.store.stored_reading(event)
            if stored_reading is True:
                self.counters["duplicates"] += 1
            else:
                if stored_reading is False:
                    event = dataclasses.replace(event, flags=(*event.flags, SEQ_RESET))
                    self.counters[f"flag_{SEQ_RESET}"] += 1
                self.store.add_reading(event)
                out.transitions = self.engine.process(event, msg.received_at, self.grace)
        elif isinstance(event, DeviceStatus):
            self.store.add_status(event)
            out.transitions = self.engine.process(event, msg.received_at, self.grace)
        if event is not None:
            self.counters[_KIND[type(event)]] += 1
        self.record(out.transitions)
        return out

    def _scan(self, scan: Scan, at: dt.datetime) -> list[Transition]:
        counts = EXCLUDING.isdisjoint(scan.flags)  # backdated, bad_signature: no rule (§5)
        if counts:
            scan = self.flagger.flag(scan)
        self.store.add_scan(scan)
        for flag in scan.flags:
            self.counters[f"flag_{flag}"] += 1
        self._last_scan = scan
        if not counts:
            return []
        self.flagger.remember(scan)
        return self.engine.process(scan, at, self.grace)

    def refuse(self, rejection: Rejection, at: dt.datetime) -> Refusal:
        """Store and count a refusal; the reason is capped so one message cannot flood a log."""
        reason = reason_text(rejection)
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 1] + "…"
        self.store.add_rejection(rejection, reason, at)
        self.counters["rejected"] += 1
        self.counters[f"rejected_{rejection.code}"] += 1
        return Refusal(rejection, reason)

    def tick(self, now: dt.datetime) -> Outcome:
        """Move the clock to `now`, firing every deadline up to it."""
        transitions = self.engine.advance(now)
        self.record(transitions)
        return Outcome(transitions=transitions)

    def status(self) -> dict[str, Any] | None:
        """The patrol status document (§3), when it changed since the last call."""
        body = patrol_status(self.site, self.engine, self.engine.now)
        if body is None or body == self._last_status:
            return None
        self._last_status = body
        return body

    def forget_status(self) -> None:
        """Make the next `status()` return the document even if nothing changed."""
        self._last_status = None

    # -- commands ----------------------------------------------------------------------------

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
            if not self.site.has_role(manager, [Role.duty_manager]):
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

    # -- internals ---------------------------------------------------------------------------

    def record(self, transitions: list[Transition]) -> None:
        """Store transitions made outside the rules (a forwarder's health, say) and count them."""
        if not transitions and not self.escalation.decided:
            return  # most messages change nothing
        for t in transitions:
            self.store.add_transition(t, self.site.tz)
            self.counters[f"alert_{t.change}"] += 1
        # Notifications go into the same transaction as the transitions that decide them.
        notices = self.escalation.take()
        for notice in notices:
            outbox.add(self.store, notice, self.site.tz)
        self.decided += notices
        self.counters["notifications"] += len(notices)

    def before_commit(self) -> None:
        """Write what must be committed with the record: the escalation's state, once per commit
        however many transitions moved it (a restart neither repeats nor skips a stage)."""
        if self.escalation.changed:
            self.store.set_meta(outbox.STATE_KEY, self.escalation.snapshot())

    def _on_duty(self, now: dt.datetime) -> list[str]:
        duty = self.engine.find(DutyRules)
        return [] if duty is None else on_duty(duty, now)

    def _duty_manager(self, now: dt.datetime) -> list[str]:
        duty = self.engine.find(DutyRules)
        manager = None if duty is None else duty.roster.manager(duty.cal.day_of(now), now)
        return [] if manager is None else [manager]

    def take_notices(self) -> list[Notice]:
        """The notifications decided since the last call (replay prints them, run logs them)."""
        out, self.decided = self.decided, []
        return out

    def _answer(self, scan: Scan, reason: str | None = None) -> Answer:
        locale = self.site.config.site.locale
        person = self.site.people.get(scan.person) if scan.person else None
        excluded = sorted(EXCLUDING.intersection(scan.flags))
        if excluded:  # stored, not counted: answered ok: false with the reason (§5)
            words = ", ".join(excluded)
            text = reason or messages.bilingual(locale, f"不计入：{words}", f"not counted: {words}")
            name = None if person is None else person.name
            return Answer(scan.reader, scan.seq, False, name, text, scan.flags)
        if person is None:
            text = messages.text(locale, "ack.unknown")
        else:
            post = self.site.posts[scan.post].name
            clock = iso(scan.time, self.site.tz)[11:16]
            text = messages.text(locale, "ack.signed", post=post, time=clock)
        return Answer(
            scan.reader,
            scan.seq,
            person is not None,
            None if person is None else person.name,
            text,
            scan.flags,
        )


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
