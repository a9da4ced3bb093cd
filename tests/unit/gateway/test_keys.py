"""Hashed keys, plain-text warnings, file modes, ``hif keys new``, reloads and the listen policy."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hif.errors import AuthenticationError, ConfigError
from hif.gateway.auth import KeyRing, check_listen_policy, is_loopback, token_digest
from hif.gateway.keys import TOKEN_PREFIX, add_key

LONG = "sk-" + "x" * 40


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_hashed_and_plain_entries_both_authenticate(tmp_path: Path) -> None:
    text = f'[keys."sha256:{token_digest("sk-hashed-" + "h" * 40)}"]\nrole = "user"\ntenant = "alpha"\n'
    text += f'[keys."{LONG}"]\nrole = "reader"\ntenant = "beta"\n'
    ring = KeyRing.from_file(write(tmp_path / "keys.toml", text))
    who = ring.authenticate("Bearer sk-hashed-" + "h" * 40, None)
    assert (who.role, who.tenant) == ("user", "alpha")
    assert who.key is not None and who.key.key_id == token_digest("sk-hashed-" + "h" * 40)[:12]
    assert ring.authenticate(f"Bearer {LONG}", None).role == "reader"
    with pytest.raises(AuthenticationError):  # the stored digest itself is not a token
        ring.authenticate(f"Bearer sha256:{token_digest('sk-hashed-' + 'h' * 40)}", None)


def test_plain_tokens_warn_with_counts_and_short_ones_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = f'[keys."{LONG}"]\nrole = "admin"\n[keys."sk-short"]\nrole = "admin"\n'
    with caplog.at_level(logging.WARNING, logger="hif.gateway.auth"):
        KeyRing.from_file(write(tmp_path / "keys.toml", text))
    messages = [r.getMessage() for r in caplog.records]
    assert any("2 plain-text token(s)" in m for m in messages)
    assert any("1 plain-text token(s) shorter than 32" in m for m in messages)
    assert not any("sk-short" in m for m in messages)  # never log a token


def test_hashed_only_file_with_mode_600_loads_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.toml"
    add_key(path, role="admin")
    with caplog.at_level(logging.WARNING, logger="hif.gateway.auth"):
        KeyRing.from_file(path)
    assert caplog.records == []


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_keys_file_readable_by_others_warns_naming_its_mode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    path = write(tmp_path / "keys.toml", f'[keys."{LONG}"]\nrole = "admin"\n', mode)
    with caplog.at_level(logging.WARNING, logger="hif.gateway.auth"):
        KeyRing.from_file(path)
    assert any(oct(mode) in r.getMessage() and "chmod 600" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ('[keys."sha256:abc"]\nrole = "admin"\n', "64 lower-case hex"),
        (f'[keys."{LONG}"]\nrole = "admin"\nrpm = 0\n', "rpm"),
        (f'[keys."{LONG}"]\nrole = "admin"\nburst = 3\n', "needs rpm"),
        (f'[keys."{LONG}"]\nrole = "admin"\nrpm = 5\nburst = 1.5\n', "burst"),
        (f'[keys."{LONG}"]\nrole = "admin"\nrmp = 5\n', "unknown field"),
    ],
)
def test_bad_entries_fail_naming_the_field_without_echoing_the_token(
    tmp_path: Path, entry: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        KeyRing.from_file(write(tmp_path / "keys.toml", entry))
    assert LONG not in str(info.value)


def test_limits_parse_with_burst_defaulting_to_rpm(tmp_path: Path) -> None:
    text = f'[keys."{LONG}"]\nrole = "admin"\nrpm = 30\nexplain_rpm = 6\nexplain_burst = 2\n'
    ring = KeyRing.from_file(write(tmp_path / "keys.toml", text))
    key = ring.authenticate(f"Bearer {LONG}", None).key
    assert key is not None and key.rpm is not None and key.explain_rpm is not None
    assert (key.rpm.per_minute, key.rpm.burst, key.explain_rpm.burst) == (30.0, 30, 2)


def test_add_key_round_trip_mode_and_only_the_hash_stored(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.toml", f'[keys."{LONG}"]\nrole = "admin"\n', 0o644)
    token = add_key(path, role="user", tenant="alpha", rpm=60, burst=5)
    second = add_key(path, role="reader", tenant="alpha")
    assert token.startswith(TOKEN_PREFIX) and len(token) >= len(TOKEN_PREFIX) + 43  # 256 bits
    assert token != second
    text = path.read_text()
    assert token not in text and f"sha256:{token_digest(token)}" in text and LONG in text
    assert path.stat().st_mode & 0o777 == 0o600
    ring = KeyRing.from_file(path)
    key = ring.authenticate(f"Bearer {token}", None).key
    assert key is not None and key.tenant == "alpha" and key.rpm is not None and key.rpm.burst == 5
    assert ring.authenticate(f"Bearer {second}", None).role == "reader"
    assert not list(tmp_path.glob(".*.tmp"))


def test_add_key_refuses_a_bad_entry_and_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    add_key(path, role="admin")
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="must name its tenant"):
        add_key(path, role="user")
    assert path.read_bytes() == before


def test_hif_keys_new_cli_prints_the_token_once(tmp_path: Path) -> None:
    path = tmp_path / "k.toml"
    argv = [sys.executable, "-m", "hif.cli", "keys", "new", "--role", "user", "--tenant", "alpha"]
    done = subprocess.run([*argv, "--keys", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and token not in path.read_text()
    assert KeyRing.from_file(path).authenticate(f"Bearer {token}", "alpha").tenant == "alpha"
    bad = subprocess.run([*argv[:-2], "--keys", str(path)], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("hif: ")


def test_reload_swaps_keys_and_keeps_the_old_ones_when_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    first = add_key(path, role="admin")
    ring = KeyRing.from_file(path)
    second = add_key(path, role="admin")
    assert ring.reload()
    ring.authenticate(f"Bearer {second}", None)
    path.write_text(f'[keys."sha256:{token_digest(second)}"]\nrole = "admin"\n')  # first revoked
    assert ring.reload()
    with pytest.raises(AuthenticationError):
        ring.authenticate(f"Bearer {first}", None)
    path.write_text("[[ broken")
    assert not ring.reload()
    ring.authenticate(f"Bearer {second}", None)


@dataclasses.dataclass
class Listen:
    host: str
    keys: Path | None = None
    insecure_open: bool = False
    tls_cert: Path | None = None


def test_listen_policy(caplog: pytest.LogCaptureFixture) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("gateway.internal")
    check_listen_policy(Listen("127.0.0.1"))  # open on loopback: the embedded default
    with pytest.raises(ConfigError, match="--keys FILE, or --insecure-open") as info:
        check_listen_policy(Listen("0.0.0.0"))
    assert "\n" not in str(info.value)
    with caplog.at_level(logging.WARNING, logger="hif.gateway.auth"):
        check_listen_policy(Listen("0.0.0.0", insecure_open=True))
        check_listen_policy(Listen("0.0.0.0", keys=Path("k.toml")))
        check_listen_policy(Listen("0.0.0.0", keys=Path("k.toml"), tls_cert=Path("c.pem")))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "OPEN" in messages[0] and "without TLS" in messages[1]
