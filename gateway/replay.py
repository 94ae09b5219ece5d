"""`patrol-gateway replay`: recorded traffic through the live pipeline on a simulated clock (§7)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from gateway.alerts.book import Transition
from gateway.config.site import Site
from gateway.events import Message
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import BadTime, iso, parse_instant

COMMIT_EVERY = 500


class ReplayError(Exception):
    """The events file cannot be read; says the line and what is wrong."""


@dataclass(frozen=True)
class Recorded:
    """One line of an events file."""

    line: int
    topic: str
    payload: bytes
    received_at: dt.datetime | None


def read_events(lines: Iterable[str], tz: dt.tzinfo) -> Iterator[Recorded]:
    """Parse JSON lines `{"topic", "payload", "received_at"?}`; blank lines are skipped."""
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ReplayError(f"line {number}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("topic"), str):
            raise ReplayError(f'line {number}: expected {{"topic": …, "payload": …}}')
        payload: Any = record.get("payload", "")
        body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        at: object = record.get("received_at")
        if at is None and isinstance(payload, dict):
            at = payload.get("ts")
        received: dt.datetime | None = None
        if at is not None:
            try:
                received = parse_instant(at, tz)
            except BadTime as exc:
                if "received_at" in record:
                    raise ReplayError(f"line {number}: received_at: {exc}") from exc
        yield Recorded(number, record["topic"], body, received)


def replay(
    site: Site,
    events: Iterable[Recorded],
    root: str = "estate",
    until: dt.datetime | None = None,
    store: SqliteStore | None = None,
    stats: Counter[str] | None = None,
) -> Iterator[Transition]:
    """Yield every alert transition, in time order, that the recorded traffic causes.

    `stats`, if given, receives the pipeline's counters (messages, refusals by reason, …).
    """
    own_store = store is None
    db = store or SqliteStore(":memory:")
    pipeline: Pipeline | None = None
    clock: dt.datetime | None = None
    waiting: list[Recorded] = []  # messages before the first that tells the time
    try:
        for n, rec in enumerate(events, 1):
            if rec.received_at is None and clock is None:
                waiting.append(rec)
                continue
            received = rec.received_at or clock
            assert received is not None
            clock = received if clock is None else max(clock, received)
            if pipeline is None:
                # round.missed and equipment.stale count from the first message (§5 rule 6).
                pipeline = Pipeline(site, Topics(root, site.id), db, start=clock)
            for early in [*waiting, rec]:
                msg = Message(early.topic, early.payload, received, qos=1)
                yield from pipeline.handle(msg).transitions
            waiting.clear()
            if n % COMMIT_EVERY == 0:
                db.commit()
        if waiting:
            raise ReplayError(
                f"no message tells the time (received_at or a payload ts): cannot place "
                f"line {waiting[0].line} and the {len(waiting) - 1} after it"
            )
        if pipeline is not None:
            end = until if until is not None else clock
            if end is not None:
                yield from pipeline.tick(end).transitions
            if stats is not None:
                stats.update(pipeline.counters)
        db.commit()
    finally:
        if own_store:
            db.close()


def write_transition(out: TextIO, transition: Transition, tz: dt.tzinfo) -> None:
    """One JSON line: the alert record at the transition, with `at` (§7)."""
    record = transition.alert.to_json(tz)
    record["at"] = iso(transition.at, tz)
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
