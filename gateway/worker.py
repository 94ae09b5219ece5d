"""The single writer: one batch of messages and commands in, one commit, then the answers out.

`Worker` is transport-free: no threads, no paho. It talks to the broker through a `Link` (the
real `MqttLink`, or the in-memory `MemoryLink` of the unit tests) and is driven by the thread in
`gateway/app.py`. A message that fails for a reason of its own (a rule bug, a guard) is isolated
and refused with code `internal`, so no single message can stall the site; a store error (disk
full, locked) rolls the batch back and is raised as `StoreUnavailable` for the caller to retry.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway import console
from gateway.alerts.book import Transition
from gateway.commands import Command, CommandError
from gateway.commands import parse as parse_command
from gateway.config.site import Site
from gateway.events import Message, Rejection
from gateway.ingest.decode import MAX_PAYLOAD_BYTES
from gateway.ingest.render import Publication, Renderer
from gateway.ingest.topics import Topics
from gateway.notify import console as notify_console
from gateway.pipeline import CommandOutcome, Outcome, Pipeline
from gateway.store.sqlite import SqliteStore, StoredCommand
from gateway.trust.secrets import Secrets, no_secrets

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
COMMAND_POLL_SECONDS = 0.1  # how soon a busy worker sees a command the command line queued


class Link(Protocol):
    """What the worker needs of the broker connection."""

    def ack(self, msg: Message) -> None:
        """Acknowledge a stored message (no-op for QoS 0)."""

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Callable[[], bool] | None:
        """Queue a publication; "has the broker confirmed it?", or None if it was refused."""


class StoreUnavailable(Exception):
    """The store failed (full disk, locked, read-only); the batch was rolled back.

    `remaining` are the messages not yet stored (the caller retries them, unacknowledged).
    """

    def __init__(self, cause: sqlite3.Error, remaining: list[Message]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.remaining = remaining


@dataclass
class Submitted:
    """A command handed to the worker in-process (API, tests); `wait()` gives its outcome."""

    command: Command
    _done: threading.Event = field(default_factory=threading.Event)
    outcome: CommandOutcome | None = None

    def resolve(self, outcome: CommandOutcome) -> None:
        """Called by the worker once the command's effect is committed."""
        self.outcome = outcome
        self._done.set()

    def wait(self, timeout: float | None = None) -> CommandOutcome | None:
        """The outcome, or None if the worker did not get to it in time."""
        self._done.wait(timeout)
        return self.outcome


@dataclass
class _Step:
    """What one committed unit of work produced, to deliver after the commit."""

    messages: list[Message] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    commands: list[tuple[Submitted | None, CommandOutcome]] = field(default_factory=list)


class Worker:
    """Runs messages and commands through the pipeline, commits, then acks and answers."""

    def __init__(
        self,
        site: Site,
        store: SqliteStore,
        link: Link,
        topics: Topics,
        clock: Clock,
        start: dt.datetime,
        grace: dt.timedelta = dt.timedelta(0),
        on_commit: Callable[[], None] = lambda: None,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        secrets: Callable[[], Secrets] = no_secrets,
    ) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.secrets = secrets
        self.site = site
        self.store = store
        self.link = link
        self.topics = topics
        self.clock = clock
        self.start = start
        self.grace = grace
        self.on_commit = on_commit
        self.render = Renderer(topics, site.tz)
        self.counters: Counter[str] = Counter()  # the worker's own (publications, isolations)
        self._counted: Counter[str] = Counter()  # the pipeline's counters at the last commit
        self._polled = 0.0  # when the store was last asked for commands of other processes
        self.pipeline = self._new_pipeline()
        self._mark = self.store.meta("fired_through") or ""

    # -- the public steps ----------------------------------------------------------------------

    def step(self, batch: Sequence[Message], submitted: Sequence[Submitted] = ()) -> None:
        """Store a batch and the commands, commit, then acknowledge and answer.

        Raises `StoreUnavailable` (everything since the last commit rolled back) when the store
        fails; call `recover()` once it works again and retry `remaining` and the commands.
        """
        try:
            step = self._run(list(batch), list(submitted))
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreUnavailable(exc, list(batch)) from exc
        except Exception:
            log.exception(
                "批处理出错，逐条重试以隔离问题消息 / a batch failed; retrying it message by "
                "message to isolate the culprit"
            )
            self._rollback()
            self.pipeline = self._new_pipeline()
            self._isolate(list(batch), list(submitted))
            return
        self._deliver(step)

    def recover(self) -> None:
        """After a store error: rebuild the rules from what the store holds (once it works)."""
        self.pipeline = self._new_pipeline()
        self._mark = self.store.meta("fired_through") or ""

    def replace_site(self, site: Site) -> None:
        """A reloaded site file: the rules are rebuilt from the store under the new site."""
        self.site = site
        self.render = Renderer(self.topics, site.tz)
        self.pipeline = self._new_pipeline()

    def republish(self) -> None:
        """After a broker lost our session: the patrol status again (alerts: the forwarder)."""
        self.pipeline.forget_status()

    # -- internals ---------------------------------------------------------------------------

    def _new_pipeline(self) -> Pipeline:
        pipeline = Pipeline(
            self.site,
            self.topics,
            self.store,
            self.start,
            live=True,
            grace=self.grace,
            max_payload_bytes=self.max_payload_bytes,
            secrets=self.secrets,
        )
        # A rebuild (a store error, a poison message, a reload) goes on counting from what
        # the last commit counted: a batch rolled back is counted when it is stored.
        pipeline.counters = self._counted.copy()
        mark = self.store.meta("fired_through")
        count = pipeline.restore(mark)
        if count:
            log.info("已从存储恢复 / restored from the store: %d events up to %s", count, mark)
        return pipeline

    def _run(self, batch: list[Message], submitted: list[Submitted]) -> _Step:
        """Everything of one unit of work, up to and including the commit."""
        step = _Step(messages=batch)
        now = self.clock()
        for stored in self._pending(bool(batch)):
            # Queued by another process (the command line) on this store.
            try:
                command = parse_command({**stored.body, "by": stored.actor}, self.site.tz)
            except CommandError as exc:
                self.store.record_command(
                    stored.id, stored.action, stored.body, stored.actor, now, "refused", str(exc)
                )
                continue
            outcome = self.pipeline.command(command, now, stored.id)
            step.commands.append((None, outcome))
        for item in submitted:
            step.commands.append((item, self.pipeline.command(item.command, now)))
        for msg in batch:
            step.outcomes.append(self.pipeline.handle(msg))
        step.outcomes.append(self.pipeline.tick(self.clock() - self.grace))
        mark = self.pipeline.mark()
        if mark != self._mark:
            self.store.set_meta("fired_through", mark)
        self.pipeline.before_commit()
        self.store.commit()
        self._mark = mark
        self._counted = self.pipeline.counters.copy()
        return step

    def _pending(self, busy: bool) -> list[StoredCommand]:
        """Commands another process queued: looked for in every idle step, and in a busy
        stream of batches once every COMMAND_POLL_SECONDS (a query per batch was 3 % of the
        worker's time in a drain)."""
        now = time.monotonic()
        if busy and now - self._polled < COMMAND_POLL_SECONDS:
            return []
        self._polled = now
        return self.store.pending_commands()

    def _isolate(self, batch: list[Message], submitted: list[Submitted]) -> None:
        """One message (and command) at a time; the one that fails is refused as `internal`."""
        for item in submitted:
            try:
                self._deliver(self._run([], [item]))
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(exc, batch) from exc
            except Exception as exc:
                log.exception("命令处理出错 / a command failed: %s", item.command)
                self._rollback()
                self.pipeline = self._new_pipeline()
                text = f"内部错误 / internal error ({type(exc).__name__}); logged, please report it"
                item.resolve(CommandOutcome(False, text))
        for index, msg in enumerate(batch):
            try:
                self._deliver(self._run([msg], []))
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreUnavailable(exc, batch[index:]) from exc
            except Exception as exc:
                log.exception(
                    "消息处理出错，已拒收 / a message failed and is refused: %s", msg.topic
                )
                self._rollback()
                self.pipeline = self._new_pipeline()
                self._refuse_internal(msg, exc)

    def _refuse_internal(self, msg: Message, exc: Exception) -> None:
        detail = (
            f"internal error while handling it ({type(exc).__name__}); it is logged with its "
            "traceback: please report it"
        )
        rejection = Rejection("internal", detail, msg.topic, msg.payload[:512])
        try:
            self.pipeline.counters["received"] += 1  # its first count was rolled back
            refusal = self.pipeline.refuse(rejection, msg.received_at)
            self.pipeline.before_commit()
            self.store.commit()
            self._counted = self.pipeline.counters.copy()
        except sqlite3.Error as err:
            self._rollback()
            raise StoreUnavailable(err, [msg]) from err
        self.counters["isolated"] += 1
        self._deliver(_Step(messages=[msg], outcomes=[Outcome(refusals=[refusal])]))

    def _rollback(self) -> None:
        try:
            self.store.rollback()
        except sqlite3.Error:
            log.exception("回滚失败 / rollback failed")

    def _deliver(self, step: _Step) -> None:
        """After the commit: acknowledge, answer, say what happened, wake the forwarders."""
        for msg in step.messages:
            self.link.ack(msg)
        transitions: list[Transition] = []
        for outcome in step.outcomes:
            for answer in outcome.answers:
                self._publish(self.render.answer(answer))
            for refusal in outcome.refusals:
                self._publish(self.render.refusal(refusal))
                console.refusal(refusal)
            transitions += outcome.transitions
        for item, result in step.commands:
            transitions += [*result.before, *result.transitions]
            console.command(result)
            if item is not None:
                item.resolve(result)
        for t in transitions:
            console.transition(t, self.site.tz)
        for notice in self.pipeline.take_notices():  # decided and stored; the notifier sends
            notify_console.notice(notice, self.site.tz)
        status = self.pipeline.status()
        if status is not None:
            self._publish(self.render.status(status))
        self.on_commit()

    def _publish(self, pub: Publication) -> None:
        if self.link.publish(pub.topic, pub.payload, pub.qos, pub.retain) is None:
            self.counters["dropped_publications"] += 1
