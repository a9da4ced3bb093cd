"""Property-based requests generated from the gateway's own /openapi.json: never a 5xx.

Positive (schema-valid) and negative (schema-violating) cases for every operation, a bounded
number of examples each, derandomized so CI runs are repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests.integration._gateway_proc import Proc, gateway

EXAMPLES_PER_MODE = 20


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with gateway(tmp_path_factory.mktemp("schemathesis"), "--log-level", "warning") as proc:
        yield proc


def check_operation(
    operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, base_url: str
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
        response = case.call(base_url=base_url, timeout=30)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        )
        if response.status_code >= 400:
            assert {"message", "type", "code"} <= set(response.json()["error"])

    try:
        run()
    except Unsatisfiable:
        if mode is not schemathesis.GenerationMode.NEGATIVE:
            raise  # an operation with nothing to violate has no negative cases; anything else is a bug


def test_no_server_errors(gw: Proc) -> None:
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6  # schemathesis leaves out the document itself
    for operation in operations:
        for mode in schemathesis.GenerationMode:
            check_operation(operation, mode, gw.url)
