"""Limits that shed slow and oversized HTTP clients, enforced inside the server stack.

A client that sends half its headers, or a ``Content-Length: 100`` with 10 bytes, would otherwise
hold a connection (and a file descriptor) for ever, and one huge header value would be buffered
whole. :class:`HttpLimits` names the four limits; each server stack applies them its own way:

- uvicorn: :func:`hif.http_limits.uvicorn.limited_protocol` (an httptools protocol with a header
  deadline, a body idle deadline, a header size limit and a connection cap);
- granian: :func:`hif.http_limits.granian.http1_settings` plus the
  :class:`hif.http_limits.granian.BodyIdleDeadline` ASGI wrapper; granian exposes no hook for a
  connection cap or for a connection that never sends a byte (see ``GRANIAN_UNENFORCED``).

>>> HttpLimits(header_timeout_s=1.0).max_header_bytes
65536
"""

from __future__ import annotations

import dataclasses
import logging
import resource

import orjson

log = logging.getLogger(__name__)

# Descriptors the process needs besides client connections: stores, logs, the upstream pool.
FD_HEADROOM = 512


@dataclasses.dataclass(frozen=True, kw_only=True)
class HttpLimits:
    """How long a client may take and how much it may send before the server drops it."""

    header_timeout_s: float = 10.0  # from a request's first byte to the end of its headers
    body_idle_timeout_s: float = 10.0  # the longest gap between two pieces of a request body
    max_header_bytes: int = 65536  # request line plus all header lines
    max_connections: int = 8192  # open client connections; more are closed on accept


def error_body(code: str, message: str) -> bytes:
    """The OpenAI error envelope the gateway answers with, as JSON bytes."""
    return orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": None}}
    )


def error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response carrying an error envelope."""
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def raise_fd_limit(limits: HttpLimits) -> int:
    """Raise the soft open-file limit so ``max_connections`` can actually be reached; returns it.

    Many systems start processes at a soft limit of 1,024, under which accept() fails with
    EMFILE long before the connection cap would speak. The hard limit is never changed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.max_connections + FD_HEADROOM
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "open-file limit %d is below max_connections %d plus %d; raise `ulimit -n` or lower "
            "--max-connections",
            soft,
            limits.max_connections,
            FD_HEADROOM,
        )
    return soft
