"""The escalation policy (contract §9): who is told of which alert, at which stage, and when.

A pure rule on the injected clock: it sees every alert transition at its instant (through
`ObservedBook`), keeps one deadline per alert being escalated, and is woken by the engine at
that deadline like any rule, so its decisions are exact live and in replay. It decides; it
sends nothing. Each decision is a `Notice` (one per notify URL, naming everyone who shares it)
that the pipeline writes to the store in the transaction of the transition or deadline that
caused it. Its state is a small JSON snapshot kept with every commit, so a restart neither
repeats nor skips a stage.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.alerts.book import AlertBook, Transition
from gateway.alerts.record import Alert
from gateway.config.models import EscalationStep, Role
from gateway.config.site import Site
from gateway.events import Event

Kind = Literal["raised", "reminder", "closed"]
ON_DUTY = "on_duty"
POST_ROLES = "post_roles"
INCIDENT_MAJOR = "incident.major"
# The duty manager's early warnings (docs/alerts.md): to the duty manager alone, once each.
EARLY_WARNINGS = frozenset({"patrol.hours_at_risk", "patrol.key_post_at_risk"})


@dataclass(frozen=True)
class Notice:
    """One notification decided: an alert at a stage, to one URL, for the people sharing it."""

    alert: Alert  # the record when it was decided
    stage: int  # index in the escalation, from 0
    repeat: int  # 0 the first time a stage is sent, then 1, 2, … (repeats, shelve ends)
    kind: Kind
    at: dt.datetime
    url: str
    people: tuple[str, ...]


@dataclass
class _Track:
    """One alert being escalated."""

    alert: str
    raised_at: dt.datetime
    route: int  # -1: the default escalation; else the index in `routes`
    stage: int = -1  # the highest stage sent
    repeat: int = 0  # how often that stage was sent again
    due: dt.datetime | None = None  # the next stage or repeat; None while stopped
    stopped: str = ""  # "acknowledged" or "shelved" or "" (still escalating)
    told: list[tuple[str, str]] = field(default_factory=list)  # (person, url), in order
    sent: set[tuple[int, int, str, str]] = field(default_factory=set)  # (stage, repeat, kind, url)

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "raised_at": self.raised_at.isoformat(),
            "route": self.route,
            "stage": self.stage,
            "repeat": self.repeat,
            "due": None if self.due is None else self.due.isoformat(),
            "stopped": self.stopped,
            "told": [list(t) for t in self.told],
            "sent": sorted(list(s) for s in self.sent),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Track:
        due = data.get("due")
        return cls(
            alert=data["alert"],
            raised_at=dt.datetime.fromisoformat(data["raised_at"]),
            route=int(data["route"]),
            stage=int(data["stage"]),
            repeat=int(data["repeat"]),
            due=None if due is None else dt.datetime.fromisoformat(due),
            stopped=str(data.get("stopped", "")),
            told=[(p, u) for p, u in data.get("told", [])],
            sent={(int(s), int(r), str(k), str(u)) for s, r, k, u in data.get("sent", [])},
        )


OnDuty = Callable[[dt.datetime], list[str]]


class Escalation:
    """The policy; a rule for the engine (`next_deadline`, `on_deadline`) fed by the book."""

    events: tuple[type, ...] = ()  # messages do not move an escalation; transitions do
    watches_book = True  # its deadline follows the book's transitions (`observe`)

    def __init__(self, site: Site, on_duty: OnDuty, duty_manager: OnDuty) -> None:
        self.site = site
        self.on_duty = on_duty
        self.duty_manager = duty_manager
        self.tracks: dict[str, _Track] = {}
        self.decided: list[Notice] = []
        self.changed = False
        self.silent = False  # while the rules are rebuilt after a restart

    # -- configuration -------------------------------------------------------------------------

    def stages(self, track: _Track) -> list[EscalationStep]:
        """The escalation that applies to a tracked alert."""
        notify = self.site.config.notify
        if 0 <= track.route < len(notify.routes):
            return notify.routes[track.route].escalation
        return notify.escalation

    def route_of(self, rule: str) -> int:
        """The first route whose patterns match the rule, or -1 (the default escalation)."""
        for index, route in enumerate(self.site.config.notify.routes):
            if any(fnmatch.fnmatchcase(rule, pattern) for pattern in route.rules):
                return index
        return -1

    # -- the rule protocol ---------------------------------------------------------------------

    def on_event(self, ctx: Any, event: Event) -> None:
        """Messages do not move an escalation; transitions do (`observe`)."""

    def next_deadline(self) -> dt.datetime | None:
        """The earliest stage or repeat due."""
        return min((t.due for t in self.tracks.values() if t.due is not None), default=None)

    def on_deadline(self, ctx: Any) -> None:
        """Send every stage or repeat due by `ctx.now`, then schedule the next."""
        now: dt.datetime = ctx.now
        book: AlertBook = ctx.book
        for track in list(self.tracks.values()):
            if track.due is None or track.due > now:
                continue
            alert = book.by_id(track.alert)
            if alert is None:  # closed meanwhile (seen by `observe`); nothing more to send
                track.due = None
                continue
            stages = self.stages(track)
            if track.stage + 1 < len(stages):
                self._send(track, alert, track.stage + 1, 0, now)
            else:
                self._send(track, alert, track.stage, track.repeat + 1, now)
            track.due = self._next_due(track, now)
            self.changed = True

    # -- transitions ---------------------------------------------------------------------------

    def observe(self, t: Transition) -> None:
        """One alert transition, at its instant (called by `ObservedBook`)."""
        if self.silent:
            return
        alert = t.alert
        if t.change == "open":
            self._opened(alert, t.at)
            return
        track = self.tracks.get(alert.id)
        if track is None:
            return
        if t.change in ("cleared", "closed"):
            self._closed(track, alert, t.at)
        elif t.change == "acknowledged":
            track.stopped, track.due = "acknowledged", None
            self.changed = True
        elif t.change == "shelved" and not track.stopped:
            track.stopped, track.due = "shelved", None
            self.changed = True
        elif t.change == "unshelved" and track.stopped == "shelved":
            self._resume(track, alert, t.at)

    def _opened(self, alert: Alert, at: dt.datetime) -> None:
        if alert.rule in EARLY_WARNINGS:
            # Once, to the duty manager alone; no stages, no closing message.
            for url, people in self._reach(self.duty_manager(at)):
                self.decided.append(Notice(alert, 0, 0, "raised", at, url, people))
            return
        track = _Track(alert.id, alert.raised_at, self.route_of(alert.rule))
        self.tracks[alert.id] = track
        self.changed = True
        if alert.rule == INCIDENT_MAJOR:
            # 4.2: every general manager at once, whatever the escalation says.
            managers = [p.id for p in self.site.config.people if Role.general_manager in p.roles]
            self._notify(track, alert, 0, 0, "raised", at, managers)
        track.due = self._next_due(track, at)
        if track.due is not None and track.due <= at:  # a stage at after_minutes 0: at once
            self._send(track, alert, track.stage + 1, 0, at)
            track.due = self._next_due(track, at)
        if track.due is None and not track.told:
            del self.tracks[alert.id]  # nothing to escalate, nobody to tell of the close

    def _closed(self, track: _Track, alert: Alert, at: dt.datetime) -> None:
        del self.tracks[track.alert]
        self.changed = True
        by_url: dict[str, list[str]] = {}
        for person, url in track.told:
            by_url.setdefault(url, []).append(person)
        stage = max(track.stage, 0)
        for url, people in by_url.items():
            self.decided.append(Notice(alert, stage, 0, "closed", at, url, tuple(people)))

    def _resume(self, track: _Track, alert: Alert, at: dt.datetime) -> None:
        """A shelve ended with the alert still open and unacknowledged (§9): the stage reached
        by now is sent once, and the escalation goes on from there."""
        track.stopped = ""
        self.changed = True
        stages = self.stages(track)
        reached = -1
        for index, step in enumerate(stages):
            if track.raised_at + dt.timedelta(minutes=step.after_minutes) <= at:
                reached = index
        if reached >= 0:
            if reached > track.stage:
                self._send(track, alert, reached, 0, at)
            else:
                self._send(track, alert, track.stage, track.repeat + 1, at)
        track.due = self._next_due(track, at)

    # -- deciding ------------------------------------------------------------------------------

    def _next_due(self, track: _Track, now: dt.datetime) -> dt.datetime | None:
        """The next stage's instant, or the last stage's next repeat after `now`."""
        if track.stopped:
            return None
        stages = self.stages(track)
        if track.stage + 1 < len(stages):
            return track.raised_at + dt.timedelta(minutes=stages[track.stage + 1].after_minutes)
        last = stages[-1] if stages else None
        if last is None or last.repeat_minutes is None:
            return None
        start = track.raised_at + dt.timedelta(minutes=last.after_minutes)
        every = dt.timedelta(minutes=last.repeat_minutes)
        periods = (now - start) // every + 1 if now >= start else 1
        return start + periods * every

    def _send(self, track: _Track, alert: Alert, stage: int, repeat: int, at: dt.datetime) -> None:
        stages = self.stages(track)
        if not 0 <= stage < len(stages):
            return
        track.stage, track.repeat = stage, repeat
        kind: Kind = "raised" if repeat == 0 else "reminder"
        self._notify(track, alert, stage, repeat, kind, at, self._targets(stages[stage], alert, at))

    def _notify(
        self,
        track: _Track,
        alert: Alert,
        stage: int,
        repeat: int,
        kind: Kind,
        at: dt.datetime,
        people: Iterable[str],
    ) -> None:
        for url, sharing in self._reach(people):
            key = (stage, repeat, kind, url)
            if key in track.sent:
                continue
            track.sent.add(key)
            for person in sharing:
                if (person, url) not in track.told:
                    track.told.append((person, url))
            self.decided.append(Notice(alert, stage, repeat, kind, at, url, sharing))
        self.changed = True

    def _reach(self, people: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
        """Each URL of the people, with everyone who shares it (one message per URL)."""
        by_url: dict[str, list[str]] = {}
        for ident in people:
            person = self.site.people.get(ident)
            for url in person.notify if person else []:
                sharing = by_url.setdefault(url, [])
                if ident not in sharing:
                    sharing.append(ident)
        return [(url, tuple(sharing)) for url, sharing in by_url.items()]

    def _targets(self, step: EscalationStep, alert: Alert, at: dt.datetime) -> list[str]:
        """The people a stage names, at the instant it is sent (roster-aware, 4.9)."""
        out: list[str] = []
        for target in step.to:
            if target == ON_DUTY:
                found = self.on_duty(at)
            elif target == POST_ROLES:
                found = self._post_roles(alert)
            elif target in Role.__members__:
                found = [p.id for p in self.site.config.people if target in p.roles]
            else:
                found = [target]
            out += [p for p in found if p not in out]
        return out

    def _post_roles(self, alert: Alert) -> list[str]:
        """The people holding the `rounds` roles of the alert's post."""
        post = post_of(self.site, alert)
        rounds = None if post is None else self.site.posts[post].rounds
        if rounds is None:
            return []
        return [p.id for p in self.site.config.people if any(r in p.roles for r in rounds.roles)]

    # -- persistence ---------------------------------------------------------------------------

    def take(self) -> list[Notice]:
        """The notices decided since the last call."""
        out, self.decided = self.decided, []
        return out

    def snapshot(self) -> str:
        """The state to keep with each commit."""
        self.changed = False
        return json.dumps([t.to_json() for t in self.tracks.values()], ensure_ascii=False)

    def load(self, snapshot: str | None, open_ids: set[str]) -> None:
        """Take back the state kept at the last commit; tracks of alerts no longer open go."""
        self.tracks = {}
        for item in json.loads(snapshot) if snapshot else []:
            track = _Track.from_json(item)
            if track.alert in open_ids:
                self.tracks[track.alert] = track
        self.changed = False


def post_of(site: Site, alert: Alert) -> str | None:
    """The post an alert is about: its subject, an equipment's or a reader's post."""
    subject = alert.subject
    if subject in site.posts:
        return subject
    equipment = site.equipment.get(subject.split(".", 1)[0])
    if equipment is not None:
        return equipment.post
    post = site.reader_post.get(subject)
    return None if post is None else post.id


class ObservedBook(AlertBook):
    """The alert book that tells the escalation policy of every transition as it happens."""

    def __init__(
        self, site: str, alerts: list[Alert] | None, observe: Callable[[Transition], None]
    ) -> None:
        super().__init__(site, alerts)
        self._observe = observe

    def _seen(self, t: Transition | None) -> Transition | None:
        if t is not None:
            self._observe(t)
        return t

    def raise_(
        self,
        rule: str,
        subject: str,
        severity: str,
        at: dt.datetime,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> Transition:
        """Open or update, and tell the policy."""
        t = super().raise_(rule, subject, severity, at, message, details)
        self._observe(t)
        return t

    def clear(self, rule: str, subject: str, at: dt.datetime) -> Transition | None:
        """Clear, and tell the policy."""
        return self._seen(super().clear(rule, subject, at))

    def acknowledge(
        self, ident: str, at: dt.datetime, actor: str, comment: str = "", close: bool = False
    ) -> Transition | None:
        """Acknowledge (perhaps close), and tell the policy."""
        return self._seen(super().acknowledge(ident, at, actor, comment, close))

    def shelve(
        self, ident: str, until: dt.datetime, at: dt.datetime, actor: str, comment: str = ""
    ) -> Transition | None:
        """Shelve, and tell the policy."""
        return self._seen(super().shelve(ident, until, at, actor, comment))

    def unshelve_due(self, at: dt.datetime) -> list[Transition]:
        """Unshelve, and tell the policy."""
        out = super().unshelve_due(at)
        for t in out:
            self._observe(t)
        return out
