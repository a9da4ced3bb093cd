"""RBAC: bearer tokens from a TOML keys file map to a role and (optionally) a tenant.

The keys file has one table per token::

    [keys."sk-alpha-user"]
    role = "user"        # admin | user | reader
    tenant = "alpha"     # optional for admin: an unbound admin reads every tenant

Semantics (with a keys file): no or unknown token -> 401; a role without the right -> 403; an
``x-tenant-id`` header that differs from the key's tenant -> 403; another tenant's trace -> 404
(the caller cannot tell it exists). Without a keys file the gateway runs open: every caller is an
unbound admin whose tenant comes from ``x-tenant-id`` (or ``default``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
_TENANT_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    role: str
    tenant: str | None  # None: an unbound admin


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's role, the tenant the request runs as, and whether it is bound."""

    role: str
    tenant: str
    bound: bool  # bound principals only ever see their own tenant's traces

    def can(self, right: str) -> bool:
        return right in RIGHTS[self.role]

    def require(self, right: str) -> None:
        if not self.can(right):
            raise PermissionDeniedError(f"role {self.role!r} may not {right.replace('_', ' ')}")

    def sees(self, tenant: str) -> bool:
        return not self.bound or tenant == self.tenant


class KeyRing:
    """The loaded keys; ``KeyRing.open()`` when no keys file is configured."""

    def __init__(self, keys: Mapping[str, Key], *, open_mode: bool = False) -> None:
        self._keys = dict(keys)
        self.open_mode = open_mode

    @classmethod
    def open(cls) -> KeyRing:
        log.warning("no keys file: the gateway runs OPEN (no authentication, every caller is admin)")
        return cls({}, open_mode=True)

    @classmethod
    def from_file(cls, path: Path) -> KeyRing:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("keys", f"cannot read keys file {path}: {exc}") from exc
        table = data.get("keys")
        if not isinstance(table, dict) or not table:
            raise ConfigError("keys", f'{path} has no [keys."sk-..."] tables')
        return cls({token: _key(token, spec) for token, spec in table.items()})

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, authorization: str | None, tenant_header: str | None) -> Principal:
        """The caller behind these headers; 401 or 403 (as RequestErrors) when they do not add up."""
        if tenant_header is not None and not _TENANT_RE.match(tenant_header):
            raise BadRequestError("x-tenant-id must be 1-64 of A-Z a-z 0-9 _ . -", param="x-tenant-id")
        if self.open_mode:
            return Principal(role="admin", tenant=tenant_header or DEFAULT_TENANT, bound=False)
        token = _bearer(authorization)
        key = self._keys.get(token) if token else None
        if key is None:
            raise AuthenticationError(
                "missing bearer token" if not token else "unknown API key", code="invalid_api_key"
            )
        if key.tenant is None:
            return Principal(role=key.role, tenant=tenant_header or DEFAULT_TENANT, bound=False)
        if tenant_header is not None and tenant_header != key.tenant:
            raise PermissionDeniedError(
                "x-tenant-id does not match the API key's tenant", param="x-tenant-id"
            )
        return Principal(role=key.role, tenant=key.tenant, bound=True)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _key(token: str, spec: Any) -> Key:
    where = f'keys."{token[:6]}..."'
    if not isinstance(spec, dict):
        raise ConfigError(where, "must be a table with role and tenant")
    role = spec.get("role")
    if role not in ROLES:
        raise ConfigError(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    tenant = spec.get("tenant")
    if tenant is None and role != "admin":
        raise ConfigError(f"{where}.tenant", f"a {role} key must name its tenant")
    if tenant is not None and not (isinstance(tenant, str) and _TENANT_RE.match(tenant)):
        raise ConfigError(f"{where}.tenant", f"must be 1-64 of A-Z a-z 0-9 _ . -, got {tenant!r}")
    return Key(role=role, tenant=tenant)
