"""Which featureset a run uses: the one given, else the runbook's, else the server's default."""

from __future__ import annotations

from typing import Any

import pytest

from hif.errors import PreflightError
from hif.harness.load.preflight import choose_featureset

SERVED: dict[str, Any] = {
    "object": "list",
    "data": [
        {"name": "sae-gpt4-2m", "available": False, "reason": "GPU featureset"},
        {"name": "small", "available": True},
    ],
    "default": "small",
}


def test_none_given_falls_back_to_the_servers_default_and_says_so() -> None:
    got = choose_featureset(SERVED, None, "http://x")
    assert got["requested"] == "sae-gpt4-2m" and got["used"] == "small" and got["given"] is False
    assert got["note"] == (
        "featureset sae-gpt4-2m (the default) is not served here; using the server's default small; "
        "pass --features to choose"
    )


def test_none_given_and_the_runbooks_featureset_served_uses_it() -> None:
    body = {**SERVED, "data": [{"name": "sae-gpt4-2m", "available": True}, {"name": "small"}]}
    assert choose_featureset(body, None, "http://x") == {
        "requested": "sae-gpt4-2m",
        "given": False,
        "used": "sae-gpt4-2m",
        "note": None,
    }


def test_a_given_featureset_that_is_not_served_is_an_error_naming_the_flag() -> None:
    with pytest.raises(PreflightError, match=r"'sae-gpt4-2m' is not served .*GPU featureset.*--features$"):
        choose_featureset(SERVED, "sae-gpt4-2m", "http://x")
    assert choose_featureset(SERVED, "small", "http://x")["used"] == "small"
