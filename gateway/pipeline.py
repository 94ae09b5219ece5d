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
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway import messages
from gateway.alerts.book import AlertBook, Transition
from gateway.config.site import Site
from gateway.events import (
    SEQ_RESET,
    DeviceStatus,
    Event,
    Message,
    Reading,
    Rejection,
    Scan,
    SwapRegistered,
)
from gateway.frozen import quick_init
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
from gateway.pipeline_commands import (
    INCIDENT_MAJOR,
    MANUAL,
    CommandOutcome,
    CommandSteps,
    command_event,
)
from gateway.roster import Swap
from gateway.rules.duty import DutyRules
from gateway.rules.engine import Engine
from gateway.rules.flags import Flagger
from gateway.rules.registry import build_rules
from gateway.rules.status import on_duty, patrol_status
from gateway.rules.workorders import WorkOrders, open_orders
from gateway.store.sqlite import SqliteStore, StoredCommand
from gateway.trust.secrets import Secrets, no_secrets
from gateway.trust.verify import EXCLUDING, Verifier

__all__ = [
    "INCIDENT_MAJOR",
    "MANUAL",
    "Answer",
    "CommandOutcome",
    "Outcome",
    "Pipeline",
    "Refusal",
    "command_event",
]

# How far back a restart reads the record to rebuild the rules: the duty rules look at the
# current and the previous duty day; rounds and staleness at the last scan or reading.
RESTORE_DAYS = 2


@quick_init
@dataclass(frozen=True)
class Answer:
    """The answer to one scan (contract §3), for the reader to beep green or red."""

    reader: str
    seq: int | None
    ok: bool
    person: str | None  # the person's name
    message: str
    flags: tuple[str, ...]


@quick_init
@dataclass(frozen=True)
class Refusal:
    """A message (or part of one) refused, with the reason a person reads (§2)."""

    rejection: Rejection
    reason: str


@quick_init
@dataclass(frozen=True)
class Outcome:
    """What one message, command or tick of the clock produced."""

    answers: Sequence[Answer] = ()
    refusals: Sequence[Refusal] = ()
    transitions: Sequence[Transition] = ()


_QUIET = Outcome()  # what most messages produce in a replay (no answers): one, shared


_FLAG_COUNTERS: dict[str, str] = {}  # a scan flag → the name of its counter ("flag_…")


def _weakly(method: Callable[[dt.datetime], list[str]]) -> Callable[[dt.datetime], list[str]]:
    """`method` of the pipeline, without keeping the pipeline alive. Its escalation holding it
    made the pipeline and all it holds (the rules, the store's twin) one cycle that only the
    garbage collector frees, walking all of it: 300 ms after a replay of 100,000 lines."""
    ref = weakref.WeakMethod(method)

    def call(now: dt.datetime) -> list[str]:
        bound = ref()
        return [] if bound is None else bound(now)

    return call


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


class Pipeline(CommandSteps):
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
        self.escalation = Escalation(site, _weakly(self._on_duty), _weakly(self._duty_manager))
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
        counters = self.counters
        counters["received"] += 1
        event = None if parsed is None else self.decoder.decode_parsed(msg, parsed)
        rejections: tuple[Rejection, ...] = ()
        if event is None:
            if parsed is not None:
                msg = dataclasses.replace(msg, payload=parsed.payload)
            decoded = self.decoder.decode(msg)
            event, rejections = decoded.event, decoded.rejections
        at = msg.received_at
        refusals = [self.refuse(r, at) for r in rejections] if rejections else ()
        answers: Sequence[Answer] = ()  # one at most
        transitions: Sequence[Transition] = ()
        if isinstance(event, Reading):  # the commonest first
            counters["reading"] += 1  # each kind counted is a part of `received`
            stored_reading = self.store.stored_reading(event)
            if stored_reading is True:
                counters["duplicates"] += 1
            else:
                if stored_reading is False:
                    event = dataclasses.replace(event, flags=(*event.flags, SEQ_RESET))
                    counters[f"flag_{SEQ_RESET}"] += 1
                self.store.add_reading(event)
                transitions = self.engine.process(event, at, self.grace)
        elif isinstance(event, Scan):
            counters["scan"] += 1
            stored = self.store.stored_scan(event)
            if isinstance(stored, tuple):
                # A redelivery: answer as the first time, count it, keep it from the rules.
                counters["duplicates"] += 1
                if self.answers:
                    answers = [self._answer(event.with_flags(stored))]
            else:
                if stored is True:  # the reader's counter started again (§3)
                    event = event.with_flags((*event.flags, SEQ_RESET))
                verdict = self.verifier.check(event)
                transitions = self._scan(verdict.scan, at)
                if self.answers:
                    answers = [self._answer(self._last_scan, verdict.reason)]
        elif isinstance(event, DeviceStatus):
            counters["devicestatus"] += 1
            self.store.add_status(event)
            transitions = self.engine.process(event, at, self.grace)
        if transitions or self.escalation.decided:  # most messages change nothing
            self.record(transitions)
        elif not answers and not refusals:
            return _QUIET
        return Outcome(answers, refusals, transitions)

    def _scan(self, scan: Scan, at: dt.datetime) -> list[Transition]:
        counts = EXCLUDING.isdisjoint(scan.flags)  # backdated, bad_signature: no rule (§5)
        if counts:
            scan = self.flagger.note(scan)
        self.store.add_scan(scan)
        for flag in scan.flags:  # most scans carry one: its counter's name is made once
            name = _FLAG_COUNTERS.get(flag)
            if name is None:
                name = _FLAG_COUNTERS[flag] = f"flag_{flag}"
            self.counters[name] += 1
        self._last_scan = scan
        if not counts:
            return []
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

    # -- internals ---------------------------------------------------------------------------

    def record(self, transitions: Sequence[Transition]) -> None:
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
            local = scan.time.astimezone(self.site.tz)
            clock = f"{local.hour:02d}:{local.minute:02d}"  # HH:MM, without a whole ISO text
            text = messages.text(locale, "ack.signed", post=post, time=clock)
        return Answer(
            scan.reader,
            scan.seq,
            person is not None,
            None if person is None else person.name,
            text,
            scan.flags,
        )
