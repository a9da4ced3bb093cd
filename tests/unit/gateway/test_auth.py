from __future__ import annotations

from pathlib import Path

import pytest

from hif.errors import AuthenticationError, BadRequestError, ConfigError, PermissionDeniedError
from hif.gateway.auth import CHAT, READ, KeyRing

KEYS = """
[keys."sk-admin"]
role = "admin"
[keys."sk-alpha"]
role = "user"
tenant = "alpha"
[keys."sk-reader"]
role = "reader"
tenant = "alpha"
"""


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    return KeyRing.from_file(path)


def test_missing_and_unknown_tokens_are_401(ring: KeyRing) -> None:
    with pytest.raises(AuthenticationError):
        ring.authenticate(None, None)
    with pytest.raises(AuthenticationError):
        ring.authenticate("Bearer sk-nope", None)
    with pytest.raises(AuthenticationError):
        ring.authenticate("Basic sk-alpha", None)


def test_bound_key_tenant_and_header_must_match(ring: KeyRing) -> None:
    who = ring.authenticate("Bearer sk-alpha", "alpha")
    assert (who.role, who.tenant, who.bound) == ("user", "alpha", True)
    assert who.sees("alpha") and not who.sees("beta")
    with pytest.raises(PermissionDeniedError):
        ring.authenticate("Bearer sk-alpha", "beta")


def test_reader_reads_but_cannot_chat(ring: KeyRing) -> None:
    who = ring.authenticate("Bearer sk-reader", None)
    who.require(READ)
    with pytest.raises(PermissionDeniedError):
        who.require(CHAT)


def test_unbound_admin_takes_tenant_from_header_and_sees_all(ring: KeyRing) -> None:
    who = ring.authenticate("Bearer sk-admin", "beta")
    assert who.tenant == "beta" and who.sees("alpha")


def test_open_mode_and_bad_tenant_header() -> None:
    ring = KeyRing.open()
    assert ring.authenticate(None, None).tenant == "default"
    with pytest.raises(BadRequestError):
        ring.authenticate(None, "bad tenant!")


@pytest.mark.parametrize(
    "text", ['[keys."sk-x"]\nrole = "root"\n', '[keys."sk-x"]\nrole = "user"\n', "x = 1\n", "[["]
)
def test_bad_keys_files_fail_at_startup(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        KeyRing.from_file(path)
