"""Rules 1–5 of contract §5 — the duty manager system (3.6, 4.3, 4.4, 4.8, 4.9) — and the
early warnings that come before rules 4 and 5.

State is the recent scans (three duty days) and the roster; every decision is a pure look at
them at a deadline instant. Deadlines are the clock times of each duty day, the registration
instants of swaps written in the site file, and the early-warning instants.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import ClassVar

from gateway import messages
from gateway.alerts.book import AlertBook
from gateway.config.models import Role
from gateway.config.site import Site
from gateway.events import Event, HandoverConfirmed, Scan, SwapRegistered
from gateway.frozen import quick_init
from gateway.roster import Roster, Swap
from gateway.rules.base import Clearing, RuleContext, RuleId, RuleSpec, Severity
from gateway.timeutil import iso

ABSENT = RuleId.duty_absent
UNREGISTERED_SWAP = RuleId.duty_unregistered_swap
HANDOVER_OVERDUE = RuleId.handover_overdue
HOURS_SHORT = RuleId.patrol_hours_short
KEY_POST_MISSED = RuleId.patrol_key_post_missed
HOURS_AT_RISK = RuleId.patrol_hours_at_risk
KEY_POST_AT_RISK = RuleId.patrol_key_post_at_risk

MANAGERS = (Role.duty_manager,)  # the role the duty rules ask about
CHECK_IN_LEAD = dt.timedelta(minutes=30)  # the window opens 30 min before day_starts (§5)
ONE_DAY = dt.timedelta(days=1)  # made once: the rules step through days for every scan


DEADLINES = ("check_in_deadline", "handover_deadline", "patrol_deadline", "key_posts_deadline")


@dataclass(frozen=True)
class Deadline:
    """Something due at an instant: a duty clock time of a day, a file swap, a warning check."""

    at: dt.datetime
    kind: str
    day: dt.date
    swap: Swap | None = None


@quick_init
@dataclass(frozen=True)
class Signed:
    """One scan by a known person, as the duty rules need it."""

    time: dt.datetime
    person: str
    post: str


class _Track:
    """One person's scans, indexed so the per-scan questions cost O(log n), not O(day's scans).

    `times` is every scan time in order and `big[k]` the sum of the gaps longer than `max_gap`
    among `times[:k + 1]`: the patrol time of the scans in a time range is then its last minus
    its first time minus the long gaps between (4.3), exactly what `patrol_time` adds up.
    `posts` keeps each post's (time, arrival) in arrival order, and whether that is also time
    order, so "the first scan at a post in a range" is one bisection in the common case.
    """

    __slots__ = ("arrivals", "big", "disordered", "max_gap", "posts", "times")

    def __init__(self, max_gap: dt.timedelta) -> None:
        self.max_gap = max_gap
        self.times: list[dt.datetime] = []
        self.big: list[dt.timedelta] = []
        self.posts: dict[str, list[tuple[dt.datetime, int]]] = {}
        self.disordered: set[str] = set()  # posts whose scans did not arrive in time order
        self.arrivals = 0

    def add(self, scan: Signed) -> None:
        """Index one more scan (usually the latest, so appending is O(1))."""
        times, big, t = self.times, self.big, scan.time
        if times and t >= times[-1]:  # the latest: one more gap at the end
            gap = t - times[-1]
            times.append(t)
            big.append(big[-1] + gap if gap > self.max_gap else big[-1])
        else:
            i = bisect_right(times, t)
            times.insert(i, t)
            del big[max(i, 1) :]
            if not big:
                big.append(dt.timedelta(0))
            for k in range(len(big), len(times)):
                gap = times[k] - times[k - 1]
                big.append(big[-1] + gap if gap > self.max_gap else big[-1])
        seen = self.posts.setdefault(scan.post, [])
        if seen and t < seen[-1][0]:
            self.disordered.add(scan.post)
        seen.append((t, self.arrivals))
        self.arrivals += 1

    def patrol(self, since: dt.datetime, until: dt.datetime) -> dt.timedelta:
        """`patrol_time` of the scans in [since, until]."""
        i, j = bisect_left(self.times, since), bisect_right(self.times, until)
        if j <= i:
            return dt.timedelta(0)
        return (self.times[j - 1] - self.times[i]) - (self.big[j - 1] - self.big[i])

    def first_at(
        self, post: str, since: dt.datetime, until: dt.datetime
    ) -> tuple[dt.datetime, int] | None:
        """The first scan to arrive at `post` with its time in [since, until], and its arrival."""
        seen = self.posts.get(post)
        if not seen:
            return None
        if post in self.disordered:
            return next((s for s in seen if since <= s[0] <= until), None)
        k = bisect_left(seen, (since, -1))
        return seen[k] if k < len(seen) and seen[k][0] <= until else None


class DutyRules:
    """Duty, handover and patrol rules for one site."""

    events: ClassVar[tuple[type, ...]] = (Scan, SwapRegistered, HandoverConfirmed)
    specs: ClassVar[tuple[RuleSpec, ...]] = (
        RuleSpec(ABSENT, Severity.critical, Clearing.clears),
        RuleSpec(UNREGISTERED_SWAP, Severity.warning, Clearing.never),
        RuleSpec(HANDOVER_OVERDUE, Severity.warning, Clearing.within_duty_day),
        RuleSpec(HOURS_SHORT, Severity.critical, Clearing.never),
        RuleSpec(KEY_POST_MISSED, Severity.warning, Clearing.never),
        # The early warnings clear by themselves: when met, and at their deadline at the latest.
        RuleSpec(HOURS_AT_RISK, Severity.info, Clearing.clears),
        RuleSpec(KEY_POST_AT_RISK, Severity.info, Clearing.clears),
    )

    def __init__(
        self, site: Site, roster: Roster, start: dt.datetime, early_warnings: bool
    ) -> None:
        self.site = site
        self.cal = site.calendar
        self.roster = roster
        self.start = start
        self.early = early_warnings
        duty = site.config.duty
        self.quota = dt.timedelta(hours=duty.min_patrol_hours)
        self.max_gap = dt.timedelta(minutes=duty.patrol_max_gap_minutes)
        self.patrol_lead = dt.timedelta(minutes=duty.early_warnings.patrol_lead_minutes)
        self.key_lead = dt.timedelta(minutes=duty.early_warnings.key_post_lead_minutes)
        self.key_posts = [p.id for p in site.config.posts if p.key]
        self.handover_post = duty.handover_post
        # Scans of the last three duty days, by person: every question is about one person.
        self.scans: dict[str, list[Signed]] = {}
        # Handover into a day: who confirmed it (each stands for that manager's scan, rule 3),
        # and for each day whose handover.overdue is open, everyone who has signed at the
        # handover post since its day_starts − 30 min (kept beyond the three days of scans).
        self.confirmed: dict[dt.date, set[str]] = {}
        self.overdue: dict[dt.date, set[str]] = {}
        self._book: AlertBook | None = None  # the book `overdue` was last seeded from
        # Who was warned patrol.hours_at_risk per day: a swap may change the manager before
        # the deadline that closes the warning.
        self.hours_warned: dict[dt.date, set[str]] = {}
        # Deadlines up to here are decided; one at the very start instant is still due.
        self.fired_until = start - dt.timedelta(microseconds=1)
        # next_deadline() is asked before every event; its answer changes only with a scan,
        # a swap or a fired deadline, so it is kept until one of those happens.
        self._next: dt.datetime | None = None
        self._next_known = False
        self._fixed: dt.datetime | None = None  # the same without the patrol warning
        self._fixed_known = False
        # The same scans, indexed per person for patrol time and signatures (`_Track`).
        self._tracks: dict[str, _Track] = {}
        self._deadlines: dict[tuple[dt.date, str], dt.datetime] = {}
        self._starts: dict[dt.date, dt.datetime] = {}
        self._span: tuple[dt.datetime, dt.datetime, dt.date] = (start, start, start.date())

    # -- facts -------------------------------------------------------------------------------

    def _day_start(self, day: dt.date) -> dt.datetime:
        """`cal.day_start`, remembered: asked several times for every scan."""
        start = self._starts.get(day)
        if start is None:
            if len(self._starts) > 64:
                self._starts.clear()
            start = self._starts[day] = self.cal.day_start(day)
        return start

    def _day_of(self, instant: dt.datetime) -> dt.date:
        """`cal.day_of`: the duty day whose [start, next start) holds `instant` (the last one
        found is kept, as most instants fall in the same day)."""
        start, end, day = self._span
        if start <= instant < end:
            return day
        day = self.cal.day_of(instant)
        self._span = (self._day_start(day), self._day_start(day + ONE_DAY), day)
        return day

    def deadline(self, day: dt.date, name: str) -> dt.datetime:
        """The instant of the `duty` clock time `name` within duty day `day`."""
        key = (day, name)
        if key not in self._deadlines:
            if len(self._deadlines) > 64:
                self._deadlines.clear()
            self._deadlines[key] = self.cal.deadline(day, self.site.clock(name))
        return self._deadlines[key]

    def scans_of(self, person: str, since: dt.datetime, until: dt.datetime) -> list[Signed]:
        """`person`'s scans in [since, until]."""
        return [s for s in self.scans.get(person, ()) if since <= s.time <= until]

    def check_in_window(self, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
        """[day_starts − 30 min, check_in_deadline] of `day`."""
        return self._day_start(day) - CHECK_IN_LEAD, self.deadline(day, "check_in_deadline")

    def outgoing(self, day: dt.date, at: dt.datetime) -> str | None:
        """The manager handing over into `day`: the duty manager of the day before."""
        return self.roster.manager(day - ONE_DAY, at)

    def handover_parties(self, day: dt.date, at: dt.datetime) -> tuple[str | None, str | None]:
        """The (outgoing, incoming) managers of the handover into `day`, as known at `at`."""
        return self.outgoing(day, at), self.roster.manager(day, at)

    def handover_done(self, day: dt.date, at: dt.datetime) -> bool:
        """Both managers scanned at the handover post since day_starts − 30 min, or confirmed."""
        since = self._day_start(day) - CHECK_IN_LEAD
        signed = self.confirmed.get(day, set()) | self.overdue.get(day, set())
        return all(
            person in signed or self._signed_at(person, self.handover_post, since, at)
            for person in self.handover_parties(day, at)
            if person is not None
        )

    def _signed_at(self, person: str, post: str, since: dt.datetime, at: dt.datetime) -> bool:
        track = self._tracks.get(person)
        return track is not None and track.first_at(post, since, at) is not None

    def patrolled(self, day: dt.date, at: dt.datetime) -> dt.timedelta:
        """The duty manager's patrol time in `day` up to `at`."""
        manager = self.roster.manager(day, at)
        track = None if manager is None else self._tracks.get(manager)
        if track is None:
            return dt.timedelta(0)
        # The same sum as `patrol_time` over the day's scans up to `at`, in O(log n).
        return track.patrol(self._day_start(day), at)

    def signed_posts(self, day: dt.date, at: dt.datetime) -> dict[str, dt.datetime]:
        """Key posts the duty manager of `day` signed since day_starts, with the first time."""
        manager = self.roster.manager(day, at)
        track = None if manager is None else self._tracks.get(manager)
        if track is None:
            return {}
        since = self._day_start(day)
        found = [(f[1], p, f[0]) for p in self.key_posts if (f := track.first_at(p, since, at))]
        # In the order the scans came, as a pass over them in arrival order would give.
        return {post: time for _, post, time in sorted(found)}

    def hours_warning_at(self, day: dt.date, at: dt.datetime) -> dt.datetime:
        """When the quota can only just be met with `patrol_lead` to spare."""
        missing = self.quota - self.patrolled(day, at)
        return self.deadline(day, "patrol_deadline") - missing - self.patrol_lead

    # -- rule interface ----------------------------------------------------------------------

    def on_event(self, ctx: RuleContext, event: Event) -> None:
        """Scans sign; swaps and confirmations change who is on duty and what is complete."""
        if isinstance(event, Scan):  # the commonest
            # Scans move only the patrol early warning, and only the duty managers' scans.
            if self.early and self.site.has_role(event.person, MANAGERS):
                self._next_known = False
            self._seed(ctx)
            if event.person is not None:
                self._on_scan(ctx, Signed(event.time, event.person, event.post))
            return
        if isinstance(event, (SwapRegistered, HandoverConfirmed)):
            self._next_known = self._fixed_known = False
        self._seed(ctx)
        if isinstance(event, SwapRegistered):
            swap = Swap.live(event)
            self._swap_takes_effect(ctx, swap, register=True)
        elif isinstance(event, HandoverConfirmed):
            self.confirmed.setdefault(event.date, set()).add(event.by)
            self._recheck_handovers(ctx)

    def next_deadline(self) -> dt.datetime | None:
        """The earliest pending instant after `fired_until`."""
        if not self._next_known:
            if not self._fixed_known:
                # Everything but the patrol warning moves only with a swap or a fired deadline.
                fixed = self._candidates(patrol_warning=False)
                self._fixed = min((d.at for d in fixed if d.at > self.fired_until), default=None)
                self._fixed_known = True
            pending = [] if self._fixed is None else [self._fixed]
            if self.early:
                for day in self._days(self.fired_until):
                    at = self.hours_warning_at(day, self.fired_until)
                    if at > self.fired_until:
                        pending.append(at)
            self._next = min(pending, default=None)
            self._next_known = True
        return self._next

    def on_deadline(self, ctx: RuleContext) -> None:
        """Decide everything due up to `ctx.now`, in time order."""
        self._seed(ctx)
        due = sorted(
            (d for d in self._candidates() if self.fired_until < d.at <= ctx.now),
            key=lambda d: (d.at, d.kind),
        )
        for deadline in due:
            self._decide(ctx, deadline)
        if self.early:
            for day in self._days(ctx.now):
                self._early_warnings(ctx, day)
        self.fired_until = ctx.now
        self._next_known = self._fixed_known = False
        self._prune(ctx.now)

    # -- internals ---------------------------------------------------------------------------

    def _days(self, at: dt.datetime) -> list[dt.date]:
        today = self._day_of(at)
        return [today - ONE_DAY, today, today + ONE_DAY]

    def _candidates(self, patrol_warning: bool = True) -> list[Deadline]:
        out = [
            Deadline(s.registered_at, "swap", s.date, s)
            for s in self.roster.swaps
            if s.source == "file"
        ]
        for day in self._days(self.fired_until):
            out += [Deadline(self.deadline(day, name), name, day) for name in DEADLINES]
            if self.early:
                key = self.deadline(day, "key_posts_deadline")
                out += [
                    Deadline(key - self.key_lead, "warning", day),
                    Deadline(self._day_start(day), "warning", day),
                ]
                if patrol_warning:
                    at = self.hours_warning_at(day, self.fired_until)
                    out.append(Deadline(at, "warning", day))
        return out

    def _decide(self, ctx: RuleContext, deadline: Deadline) -> None:
        day = deadline.day
        if deadline.swap is not None:
            self._swap_takes_effect(ctx, deadline.swap, register=False)
        elif deadline.kind == "check_in_deadline":
            self._check_in(ctx, day)
        elif deadline.kind == "handover_deadline" and not self.handover_done(day, ctx.now):
            self.overdue[day] = self._handover_signers(day)
            ctx.raise_(
                HANDOVER_OVERDUE,
                day.isoformat(),
                Severity.warning,
                messages.for_site(self.site, HANDOVER_OVERDUE, date=day.isoformat()),
                {
                    "date": day.isoformat(),
                    "outgoing": self.outgoing(day, ctx.now),
                    "incoming": self.roster.manager(day, ctx.now),
                },
            )
        elif deadline.kind == "patrol_deadline":
            self._patrol_deadline(ctx, day)
        elif deadline.kind == "key_posts_deadline":
            self._key_posts_deadline(ctx, day)

    def _on_scan(self, ctx: RuleContext, scan: Signed) -> None:
        self.scans.setdefault(scan.person, []).append(scan)
        track = self._tracks.get(scan.person)
        if track is None:
            track = self._tracks[scan.person] = _Track(self.max_gap)
        track.add(scan)
        ctx.clear(ABSENT, scan.person)  # their first scan after the deadline (rule 1)
        if scan.post == self.handover_post and self.overdue:
            for day, signers in self.overdue.items():
                if scan.time >= self._day_start(day) - CHECK_IN_LEAD:
                    signers.add(scan.person)
            self._recheck_handovers(ctx)
        day = self._day_of(scan.time)
        if self.roster.manager(day, ctx.now) == scan.person:
            if self.patrolled(day, ctx.now) >= self.quota:
                ctx.clear(HOURS_AT_RISK, scan.person)
            if scan.post in self.key_posts:
                ctx.clear(KEY_POST_AT_RISK, scan.post)

    def _recheck_handovers(self, ctx: RuleContext) -> None:
        """Close every overdue handover that is now complete, whatever day it is for (rule 3).

        A handover can complete on a later duty day (a scan, a confirmation), or at once when
        a late swap changes who the outgoing or incoming manager is.
        """
        for day in list(self.overdue):
            if ctx.book.get(HANDOVER_OVERDUE, day.isoformat()) is None:
                del self.overdue[day]  # closed by acknowledgement once its day ended (§6)
            elif self.handover_done(day, ctx.now):
                ctx.clear(HANDOVER_OVERDUE, day.isoformat())
                del self.overdue[day]

    def _handover_signers(self, day: dt.date) -> set[str]:
        """Everyone known to have signed at the handover post since `day` day_starts − 30 min."""
        since = self._day_start(day) - CHECK_IN_LEAD
        return {
            person
            for person, scans in self.scans.items()
            if any(s.post == self.handover_post and s.time >= since for s in scans)
        }

    def _seed(self, ctx: RuleContext) -> None:
        """Learn the overdue handovers of a book these rules did not raise them in.

        A restart rebuilds the rules on a scratch book and then hands them the stored one, in
        which a handover of an older day may still be open; it must still clear when it
        completes. Done once per book, not per event.
        """
        if ctx.book is self._book:
            return
        self._book = ctx.book
        for alert in ctx.book.all_open():
            if alert.rule != HANDOVER_OVERDUE:
                continue
            try:
                day = dt.date.fromisoformat(alert.subject)
            except ValueError:
                continue
            self.overdue.setdefault(day, self._handover_signers(day))

    def _swap_takes_effect(self, ctx: RuleContext, swap: Swap, register: bool) -> None:
        before = self.roster.manager(swap.date, swap.registered_at - dt.timedelta(microseconds=1))
        if register:
            self.roster.add(swap)
        if swap.registered_at < self.start:
            return
        absent = ctx.book.get(ABSENT, before) if before is not None else None
        if (
            before is not None
            and absent is not None
            and before != swap.manager
            and absent.details.get("date") == swap.date.isoformat()
        ):
            ctx.clear(ABSENT, before)  # the duty of that day is covered (rule 1)
        self._recheck_handovers(ctx)
        if swap.registered_at > self._day_start(swap.date):
            rostered = self.roster.rostered(swap.date)
            if rostered is not None:
                ctx.raise_(
                    UNREGISTERED_SWAP,
                    rostered,
                    Severity.warning,
                    messages.for_site(
                        self.site,
                        "duty.unregistered_swap.late",
                        date=swap.date.isoformat(),
                        name=messages.person_name(self.site, rostered),
                        stand_in=messages.person_name(self.site, swap.manager),
                    ),
                    {
                        "date": swap.date.isoformat(),
                        "case": "registered_late",
                        "stand_in": swap.manager,
                    },
                )

    def _check_in(self, ctx: RuleContext, day: dt.date) -> None:
        since, until = self.check_in_window(day)
        manager = self.roster.manager(day, ctx.now)
        if manager is None or self.scans_of(manager, since, until):
            return
        ctx.raise_(
            ABSENT,
            manager,
            Severity.critical,
            messages.for_site(
                self.site,
                ABSENT,
                date=day.isoformat(),
                name=messages.person_name(self.site, manager),
            ),
            {"date": day.isoformat(), "fine_yuan": self.site.config.duty.absence_fine_yuan},
        )
        if self.roster.swap_in_effect(day, ctx.now) is not None:
            return
        outgoing = self.outgoing(day, ctx.now)
        stand_ins = sorted(
            person
            for person in self.scans
            if person not in (manager, outgoing)
            and self.site.has_role(person, MANAGERS)
            and any(s.post == self.handover_post for s in self.scans_of(person, since, until))
        )
        if stand_ins:
            ctx.raise_(
                UNREGISTERED_SWAP,
                manager,
                Severity.warning,
                messages.for_site(
                    self.site,
                    "duty.unregistered_swap.stand_in",
                    date=day.isoformat(),
                    name=messages.person_name(self.site, manager),
                    stand_in=messages.person_name(self.site, stand_ins[0]),
                ),
                {"date": day.isoformat(), "case": "stand_in", "stand_in": stand_ins[0]},
            )

    def _patrol_deadline(self, ctx: RuleContext, day: dt.date) -> None:
        for warned in sorted(self.hours_warned.pop(day, set())):
            ctx.clear(HOURS_AT_RISK, warned)
        manager = self.roster.manager(day, ctx.now)
        if manager is None:
            return
        done = self.patrolled(day, ctx.now)
        ctx.clear(HOURS_AT_RISK, manager)
        if done < self.quota:
            minutes = int(done.total_seconds() // 60)
            ctx.raise_(
                HOURS_SHORT,
                manager,
                Severity.critical,
                messages.for_site(
                    self.site,
                    HOURS_SHORT,
                    date=day.isoformat(),
                    name=messages.person_name(self.site, manager),
                    hours=f"{minutes // 60}:{minutes % 60:02d}",
                ),
                {
                    "date": day.isoformat(),
                    "patrol_minutes": minutes,
                    "required_minutes": int(self.quota.total_seconds() // 60),
                },
            )

    def _key_posts_deadline(self, ctx: RuleContext, day: dt.date) -> None:
        if self.roster.manager(day, ctx.now) is None:
            return  # no roster, no duty manager: nobody's signature is missing
        signed = self.signed_posts(day, ctx.now)
        for post in self.key_posts:
            ctx.clear(KEY_POST_AT_RISK, post)
            if post not in signed:
                ctx.raise_(
                    KEY_POST_MISSED,
                    post,
                    Severity.warning,
                    messages.for_site(self.site, KEY_POST_MISSED, post=self.site.posts[post].name),
                    {"date": day.isoformat(), "manager": self.roster.manager(day, ctx.now)},
                )

    def _early_warnings(self, ctx: RuleContext, day: dt.date) -> None:
        now = ctx.now
        start = self._day_start(day)
        key_deadline = self.deadline(day, "key_posts_deadline")
        manager = self.roster.manager(day, now)
        if manager is not None and key_deadline - self.key_lead <= now < key_deadline:
            signed = self.signed_posts(day, now)
            for post in self.key_posts:
                if post not in signed and ctx.book.get(KEY_POST_AT_RISK, post) is None:
                    ctx.raise_(
                        KEY_POST_AT_RISK,
                        post,
                        Severity.info,
                        messages.for_site(
                            self.site, KEY_POST_AT_RISK, post=self.site.posts[post].name
                        ),
                        {"date": day.isoformat(), "deadline": iso(key_deadline, self.site.tz)},
                    )
        patrol_deadline = self.deadline(day, "patrol_deadline")
        if (
            manager is not None
            and start <= now < patrol_deadline
            and self.hours_warning_at(day, now) <= now
            and self.patrolled(day, now) < self.quota
            and ctx.book.get(HOURS_AT_RISK, manager) is None
        ):
            done = int(self.patrolled(day, now).total_seconds() // 60)
            self.hours_warned.setdefault(day, set()).add(manager)
            ctx.raise_(
                HOURS_AT_RISK,
                manager,
                Severity.info,
                messages.for_site(
                    self.site,
                    HOURS_AT_RISK,
                    name=messages.person_name(self.site, manager),
                    minutes=done,
                ),
                {"date": day.isoformat(), "patrol_minutes": done},
            )

    def _prune(self, now: dt.datetime) -> None:
        oldest = self._day_of(now) - dt.timedelta(days=2)
        horizon = self._day_start(oldest)
        for day in [d for d in self.confirmed if d < oldest and d not in self.overdue]:
            del self.confirmed[day]
        for person, scans in list(self.scans.items()):
            track = self._tracks.get(person)
            if track is not None and track.times and track.times[0] >= horizon:
                continue  # nothing of theirs is older than the horizon
            kept = [s for s in scans if s.time >= horizon]
            if len(kept) == len(scans):
                continue
            if kept:
                self.scans[person] = kept
                track = self._tracks[person] = _Track(self.max_gap)
                for s in kept:
                    track.add(s)
            else:
                del self.scans[person]
                self._tracks.pop(person, None)
