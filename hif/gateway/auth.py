"""RBAC: bearer tokens from a TOML keys file map to a role, (optionally) a tenant and per-key limits.

The keys file has one table per key, named by the SHA-256 of its token (``hif keys new`` writes
these) or, for older files, by the token itself::

    [keys."sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    role = "user"        # admin | user | reader
    tenant = "alpha"     # optional for admin: an unbound admin reads every tenant
    rpm = 600            # optional: chat requests per minute (a token bucket) ...
    burst = 50           # ... holding this many at most (default: rpm)
    explain_rpm = 60     # optional: attached explanations per minute (explain_burst likewise)

A presented token is hashed and the digest looked up, so the stored file never holds a usable
token and the lookup time does not depend on how much of a stored token a guess matches.

Semantics (with a keys file): no or unknown token -> 401; a role without the right -> 403; an
``x-tenant-id`` header that differs from the key's tenant -> 403; another tenant's trace -> 404
(the caller cannot tell it exists). Without a keys file the gateway runs open: every caller is an
unbound admin whose tenant comes from ``x-tenant-id`` (or ``default``); it then listens on
loopback only unless ``--insecure-open`` says otherwise (:func:`check_listen_policy`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import math
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from hif.errors import AuthenticationError, BadRequestError, ConfigError, PermissionDeniedError

log = logging.getLogger(__name__)

ROLES = ("admin", "user", "reader")
CHAT, READ = "chat", "read_traces"
RIGHTS: dict[str, frozenset[str]] = {
    "admin": frozenset({CHAT, READ}),
    "user": frozenset({CHAT, READ}),
    "reader": frozenset({READ}),
}
DEFAULT_TENANT = "default"
HASH_PREFIX = "sha256:"
KEY_ID_CHARS = 12  # 48 bits of the digest: unique enough to tell keys apart, useless as a secret
MIN_PLAIN_TOKEN_CHARS = 32
_TENANT_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_LIMIT_FIELDS = ("rpm", "burst", "explain_rpm", "explain_burst")


def token_digest(token: str) -> str:
    """The hex SHA-256 of a token: what the keys file stores and what lookups compare.

    Unsalted SHA-256 is enough for random 256-bit tokens (nothing to brute-force); it would not be
    for passwords, which is why ``hif keys new`` generates the tokens.
    """
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    """One token bucket: ``per_minute`` refill, holding ``burst`` at most."""

    per_minute: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    role: str
    tenant: str | None  # None: an unbound admin
    key_id: str = ""  # a short prefix of the token's digest: safe in logs and metric labels
    rpm: Limit | None = None  # chat requests
    explain_rpm: Limit | None = None  # attached explanations


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's role, the tenant the request runs as, and whether it is bound."""

    role: str
    tenant: str
    bound: bool  # bound principals only ever see their own tenant's traces
    key: Key | None = None  # None in open mode and for public routes

    def can(self, right: str) -> bool:
        return right in RIGHTS[self.role]

    def require(self, right: str) -> None:
        if not self.can(right):
            raise PermissionDeniedError(f"role {self.role!r} may not {right.replace('_', ' ')}")

    def sees(self, tenant: str) -> bool:
        return not self.bound or tenant == self.tenant


class KeyRing:
    """The loaded keys; ``KeyRing.open()`` when no keys file is configured.

    ``reload()`` re-reads the file and swaps the whole table in one assignment, so a request sees
    either the old keys or the new ones (``hif gateway`` calls it on SIGHUP: revocation without a
    restart). A file that no longer loads keeps the old keys and logs why.
    """

    def __init__(self, keys: Mapping[str, Key], *, open_mode: bool = False, path: Path | None = None) -> None:
        self._keys = dict(keys)  # token digest -> Key
        self.open_mode = open_mode
        self.path = path

    @classmethod
    def open(cls) -> KeyRing:
        log.warning("no keys file: the gateway runs OPEN (no authentication, every caller is admin)")
        return cls({}, open_mode=True)

    @classmethod
    def from_tokens(cls, keys: Mapping[str, Key]) -> KeyRing:
        """A ring from plain tokens (tests, embedding): they are hashed like any presented token."""
        return cls({token_digest(token): key for token, key in keys.items()})

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        return cls(load_keys(path), path=path)

    def reload(self) -> bool:
        """Re-read the keys file; True when the new keys are in use."""
        if self.path is None:
            return False
        try:
            keys = load_keys(self.path)
        except ConfigError as exc:
            log.error("keys file not reloaded, the old keys stay in use: %s", exc)
            return False
        self._keys = keys
        log.info("keys file %s reloaded: %d keys", self.path, len(keys))
        return True

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, authorization: str | None, tenant_header: str | None) -> Principal:
        """The caller behind these headers; 401 or 403 (as RequestErrors) when they do not add up."""
        if tenant_header is not None and not _TENANT_RE.match(tenant_header):
            raise BadRequestError("x-tenant-id must be 1-64 of A-Z a-z 0-9 _ . -", param="x-tenant-id")
        if self.open_mode:
            return Principal(role="admin", tenant=tenant_header or DEFAULT_TENANT, bound=False)
        token = _bearer(authorization)
        key = self._keys.get(token_digest(token)) if token else None
        if key is None:
            raise AuthenticationError(
                "missing bearer token" if not token else "unknown API key", code="invalid_api_key"
            )
        if key.tenant is None:
            return Principal(role=key.role, tenant=tenant_header or DEFAULT_TENANT, bound=False, key=key)
        if tenant_header is not None and tenant_header != key.tenant:
            raise PermissionDeniedError(
                "x-tenant-id does not match the API key's tenant", param="x-tenant-id"
            )
        return Principal(role=key.role, tenant=key.tenant, bound=True, key=key)


def load_keys(path: Path) -> dict[str, Key]:
    """Parse a keys file into digest -> Key, warning about plain-text tokens and loose file modes."""
    try:
        mode = path.stat().st_mode
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("keys", f"cannot read keys file {path}: {exc}") from exc
    keys = parse_keys(data, path)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "keys file %s has mode %s: group or others can read it; chmod 600 %s",
            path,
            oct(stat.S_IMODE(mode)),
            path,
        )
    return keys


def parse_keys(data: Mapping[str, Any], where: Path | str = "keys file") -> dict[str, Key]:
    table = data.get("keys")
    if not isinstance(table, dict) or not table:
        raise ConfigError("keys", f'{where} has no [keys."sha256:..."] tables')
    keys: dict[str, Key] = {}
    plain, short = 0, 0
    for name, spec in table.items():
        if name.startswith(HASH_PREFIX):
            digest = name.removeprefix(HASH_PREFIX)
            if not _DIGEST_RE.match(digest):
                raise ConfigError(f'keys."{name[:16]}..."', "a sha256: entry needs 64 lower-case hex digits")
        else:
            digest = token_digest(name)
            plain += 1
            short += len(name) < MIN_PLAIN_TOKEN_CHARS
        if digest in keys:
            raise ConfigError(f'keys."{name[:16]}..."', "the same key appears twice")
        keys[digest] = _key(name, digest, spec)
    if plain:
        log.warning(
            "%s holds %d plain-text token(s): anyone who reads the file holds them; store hashes "
            "instead (`hif keys new` writes them)",
            where,
            plain,
        )
    if short:
        log.warning(
            "%s holds %d plain-text token(s) shorter than %d characters: guessable",
            where,
            short,
            MIN_PLAIN_TOKEN_CHARS,
        )
    return keys


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _key(name: str, digest: str, spec: Any) -> Key:
    # Never echo a plain token into an error: the digest's prefix names the entry instead.
    where = f'keys."{name[:16]}..."' if name.startswith(HASH_PREFIX) else f"keys.<{digest[:KEY_ID_CHARS]}>"
    if not isinstance(spec, dict):
        raise ConfigError(where, "must be a table with role and tenant")
    unknown = set(spec) - {"role", "tenant", *_LIMIT_FIELDS}
    if unknown:
        raise ConfigError(where, f"unknown field(s) {', '.join(sorted(unknown))}")
    role = spec.get("role")
    if role not in ROLES:
        raise ConfigError(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    tenant = spec.get("tenant")
    if tenant is None and role != "admin":
        raise ConfigError(f"{where}.tenant", f"a {role} key must name its tenant")
    if tenant is not None and not (isinstance(tenant, str) and _TENANT_RE.match(tenant)):
        raise ConfigError(f"{where}.tenant", f"must be 1-64 of A-Z a-z 0-9 _ . -, got {tenant!r}")
    return Key(
        role=role,
        tenant=tenant,
        key_id=digest[:KEY_ID_CHARS],
        rpm=_limit(where, spec, "rpm", "burst"),
        explain_rpm=_limit(where, spec, "explain_rpm", "explain_burst"),
    )


def _limit(where: str, spec: Mapping[str, Any], rate_key: str, burst_key: str) -> Limit | None:
    rate, burst = spec.get(rate_key), spec.get(burst_key)
    if rate is None:
        if burst is not None:
            raise ConfigError(f"{where}.{burst_key}", f"needs {rate_key}")
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
        raise ConfigError(f"{where}.{rate_key}", f"must be a number above 0, got {rate!r}")
    if burst is None:
        # A minute's allowance at once, as a per-minute window would allow.
        burst = max(1, math.ceil(rate))
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ConfigError(f"{where}.{burst_key}", f"must be a whole number of at least 1, got {burst!r}")
    return Limit(per_minute=float(rate), burst=burst)


# --- where the gateway may listen -----------------------------------------------------------------


class ListenSettings(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def keys(self) -> Path | None: ...
    @property
    def insecure_open(self) -> bool: ...
    @property
    def tls_cert(self) -> Path | None: ...


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_listen_policy(settings: ListenSettings) -> None:
    """Protected mode, as Redis has it: an open gateway (no keys file) listens on loopback only.

    Raises ConfigError (one line naming ``--keys`` and ``--insecure-open``) when asked to listen
    elsewhere without keys; warns when keys would travel in clear to a non-loopback listener.
    """
    if is_loopback(settings.host):
        return
    if settings.keys is None:
        if not settings.insecure_open:
            raise ConfigError(
                "host",
                f"refusing to listen on {settings.host} without a keys file: anyone who can reach it "
                "would be admin; pass --keys FILE, or --insecure-open to run open on purpose",
            )
        log.warning("--insecure-open: the gateway listens OPEN on %s (no authentication)", settings.host)
    elif settings.tls_cert is None:
        log.warning(
            "keys in use on %s without TLS: bearer tokens travel in clear (pass --tls-cert/--tls-key "
            "or terminate TLS in front)",
            settings.host,
        )
