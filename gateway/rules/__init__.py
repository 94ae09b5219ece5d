"""The rule engine: rules are small state machines over events and an injected clock (§5).

`base` holds what a rule is (`Rule`, `RuleContext`, `RuleId`, `Severity`), `engine` drives
them, `registry` says which rules a site runs and how their alerts end.
"""

from gateway.rules.base import Clearing, Rule, RuleContext, RuleId, RuleSpec, Severity
from gateway.rules.engine import Engine
from gateway.rules.registry import SPECS, build_rules, closes_on_acknowledge

__all__ = [
    "SPECS",
    "Clearing",
    "Engine",
    "Rule",
    "RuleContext",
    "RuleId",
    "RuleSpec",
    "Severity",
    "build_rules",
    "closes_on_acknowledge",
]
