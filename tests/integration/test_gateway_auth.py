"""RBAC over real sockets: 401/403/404 and x-tenant-id matching, with a keys file."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.integration._gateway_proc import CHAT, Proc, gateway

KEYS = """
[keys."sk-admin"]
role = "admin"
[keys."sk-alpha"]
role = "user"
tenant = "alpha"
[keys."sk-beta"]
role = "user"
tenant = "beta"
[keys."sk-alpha-reader"]
role = "reader"
tenant = "alpha"
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    tmp = tmp_path_factory.mktemp("auth")
    (tmp / "keys.toml").write_text(KEYS)
    with gateway(tmp, "--keys", str(tmp / "keys.toml")) as proc:
        yield proc


def bearer(token: str, tenant: str | None = None) -> dict[str, str]:
    headers = {"authorization": f"Bearer {token}"}
    if tenant:
        headers["x-tenant-id"] = tenant
    return headers


def chat(gw: Proc, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    return gw.request("POST", "/v1/chat/completions", {**CHAT, "explain": {}}, headers)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (bearer("sk-unknown"), 401),
        ({"authorization": "Basic c2stYWxwaGE="}, 401),
        (bearer("sk-alpha-reader"), 403),
        (bearer("sk-alpha", "beta"), 403),
        (bearer("sk-alpha", "alpha"), 200),
        (bearer("sk-alpha"), 200),
        (bearer("sk-admin", "gamma"), 200),
    ],
)
def test_chat_matrix(gw: Proc, headers: dict[str, str], status: int) -> None:
    got, resp_headers, body = chat(gw, headers)
    assert got == status, body
    if status == 401:
        assert orjson.loads(body)["error"]["type"] == "authentication_error"
        assert resp_headers["www-authenticate"] == "Bearer"
    if status == 403:
        assert orjson.loads(body)["error"]["type"] == "permission_error"


def test_trace_reads_are_tenant_scoped(gw: Proc) -> None:
    status, _, body = chat(gw, bearer("sk-alpha"))
    assert status == 200
    url = orjson.loads(body)["explanation"]["status_url"]
    expect = {
        "sk-alpha": 200,
        "sk-alpha-reader": 200,
        "sk-admin": 200,  # owner, owner's reader, unbound admin
        "sk-beta": 404,  # another tenant cannot tell the trace exists
    }
    for token, want in expect.items():
        assert gw.request("GET", url, headers=bearer(token))[0] == want, token
    assert gw.request("GET", url)[0] == 401
    assert gw.request("GET", url, headers=bearer("sk-alpha-reader", "beta"))[0] == 403


def test_probes_are_open_and_featuresets_need_a_key(gw: Proc) -> None:
    assert gw.request("GET", "/readyz")[0] == 200
    assert gw.request("GET", "/v1/featuresets")[0] == 401
    assert gw.request("GET", "/v1/featuresets", headers=bearer("sk-alpha-reader"))[0] == 200
