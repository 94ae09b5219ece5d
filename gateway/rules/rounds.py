"""Rule 6 of contract §5: round.missed — scheduled rounds at plant rooms (篇5 e)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from gateway import messages
from gateway.config.models import Rounds as RoundsConfig
from gateway.config.site import Site
from gateway.events import Event, Scan
from gateway.rules.base import Clearing, RuleContext, RuleId, RuleSpec, Severity
from gateway.timeutil import iso

ROUND_MISSED = RuleId.round_missed


class Rounds:
    """Raised `every_minutes` after the last qualifying scan (or the start); cleared by the next."""

    events: ClassVar[tuple[type, ...]] = (Scan,)
    specs: ClassVar[tuple[RuleSpec, ...]] = (
        RuleSpec(ROUND_MISSED, Severity.warning, Clearing.clears),
    )

    def __init__(self, site: Site, start: dt.datetime) -> None:
        self.site = site
        self.posts: dict[str, RoundsConfig] = {
            p.id: p.rounds for p in site.config.posts if p.rounds is not None
        }
        self.last: dict[str, dt.datetime] = dict.fromkeys(self.posts, start)
        self.fired: dict[str, dt.datetime] = {}  # post → the `last` its alert was raised for
        self._next: dt.datetime | None = None  # next_deadline(), kept until `last` or `fired` move
        self._next_known = False

    def due(self, post: str) -> dt.datetime:
        """When the next round at `post` is due."""
        return self.last[post] + dt.timedelta(minutes=self.posts[post].every_minutes)

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        """A scan by a holder of one of the round's roles is the round."""
        if not isinstance(event, Scan) or event.post not in self.posts:
            return
        if not self.site.has_role(event.person, self.posts[event.post].roles):
            return
        self.last[event.post] = max(self.last[event.post], event.time)
        self._next_known = False
        if self.due(event.post) > ctx.now:
            ctx.clear(ROUND_MISSED, event.post)
        elif ctx.book.get(ROUND_MISSED, event.post) is not None:
            # Delivered late, and overdue again already: the alert stays open, not re-raised.
            self.fired[event.post] = self.last[event.post]

    def next_deadline(self) -> dt.datetime | None:
        """The earliest round due that has not been raised yet."""
        if not self._next_known:
            pending = [self.due(p) for p in self.posts if self.fired.get(p) != self.last[p]]
            self._next = min(pending, default=None)
            self._next_known = True
        return self._next

    def on_deadline(self, ctx: RuleContext) -> None:
        """Raise for every post whose round is due now."""
        self._next_known = False
        for post, rounds in self.posts.items():
            if self.fired.get(post) != self.last[post] and self.due(post) <= ctx.now:
                self.fired[post] = self.last[post]
                ctx.raise_(
                    ROUND_MISSED,
                    post,
                    Severity.warning,
                    messages.for_site(
                        self.site,
                        ROUND_MISSED,
                        post=self.site.posts[post].name,
                        minutes=f"{rounds.every_minutes:g}",
                    ),
                    {"last_round": iso(self.last[post], self.site.tz), "roles": list(rounds.roles)},
                )
