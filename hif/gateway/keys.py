"""Issuing API keys: a fresh random token, shown once, and only its hash in the keys file.

>>> from pathlib import Path
>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "keys.toml"
>>> token = add_key(path, role="user", tenant="alpha", rpm=60)
>>> token.startswith(TOKEN_PREFIX), token_digest(token) in path.read_text()
(True, True)
>>> oct(path.stat().st_mode & 0o777)
'0o600'
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tomllib
from pathlib import Path

from hif.errors import ConfigError
from hif.gateway.auth import HASH_PREFIX, KEY_ID_CHARS, parse_keys, token_digest

TOKEN_PREFIX = "sk-hif-"
TOKEN_BYTES = 32  # 256 bits: a hash of it cannot be brute-forced, so no salt or slow hash is needed
FILE_MODE = 0o600


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def add_key(
    path: Path,
    *,
    role: str,
    tenant: str | None = None,
    rpm: float | None = None,
    burst: int | None = None,
    explain_rpm: float | None = None,
    explain_burst: int | None = None,
) -> str:
    """Append a new key's hash to ``path`` (created if missing); returns the token, never stored.

    The whole file is rewritten atomically (a 0600 temp file renamed over it), and the result is
    parsed before it replaces the old file, so a running gateway reloading on SIGHUP never sees a
    half-written or invalid file.
    """
    token = new_token()
    digest = token_digest(token)
    fields = {
        "role": role,
        "tenant": tenant,
        "rpm": rpm,
        "burst": burst,
        "explain_rpm": explain_rpm,
        "explain_burst": explain_burst,
    }
    entry = f'\n[keys."{HASH_PREFIX}{digest}"]  # key id {digest[:KEY_ID_CHARS]}\n'
    entry += "".join(f"{name} = {_toml(value)}\n" for name, value in fields.items() if value is not None)
    old = _read(path)
    text = old + ("" if not old or old.endswith("\n") else "\n") + entry
    try:
        parse_keys(tomllib.loads(text), path)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("keys", f"{path} is not valid TOML, not touching it: {exc}") from exc
    write_atomic(path, text.encode())
    return token


def _toml(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError("keys", f"cannot read keys file {path}: {exc}") from exc


def write_atomic(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder: readers see old or new, whole."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed os.open's mode; never widened it
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError("keys", f"cannot write keys file {path}: {exc}") from exc
