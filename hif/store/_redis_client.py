"""Connections to Redis for the distributed store: URL options, timeouts, one error boundary.

Both Redis backends (:mod:`hif.store.redis`) take a URL such as
``redis://host:6379/0?prefix=hif&socket_timeout=2``. HIF's own options are read from the query
string and removed; the rest go to :meth:`redis.Redis.from_url` (``socket_timeout``,
``socket_connect_timeout``, ``password``, ...).

Every call gives up after ``socket_timeout`` (a frozen Redis never hangs a request); a blocking
lease waits in slices shorter than that timeout.

Reconnects are redis-py's: a connection that broke (Redis restarted) is dropped from the pool
and the next call dials again, so a process survives a restart without being restarted itself.
One quick retry absorbs the first call on a stale pooled socket after such a restart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import urllib.parse
from collections.abc import Iterator
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, NoScriptError, ReadOnlyError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from hif.errors import ConfigError, StoreError, StoreUnavailableError

DEFAULT_SOCKET_TIMEOUT_S = 2.0
DEFAULT_CONNECT_TIMEOUT_S = 1.0
DEFAULT_RETENTION_S = 3600.0
HEALTH_CHECK_INTERVAL_S = 15


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisOptions:
    """What a ``redis://`` URL says, split into HIF's options and redis-py's."""

    url: str  # without HIF's query options
    prefix: str = "hif"
    group: str = "explainers"
    retention_s: float = DEFAULT_RETENTION_S  # how long a finished trace stays readable
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    def key(self, *parts: str) -> str:
        # The braces are a Redis Cluster hash tag: every HIF key lands in one slot, so the Lua
        # scripts that touch several keys also run on a cluster.
        return ":".join([f"{{{self.prefix}}}", *parts])

    @property
    def safe_url(self) -> str:
        """The URL without a password, for error messages and logs."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_HIF_KEYS = {"prefix", "group", "retention_s"}


def parse_url(url: str, *, key: str = "queue") -> RedisOptions:
    """Split ``url`` into :class:`RedisOptions`; a malformed URL is a ConfigError naming ``key``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(key, f"not a Redis URL: {url!r} (expected redis://host:port/db)")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _HIF_KEYS}
    theirs = [(k, v) for k, v in query if k not in _HIF_KEYS]
    rest = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(theirs)))
    values: dict[str, Any] = {"url": rest}
    try:
        for name in ("retention_s",):
            if name in ours:
                values[name] = float(ours[name])
        for name in ("prefix", "group"):
            if ours.get(name):
                values[name] = ours[name]
        given = dict(theirs)
        if "socket_timeout" in given:
            values["socket_timeout_s"] = float(given["socket_timeout"])
        if "socket_connect_timeout" in given:
            values["connect_timeout_s"] = float(given["socket_connect_timeout"])
    except ValueError as exc:
        raise ConfigError(key, f"bad option in Redis URL {url!r}: {exc}") from exc
    return RedisOptions(**values)


def make_client(opts: RedisOptions) -> redis.Redis:
    """A thread-safe client (a connection pool) with bounded socket timeouts."""
    return redis.Redis.from_url(
        opts.url,
        decode_responses=True,
        socket_timeout=opts.socket_timeout_s,
        socket_connect_timeout=opts.connect_timeout_s,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(ExponentialBackoff(cap=0.25, base=0.025), retries=1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


@contextlib.contextmanager
def translate(what: str, opts: RedisOptions, **context: Any) -> Iterator[None]:
    """The one boundary where redis-py's exceptions become :class:`~hif.errors.StoreError`."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError) as exc:
        raise StoreUnavailableError(
            f"Redis unavailable during {what}: {type(exc).__name__}: {exc}", store=opts.safe_url, **context
        ) from exc
    except NoScriptError as exc:  # only if a script vanished between load and call twice in a row
        raise StoreUnavailableError(f"Redis lost a script during {what}: {exc}", store=opts.safe_url) from exc
    except ResponseError as exc:
        raise StoreError(f"Redis rejected {what}: {exc}", store=opts.safe_url, **context) from exc
    except RedisError as exc:
        raise StoreError(
            f"Redis failed during {what}: {type(exc).__name__}: {exc}", store=opts.safe_url, **context
        ) from exc
