"""The rule engine: rules are small state machines over events and an injected clock (§5)."""

from gateway.rules.engine import Engine, RuleContext, build_rules

__all__ = ["Engine", "RuleContext", "build_rules"]
