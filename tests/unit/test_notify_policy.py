"""The escalation policy's special cases (§9) that the scenarios do not reach."""

from __future__ import annotations

import datetime as dt

from gateway.config import load_site
from gateway.config.models import Notify
from gateway.config.site import Site
from gateway.notify.policy import Escalation, ObservedBook
from tests.support.scenarios import OWN

T = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)


def policy() -> tuple[Escalation, ObservedBook]:
    site = load_site(OWN / "notify" / "site.yaml")
    # On duty: li and the outgoing zhang (handover open); the duty manager is li.
    escalation = Escalation(site, lambda now: ["li", "zhang"], lambda now: ["li"])
    return escalation, ObservedBook(site.id, [], escalation.observe)


def test_early_warnings_go_to_the_duty_manager_alone_once() -> None:
    """patrol.hours_at_risk reaches the duty manager only (not the outgoing one, not the
    escalation), once: no later stage, no reminder, no closing message."""
    escalation, book = policy()
    book.raise_("patrol.hours_at_risk", "li", "info", T, "巡检时长可能不足")
    [notice] = escalation.take()
    assert (notice.people, notice.stage, notice.kind) == (("li",), 0, "raised")
    assert escalation.next_deadline() is None
    book.raise_("patrol.hours_at_risk", "li", "info", T + dt.timedelta(minutes=5), "仍不足")
    book.clear("patrol.hours_at_risk", "li", T + dt.timedelta(minutes=20))
    assert escalation.take() == []


def test_an_update_of_an_open_alert_notifies_nobody_again() -> None:
    """A rule updating its open alert (a new reading) does not restart or repeat the escalation."""
    escalation, book = policy()
    book.raise_("device.offline", "gate-1", "warning", T, "离线")
    first = escalation.take()
    assert {p for n in first for p in n.people} == {"li", "zhang"}
    book.raise_("device.offline", "gate-1", "warning", T + dt.timedelta(minutes=1), "仍离线")
    assert escalation.take() == []
    assert escalation.next_deadline() == T + dt.timedelta(minutes=15)


def test_a_site_without_escalation_tracks_nothing_but_a_major_incident() -> None:
    """No `notify` section: ordinary alerts are tracked by nobody (nothing to send, nothing
    kept), a major incident still reaches every general manager at once (4.2)."""
    site = load_site(OWN / "notify" / "site.yaml")
    bare = site.config.model_copy(update={"notify": Notify()})
    escalation = Escalation(Site(bare), lambda now: ["zhang"], lambda now: ["zhang"])
    book = ObservedBook(site.id, [], escalation.observe)
    book.raise_("device.offline", "gate-1", "warning", T, "离线")
    assert escalation.take() == [] and escalation.tracks == {}
    book.raise_("incident.major", "inc-1", "critical", T, "火警")
    [notice] = escalation.take()
    assert notice.people == ("wang",)
