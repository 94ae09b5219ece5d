"""Schemathesis against the published OpenAPI (§10): whatever a client sends that the schema
allows or not, the API never answers with a server error nor with a body its schema denies."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.unit.test_api import Desked
from tests.unit.test_api import desk as desk

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_the_api_conforms_to_its_schema(desk: Desked) -> None:
    """A 500, an undeclared status or a body that breaks the schema would break every client
    generated from the OpenAPI document. (Schemathesis's pytest plugin does not load under
    this pytest, so each operation's strategy is run by Hypothesis directly.)"""
    loaded = schemathesis.openapi.from_asgi("/api/v1/openapi.json", desk.app)
    # The event stream never ends: the browser test covers it.
    schema = loaded.exclude(path="/api/v1/events")
    headers = desk.auth("li-na")
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        conforms()
        tested += 1
    assert tested >= 18
