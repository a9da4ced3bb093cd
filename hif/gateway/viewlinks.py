"""Signed, short-lived links to a trace's viewer page (a browser sends no bearer token).

A link's token is ``<expiry unix seconds>.<HMAC-SHA256(secret, trace id, tenant, expiry)>``: it
opens one trace's page (and the feature pages linked from it) for the tenant that owns the trace,
until it expires. A token for another trace or another tenant's trace fails the signature check
and answers like an unknown trace (404), so links cannot probe ids; an expired one answers 403.

The secret is ``--view-secret`` (``HIF_VIEW_SECRET``); without it each gateway process draws a random
one, so links then open only on the process that made them (set one secret for several gateways).

>>> links = ViewLinks(b"k" * 32, ttl_s=60, clock=lambda: 1000.0)
>>> links.url("abc", "acme")
'/v1/traces/abc/view?token=1060.ugOAz9T1UgHJ73IclaL4iEDn4F52iW60cATQaD7P8NE'
>>> links.check(links.token("abc", "acme"), "abc", "acme")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable

from hif.errors import NotFoundError, PermissionDeniedError


class ViewLinkExpiredError(PermissionDeniedError):
    code = "view_link_expired"


class ViewLinks:
    def __init__(self, secret: bytes | None, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret or os.urandom(32)
        self.ttl_s, self._clock = ttl_s, clock

    def _sign(self, trace_id: str, tenant: str, expires: int) -> str:
        message = f"hif-view\n{trace_id}\n{tenant}\n{expires}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def token(self, trace_id: str, tenant: str) -> str:
        expires = int(self._clock() + self.ttl_s)
        return f"{expires}.{self._sign(trace_id, tenant, expires)}"

    def url(self, trace_id: str, tenant: str) -> str:
        return f"/v1/traces/{trace_id}/view?token={self.token(trace_id, tenant)}"

    def check(self, token: str | None, trace_id: str, tenant: str) -> None:
        """NotFoundError unless ``token`` was signed for this trace and tenant; 403 once expired."""
        expires_raw, _, signature = (token or "").partition(".")
        if not expires_raw.isdigit() or not hmac.compare_digest(
            signature.encode(), self._sign(trace_id, tenant, int(expires_raw)).encode()
        ):
            raise NotFoundError(f"no trace {trace_id!r}", code="trace_not_found", param="trace_id")
        if int(expires_raw) <= self._clock():
            raise ViewLinkExpiredError(
                "this view link has expired: fetch a new one from the API", param="token"
            )
