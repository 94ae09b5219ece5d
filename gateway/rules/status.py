"""The retained `patrol/status` (contract §3): the current duty day at a glance."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.config.site import Site
from gateway.rules.duty import DutyRules
from gateway.rules.engine import Engine
from gateway.rules.rounds import Rounds
from gateway.timeutil import iso


def on_duty(duty: DutyRules, now: dt.datetime) -> list[str]:
    """Who is on duty now: the duty manager, and the outgoing one until the handover (4.9)."""
    day = duty.cal.day_of(now)
    manager = duty.roster.manager(day, now)
    outgoing = duty.outgoing(day, now)
    people = [m for m in (manager,) if m]
    if outgoing and outgoing != manager and not duty.handover_done(day, now):
        people.append(outgoing)
    return people


def patrol_status(site: Site, engine: Engine, now: dt.datetime) -> dict[str, Any] | None:
    """The status document, or None for a site without duty rules."""
    duty = engine.find(DutyRules)
    if duty is None:
        return None
    tz = site.tz

    def person(ident: str | None) -> dict[str, str] | None:
        if ident is None:
            return None
        who = site.people.get(ident)
        return {"id": ident, "name": who.name if who else ident}

    day = duty.cal.day_of(now)
    manager = duty.roster.manager(day, now)
    outgoing = duty.outgoing(day, now)
    done = duty.handover_done(day, now)
    handover_deadline = duty.deadline(day, "handover_deadline")
    if done:
        handover = "done"
    elif now > handover_deadline:
        handover = "overdue"
    else:
        handover = "open"
    signed = duty.signed_posts(day, now)
    minutes = int(duty.patrolled(day, now).total_seconds() // 60)
    rounds = engine.find(Rounds)
    due = []
    if rounds is not None:
        for post in rounds.posts:
            when = rounds.due(post)
            due.append(
                {
                    "post": post,
                    "name": site.posts[post].name,
                    "due": iso(when, tz),
                    "overdue": when <= now,
                }
            )
    return {
        "site": site.id,
        "duty_day": day.isoformat(),
        "duty_manager": person(manager),
        "outgoing_manager": None if done or outgoing == manager else person(outgoing),
        "on_duty": [person(p) for p in on_duty(duty, now)],
        "handover": {"state": handover, "deadline": iso(handover_deadline, tz)},
        "patrol": {
            "minutes": minutes,
            "required_minutes": int(duty.quota.total_seconds() // 60),
            "deadline": iso(duty.deadline(day, "patrol_deadline"), tz),
        },
        "key_posts": {
            "signed": [
                {"post": p, "name": site.posts[p].name, "at": iso(t, tz)}
                for p, t in sorted(signed.items(), key=lambda kv: kv[1])
            ],
            "missing": [
                {"post": p, "name": site.posts[p].name} for p in duty.key_posts if p not in signed
            ],
            "deadline": iso(duty.deadline(day, "key_posts_deadline"), tz),
        },
        "rounds": due,
    }
