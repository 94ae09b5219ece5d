"""`patrol-gateway replay`: recorded traffic through the live pipeline on a simulated clock (§7)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TextIO

import orjson

from gateway import gctune
from gateway.alerts.book import Transition, change_word
from gateway.commands import Command, CommandError
from gateway.commands import parse as parse_command
from gateway.config.site import Site
from gateway.events import Message
from gateway.frozen import quick_init
from gateway.ingest.decode import SIZE_BOUND_PER_CHAR, long_number, read_instant
from gateway.ingest.topics import Topics
from gateway.notify.channels import mask
from gateway.notify.policy import Notice
from gateway.pipeline import Pipeline
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import BadTime, iso, parse_instant

COMMIT_EVERY = 500


class ReplayError(Exception):
    """The events file cannot be read at all; says what is wrong."""


@quick_init
@dataclass(frozen=True)
class Recorded:
    """One line of an events file: a message, or a command (`command` set, `topic` empty).

    A payload given as a JSON object may come already read (`body`, with `size_bound` at least
    its size as bytes): the decoder then does not parse it again. `payload` is its bytes, made
    only when asked (a refusal quotes them).
    """

    line: int
    topic: str
    raw: bytes
    received_at: dt.datetime | None
    command: Command | None = None
    body: dict[str, Any] | None = None
    size_bound: int = 0

    @cached_property
    def payload(self) -> bytes:
        """The payload as the device would have sent it."""
        return self.raw if self.body is None else json.dumps(self.body).encode()


def _read_line(raw: str) -> tuple[Any, bool]:
    """The line's JSON value, and whether orjson read it (its payload may then go on parsed).

    orjson reads integers beyond 64 bits as floats where `json` keeps them exact, and refuses
    what `json` takes (NaN, a lone surrogate): such a line takes the standard library's way.
    """
    try:
        data = raw.encode()
    except UnicodeEncodeError:  # a lone surrogate: bytes orjson refuses, json reads it
        data = raw.encode("utf-8", "surrogatepass")
    if not long_number(data):
        try:
            return orjson.loads(data), True
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw), False


@dataclass(frozen=True)
class Skipped:
    """A line that cannot be used, with its number and why (§7: reported, counted, skipped)."""

    line: int
    reason: str


def read_events(lines: Iterable[str], tz: dt.tzinfo) -> Iterator[Recorded | Skipped]:
    """Parse JSON lines `{"topic", "payload", "received_at"?}` or `{"command", "received_at"}`.

    A payload given as a JSON string is read like the object (its `ts` is the default receive
    time). A line with neither `received_at` nor `ts`, a line that is not JSON and a bad
    `received_at` are `Skipped` with the reason; blank lines are ignored.
    """
    for number, raw in enumerate(lines, 1):
        try:
            record, fast = _read_line(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            if not raw or raw.isspace():
                continue  # a blank line (not JSON either: looked for only then)
            yield Skipped(number, f"不是 JSON / not JSON ({getattr(exc, 'msg', 'too deep')})")
            continue
        if not isinstance(record, dict):
            yield Skipped(number, 'expected {"topic": …, "payload": …} or {"command": …}')
            continue
        at: object = record.get("received_at")
        if "command" in record:
            if at is None:
                yield Skipped(number, "a command line needs received_at")
                continue
            try:
                received = parse_instant(at, tz)
                command = parse_command(record["command"], tz)
            except (BadTime, CommandError) as exc:
                yield Skipped(number, str(exc))
                continue
            yield Recorded(number, "", b"", received, command)
            continue
        topic = record.get("topic")
        if not isinstance(topic, str):
            yield Skipped(number, 'expected {"topic": …, "payload": …}')
            continue
        payload: Any = record.get("payload", "")
        parsed: dict[str, Any] | None = None
        if fast and type(payload) is dict:  # the common case
            parsed, body = payload, b""  # read once: the decoder takes the object as it is
            if at is None:
                at = payload.get("ts")
        else:
            body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            if at is None:
                at = _payload_ts(payload)
        bound = len(raw) * SIZE_BOUND_PER_CHAR
        if at is None:
            yield Skipped(number, "既无 received_at 也无 ts / neither received_at nor a payload ts")
            continue
        try:
            received = read_instant(at, tz)
        except BadTime as exc:
            if "received_at" in record:
                yield Skipped(number, f"received_at: {exc}")
                continue
            # A bad payload ts: the message is refused by the decoder, at the clock's present.
            yield Recorded(number, topic, body, None, None, parsed, bound)
            continue
        yield Recorded(number, topic, body, received, None, parsed, bound)


def _payload_ts(payload: object) -> object:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except (json.JSONDecodeError, RecursionError):
            return None
    return payload.get("ts") if isinstance(payload, dict) else None


@dataclass
class ReplayNote:
    """Something the replay reports on standard error (a skipped line, a refused command)."""

    line: int
    text: str


def replay(
    site: Site,
    events: Iterable[Recorded | Skipped],
    root: str = "estate",
    until: dt.datetime | None = None,
    store: SqliteStore | None = None,
    stats: Counter[str] | None = None,
    notes: list[ReplayNote] | None = None,
) -> Iterator[Transition]:
    """Yield every alert transition, in time order, that the recorded traffic causes.

    `stats`, if given, receives the pipeline's counters (messages, refusals by reason, …);
    `notes` the skipped lines and refused commands, with their line numbers.
    """
    for item in replay_decisions(site, events, root, until, store, stats, notes):
        if isinstance(item, Transition):
            yield item


def _in_order(
    transitions: Iterable[Transition], notices: list[Notice]
) -> list[Transition | Notice]:
    """Transitions and the notifications they (or the deadlines among them) decided, in time
    order; at one instant a transition comes before the notifications it causes."""
    items: list[Transition | Notice] = [*transitions, *notices]
    return sorted(items, key=lambda i: (i.at, isinstance(i, Notice)))


def replay_decisions(
    site: Site,
    events: Iterable[Recorded | Skipped],
    root: str = "estate",
    until: dt.datetime | None = None,
    store: SqliteStore | None = None,
    stats: Counter[str] | None = None,
    notes: list[ReplayNote] | None = None,
) -> Iterator[Transition | Notice]:
    """`replay`, with the notifications decided (§9) among the transitions, in time order."""
    db = store or MemoryStore()  # §7: stores nothing unless asked
    counts = stats if stats is not None else Counter()
    said = notes if notes is not None else []
    try:
        with gctune.long_run():
            yield from _run(site, events, root, until, db, counts, said)
    finally:
        if store is None:
            db.close()


def _run(
    site: Site,
    events: Iterable[Recorded | Skipped],
    root: str,
    until: dt.datetime | None,
    db: SqliteStore,
    counts: Counter[str],
    said: list[ReplayNote],
) -> Iterator[Transition | Notice]:
    pipeline: Pipeline | None = None
    clock: dt.datetime | None = None
    waiting: list[Recorded] = []  # messages before the first that tells the time
    for n, rec in enumerate(events, 1):
        if type(rec) is Skipped:
            counts["skipped_lines"] += 1
            said.append(ReplayNote(rec.line, rec.reason))
            continue
        assert isinstance(rec, Recorded)
        received = rec.received_at
        if received is None:
            if clock is None:
                waiting.append(rec)
                continue
        elif until is not None and received > until:
            break  # §7: lines received after --until are not read
        elif clock is None or received > clock:
            clock = received  # a line received before the clock is handled at its present (§7)
        assert clock is not None
        if pipeline is None:
            # round.missed and equipment.stale count from the first message (§5 rule 6).
            pipeline = Pipeline(site, Topics(root, site.id), db, start=clock)
            pipeline.answers = False  # nobody to answer
        if waiting:
            for early in waiting:
                yield from _step(pipeline, early, clock, said)
            waiting.clear()
        if rec.command is not None:
            yield from _step(pipeline, rec, clock, said)
        else:
            if rec.body is not None:
                handled = pipeline.handle(Message(rec.topic, b"", clock, 1), rec)
            else:
                handled = pipeline.handle(Message(rec.topic, rec.payload, clock, 1))
            if handled.transitions or pipeline.decided:  # most messages change nothing
                yield from _in_order(handled.transitions, pipeline.take_notices())
        if n % COMMIT_EVERY == 0:
            pipeline.before_commit()
            db.commit()
    if waiting:
        raise ReplayError(
            f"no message tells the time (received_at or a payload ts): cannot place "
            f"line {waiting[0].line} and the {len(waiting) - 1} after it"
        )
    if pipeline is not None:
        end = until if until is not None else clock
        if end is not None:
            yield from _in_order(pipeline.tick(end).transitions, pipeline.take_notices())
        counts.update(pipeline.counters)
        pipeline.before_commit()
    db.commit()


def _step(
    pipeline: Pipeline, rec: Recorded, clock: dt.datetime, said: list[ReplayNote]
) -> Iterator[Transition | Notice]:
    """One line at the clock's present: a command, or a message (the hot path inlines this)."""
    if rec.command is None:
        handled = pipeline.handle(Message(rec.topic, rec.payload, clock, 1))
        yield from _in_order(handled.transitions, pipeline.take_notices())
        return
    outcome = pipeline.command(rec.command, clock)
    yield from _in_order([*outcome.before, *outcome.transitions], pipeline.take_notices())
    if not outcome.ok:
        said.append(ReplayNote(rec.line, outcome.message))


def write_transition(out: TextIO, transition: Transition, tz: dt.tzinfo) -> None:
    """One JSON line: the alert record at the transition, with `at` and `change` (§7)."""
    record = transition.alert.to_json(tz)
    record["at"] = iso(transition.at, tz)
    record["change"] = change_word(transition.change)
    if transition.actor != "gateway":
        record["by"] = transition.actor
    if transition.comment:
        record["comment"] = transition.comment
    out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_notice(out: TextIO, notice: Notice, tz: dt.tzinfo) -> None:
    """One JSON line per person and URL of a notification decided (§9, `--notifications`)."""
    alert = notice.alert
    for person in notice.people:
        record = {
            "notify": person,
            "url": mask(notice.url),
            "alert": alert.id,
            "rule": alert.rule,
            "subject": alert.subject,
            "stage": notice.stage,
            "kind": notice.kind,
            "at": iso(notice.at, tz),
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
