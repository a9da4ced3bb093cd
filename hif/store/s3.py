"""The distributed blob store on S3 or any S3-compatible API (``--blobs s3://bucket/prefix``).

``--s3-endpoint-url`` points it at MinIO, moto's server or another compatible store (path-style
addressing is used then, since such endpoints rarely have per-bucket DNS names). Credentials and
region come from the usual AWS chain (``AWS_ACCESS_KEY_ID``..., ``AWS_DEFAULT_REGION``, profiles).

A PUT replaces an object whole, and graph keys are stable per trace, so ``put`` is atomic and
idempotent: a retried or duplicated persist writes the same bytes to the same key. botocore
retries transient failures itself (adaptive mode, a few attempts, short timeouts) so one call
fails within seconds when the endpoint is down; the explainer then retries the persist stage and
finally marks the trace failed. Optional URL query settings:
``s3://bucket/prefix?max_attempts=3&connect_timeout=1&read_timeout=5&region=us-east-1``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from hif.errors import BlobWriteError, ConfigError, StoreError, StoreUnavailableError

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_CONNECT_TIMEOUT_S = 1.0
DEFAULT_READ_TIMEOUT_S = 5.0
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
# A HEAD has no error body, so a refused signature or key is just "403".
_DENIED_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ends with "/"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    region: str | None = None

    def key(self, key: str) -> str:
        return self.prefix + key.lstrip("/")


def parse_url(url: str) -> S3Location:
    """``s3://bucket/some/prefix?max_attempts=2`` -> :class:`S3Location`; bad URLs are ConfigErrors."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError("blobs", f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    prefix = parts.path.strip("/")
    query = dict(urllib.parse.parse_qsl(parts.query))
    try:
        return S3Location(
            bucket=parts.netloc,
            prefix=f"{prefix}/" if prefix else "",
            max_attempts=int(query.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            connect_timeout_s=float(query.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)),
            read_timeout_s=float(query.get("read_timeout", DEFAULT_READ_TIMEOUT_S)),
            region=query.get("region"),
        )
    except ValueError as exc:
        raise ConfigError("blobs", f"bad option in S3 URL {url!r}: {exc}") from exc


class S3BlobStore:
    """:class:`~hif.store.base.BlobStore` on one bucket and key prefix."""

    def __init__(self, url: str, *, endpoint_url: str | None = None) -> None:
        self.location = parse_url(url)
        self.endpoint_url = endpoint_url or None
        loc = self.location
        config = Config(
            retries={"mode": "adaptive", "max_attempts": loc.max_attempts},
            connect_timeout=loc.connect_timeout_s,
            read_timeout=loc.read_timeout_s,
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        region = loc.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        # A session per store: boto3's default session is module-global state.
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=region or "us-east-1", config=config
        )

    def put(self, key: str, data: bytes) -> None:
        with self._errors("write", key, BlobWriteError):
            self._client.put_object(Bucket=self.location.bucket, Key=self.location.key(key), Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            with self._errors("read", key, StoreError):
                reply = self._client.get_object(Bucket=self.location.bucket, Key=self.location.key(key))
                return bytes(reply["Body"].read())
        except _Missing:
            return None

    def exists(self, key: str) -> bool:
        try:
            with self._errors("stat", key, StoreError):
                self._client.head_object(Bucket=self.location.bucket, Key=self.location.key(key))
        except _Missing:
            return False
        return True

    def check(self) -> None:
        """Fail now, with a clear message, if the bucket is missing or unreachable (for start-up)."""
        with self._errors("reach bucket", "", StoreError):
            self._client.head_bucket(Bucket=self.location.bucket)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()

    @contextlib.contextmanager
    def _errors(self, action: str, key: str, error: type[StoreError]) -> Iterator[None]:
        """The one boundary where botocore's exceptions become HIF errors with bucket/key context."""
        bucket, full_key = self.location.bucket, self.location.key(key)
        where = f"s3://{bucket}/{full_key}"
        ctx = {"bucket": bucket, "key": full_key or None, "endpoint": self.endpoint_url}
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES and key:
                raise _Missing() from exc
            if code in ("NoSuchBucket", "404", "NotFound"):
                raise error(f"cannot {action} {where}: bucket {bucket!r} does not exist", **ctx) from exc
            if code in _DENIED_CODES:
                raise error(
                    f"cannot {action} {where}: access denied ({code}): wrong credentials or no "
                    "permission on the bucket",
                    **ctx,
                ) from exc
            raise error(f"cannot {action} {where}: S3 said {code}: {exc}", **ctx) from exc
        except NoCredentialsError as exc:
            raise error(
                f"cannot {action} {where}: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY or a profile)",
                **ctx,
            ) from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            # Unreachable after botocore's own retries: the caller may retry later.
            cls = error if error is BlobWriteError else StoreUnavailableError
            raise cls(f"cannot {action} {where}: S3 endpoint unreachable: {exc}", **ctx) from exc
        except BotoCoreError as exc:
            raise error(f"cannot {action} {where}: {type(exc).__name__}: {exc}", **ctx) from exc


class _Missing(Exception):
    """Internal: the object does not exist (get -> None, exists -> False)."""
