"""Property-based requests generated from the gateway's own /openapi.json: every schemathesis check passes.

Positive (schema-valid) and negative (schema-violating) cases for every operation, a bounded number of
examples each, derandomized so CI runs are repeatable. Every check schemathesis ships runs (not only
"no 5xx"): status codes, content types, headers and bodies must match the document, schema-violating
input must be refused and valid input accepted, wrong methods answer 405 with ``Allow``. This is the gate
a new route passes: its behaviour and its entry in hif/gateway/openapi.py must agree.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS, load_all_checks

from tests.integration._gateway_proc import Proc, gateway

EXAMPLES_PER_MODE = 20


def all_checks() -> list[schemathesis.CheckFunction]:
    load_all_checks()
    return [check for check in CHECKS.get_all() if callable(check) and not isinstance(check, type)]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with gateway(tmp_path_factory.mktemp("schemathesis"), "--log-level", "warning") as proc:
        yield proc


def check_operation(
    operation: schemathesis.APIOperation,
    mode: schemathesis.GenerationMode,
    base_url: str,
    checks: list[schemathesis.CheckFunction],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(base_url=base_url, timeout=30, checks=checks)
        if response.status_code >= 400 and case.method != "HEAD":
            assert {"message", "type", "code"} <= set(response.json()["error"])

    try:
        run()
    except Unsatisfiable:
        if mode is not schemathesis.GenerationMode.NEGATIVE:
            raise  # an operation with nothing to violate has no negative cases; anything else is a bug


def test_every_check_passes(gw: Proc) -> None:
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8  # schemathesis leaves out the document itself
    checks = all_checks()
    assert len(checks) >= 10  # a schemathesis upgrade that renames its registry must not empty this
    for operation in operations:
        for mode in schemathesis.GenerationMode:
            check_operation(operation, mode, gw.url, checks)
