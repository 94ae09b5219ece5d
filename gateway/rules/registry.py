"""Which rules a site runs, and what each declares about its alerts (contract §5, §6)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from gateway.alerts.record import Alert
from gateway.config.site import Site
from gateway.roster import Roster, Swap
from gateway.rules.base import Clearing, Rule, RuleId, RuleSpec, Severity
from gateway.rules.devices import DeviceOffline, UnknownCredential
from gateway.rules.duty import DutyRules
from gateway.rules.equipment import EquipmentRules
from gateway.rules.rounds import Rounds
from gateway.rules.workorders import WorkOrders

# Rules no class raises: the pipeline raises them for commands and forwarders.
OTHER_SPECS = (
    RuleSpec(RuleId.incident_major, Severity.critical, Clearing.never),
    RuleSpec(RuleId.gateway_forward_lagging, Severity.warning, Clearing.clears),
)

SPECS: dict[RuleId, RuleSpec] = {
    spec.id: spec
    for spec in (
        *DeviceOffline.specs,
        *UnknownCredential.specs,
        *DutyRules.specs,
        *Rounds.specs,
        *EquipmentRules.specs,
        *WorkOrders.specs,
        *OTHER_SPECS,
    )
}


def build_rules(
    site: Site, start: dt.datetime, live: bool, swaps: Sequence[Swap] = ()
) -> list[Rule]:
    """Every rule this gateway enforces, for one site; `start` is when counting starts, `swaps`
    the swaps registered outside the site file before it.

    Early warnings are on in `run`/`demo` (`live`) and off in `replay`, unless the site file
    says otherwise (duty.early_warnings.enabled), so replayed transitions stay exact.
    """
    setting = site.config.duty.early_warnings.enabled
    early = live if setting is None else setting
    return [
        DeviceOffline(),
        UnknownCredential(),
        DutyRules(site, Roster(site, list(swaps)), start, early),
        Rounds(site, start),
        EquipmentRules(site, start),
        WorkOrders(),
    ]


def closes_on_acknowledge(alert: Alert, at: dt.datetime, site: Site) -> bool:
    """Whether acknowledging `alert` at `at` closes it (contract §6).

    True for a rule that does not clear, and for a `handover.overdue` whose duty day has ended
    at `at` (§5 rule 3: one that never completes is then closed by acknowledging it). A rule
    this version does not know can never clear by itself, so acknowledging closes it too.
    """
    try:
        spec = SPECS[RuleId(alert.rule)]
    except ValueError:
        return True
    if spec.clearing is Clearing.never:
        return True
    if spec.clearing is Clearing.within_duty_day:
        day = _duty_day(alert)
        return day is not None and at >= site.calendar.day_start(day + dt.timedelta(days=1))
    return False


def _duty_day(alert: Alert) -> dt.date | None:
    """The duty day a duty alert is about: `details.date`, else a subject that is a date."""
    for text in (alert.details.get("date"), alert.subject):
        try:
            return dt.date.fromisoformat(str(text))
        except ValueError:
            continue
    return None
