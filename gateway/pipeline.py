"""Decode → store → rules → what to publish: the one path every message takes, live or replayed.

The caller owns the commit: it commits the store after a batch and only then acknowledges the
batch to the broker and publishes what `handle` returned (scan answers, alerts, refusals).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass

from gateway import messages
from gateway.alerts.book import AlertBook, Transition
from gateway.alerts.record import Alert
from gateway.config.site import Site
from gateway.events import DeviceStatus, Event, Message, Reading, Rejection, Scan
from gateway.ingest.decode import Decoder, reason_text
from gateway.ingest.topics import Topics
from gateway.roster import Swap
from gateway.rules.engine import Engine
from gateway.rules.flags import Flagger
from gateway.rules.registry import build_rules
from gateway.rules.status import patrol_status
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import iso

# How far back a restart reads the record to rebuild the rules: the duty rules look at the
# current and the previous duty day; rounds and staleness at the last scan or reading.
RESTORE_DAYS = 2


@dataclass(frozen=True)
class Publication:
    """Something to publish once the batch is committed."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    outbox_id: int | None = None  # kept in the store until the broker confirms it


@dataclass
class Outcome:
    """What one message (or one tick of the clock) produced."""

    publications: list[Publication]
    transitions: list[Transition]


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
    ) -> None:
        self.site = site
        self.grace = grace
        self.topics = topics
        self.store = store
        self.live = live
        self.start = start
        self.decoder = Decoder(site, topics)
        self.book = AlertBook(site.id, store.open_alerts())
        self.flagger = Flagger(site)
        self.engine = Engine(site, build_rules(site, start, live), self.book, start)
        self.counters: Counter[str] = Counter()
        self._last_status: bytes | None = None

    def mark(self) -> str:
        """What to persist with each commit so a restart knows which deadlines have fired."""
        instant, inclusive = self.engine.fired_through
        return f"{instant.isoformat()}{'+=' if inclusive else ''}"

    def restore(self, mark: str | None, swaps_through: int = 0) -> int:
        """Rebuild the rules from the stored record up to a persisted `mark()`, silently.

        Deadlines up to the mark fired before the restart and are not fired again; the alert
        book is the stored one. Every stored message counts (each was received no later than
        the mark plus the grace); of the swaps registered on the command line, those with an
        id up to `swaps_through` (the rest the caller feeds in live). Returns the number of
        events read back.
        """
        if mark is None:
            until, inclusive = self.start, False
        else:
            until = dt.datetime.fromisoformat(mark.removesuffix("+="))
            inclusive = mark.endswith("+=")
        cal = self.site.calendar
        horizon = max(self.start, cal.day_start(cal.day_of(until) - dt.timedelta(RESTORE_DAYS)))
        earlier = [
            Swap.live(s)
            for i, s in self.store.swaps_after(0)
            if i <= swaps_through and s.time < horizon
        ]
        scratch = Engine(
            self.site,
            build_rules(self.site, horizon, self.live, earlier),
            AlertBook(self.site.id),
            horizon,
        )
        events = self.store.events_between(horizon, until + self.grace, swaps_through)
        for received, event in events:
            if isinstance(event, Scan):
                self.flagger.remember(event)
            scratch.process(event, received, self.grace)
        scratch.catch_up((until, inclusive))
        scratch.book = self.book
        self.engine = scratch
        return len(events)

    def handle(self, msg: Message) -> Outcome:
        """One inbound message; the store is written but not committed."""
        self.counters["received"] += 1
        decoded = self.decoder.decode(msg)
        pubs = [self._rejected(r, msg.received_at) for r in decoded.rejections]
        transitions: list[Transition] = []
        event = decoded.event
        if isinstance(event, Scan):
            stored_flags = self.store.scan_flags(event.reader, event.seq)
            if stored_flags is not None:
                # A redelivery: answer as the first time, count it, keep it from the rules.
                self.counters["duplicates"] += 1
                pubs.append(self._answer(dataclasses.replace(event, flags=stored_flags)))
            else:
                event = self.flagger.flag(event)
                self.store.add_scan(event)
                self.flagger.remember(event)
                for flag in event.flags:
                    self.counters[f"flag_{flag}"] += 1
                pubs.append(self._answer(event))
                transitions = self.engine.process(event, msg.received_at, self.grace)
        elif isinstance(event, Reading):
            if self.store.add_reading(event):
                transitions = self.engine.process(event, msg.received_at, self.grace)
            else:
                self.counters["duplicates"] += 1
        elif isinstance(event, DeviceStatus):
            self.store.add_status(event)
            transitions = self.engine.process(event, msg.received_at, self.grace)
        if event is not None:
            self.counters[type(event).__name__.lower()] += 1
        pubs += self._record(transitions)
        return Outcome(pubs, transitions)

    def inject(self, event: Event, at: dt.datetime) -> Outcome:
        """An event that did not come over MQTT (a swap registered on the command line)."""
        transitions = self.engine.process(event, at, self.grace)
        return Outcome(self._record(transitions), transitions)

    def status(self) -> Publication | None:
        """The retained patrol status, when it changed since the last call."""
        body = patrol_status(self.site, self.engine, self.engine.now)
        if body is None:
            return None
        payload = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
        if payload == self._last_status:
            return None
        self._last_status = payload
        return Publication(self.topics.patrol_status, payload, 1, True)

    def forget_status(self) -> None:
        """Make the next `status()` publish even if nothing changed (after a reconnect)."""
        self._last_status = None

    def tick(self, now: dt.datetime) -> Outcome:
        """Move the clock to `now`, firing every deadline up to it."""
        transitions = self.engine.advance(now)
        return Outcome(self._record(transitions), transitions)

    def acknowledge(self, alert_id: str, at: dt.datetime, actor: str, comment: str = "") -> Outcome:
        """An operator acknowledges an alert (rules that do not clear close on it)."""
        current = self.book.by_id(alert_id)
        if current is None:
            return Outcome([], [])
        transition = self.book.acknowledge(
            alert_id, at, actor, comment, close=current.rule in NON_CLEARING
        )
        transitions = [] if transition is None else [transition]
        return Outcome(self._record(transitions), transitions)

    def _record(self, transitions: list[Transition]) -> list[Publication]:
        pubs = []
        for t in transitions:
            self.store.add_transition(t, self.site.tz)
            self.counters[f"alert_{t.change}"] += 1
            pub = self.alert_publication(t.alert)
            if self.live:
                outbox_id = self.store.add_outbox(pub.topic, pub.payload, pub.qos, pub.retain)
                pub = dataclasses.replace(pub, outbox_id=outbox_id)
            pubs.append(pub)
        return pubs

    def alert_publication(self, alert: Alert) -> Publication:
        """The retained alert record, or the empty retained message that clears it (§2)."""
        payload = b""
        if alert.state != "closed":
            payload = json.dumps(alert.to_json(self.site.tz), ensure_ascii=False).encode()
        return Publication(self.topics.alert(alert.id), payload, 1, True)

    def _rejected(self, rejection: Rejection, at: dt.datetime) -> Publication:
        reason = reason_text(rejection)
        self.store.add_rejection(rejection, reason, at)
        self.counters["rejected"] += 1
        self.counters[f"rejected_{rejection.code}"] += 1
        body = {
            "topic": rejection.topic,
            "reason": reason,
            "payload": rejection.payload[:512].decode("utf-8", errors="replace"),
        }
        return Publication(
            self.topics.rejected, json.dumps(body, ensure_ascii=False).encode(), 0, False
        )

    def _answer(self, scan: Scan) -> Publication:
        locale = self.site.config.site.locale
        person = self.site.people.get(scan.person) if scan.person else None
        if person is None:
            text = messages.text(locale, "ack.unknown")
        else:
            post = self.site.posts[scan.post].name
            clock = iso(scan.time, self.site.tz)[11:16]
            text = messages.text(locale, "ack.signed", post=post, time=clock)
        body = {
            "seq": scan.seq,
            "ok": person is not None,
            "person": None if person is None else person.name,
            "message": text,
            "flags": list(scan.flags),
        }
        return Publication(
            self.topics.ack(scan.reader), json.dumps(body, ensure_ascii=False).encode(), 1, False
        )


# Rules that do not clear by themselves; an acknowledgement closes them (contract §6).
NON_CLEARING = frozenset(
    {
        "scan.unknown_credential",
        "duty.unregistered_swap",
        "patrol.hours_short",
        "patrol.key_post_missed",
        "incident.major",
    }
)
