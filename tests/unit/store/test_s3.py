"""The S3 blob store against a real S3 API (moto's standalone server on loopback).

The "endpoint down" tests put a TCP proxy between the store and moto and cut it, so the store sees
refused connections while moto keeps its buckets for the recovery half of the test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hif.errors import BlobWriteError, ConfigError, StoreError, StoreUnavailableError
from hif.store import open_blobs
from hif.store.base import graph_key
from hif.store.s3 import S3BlobStore, parse_url
from hif.store.settings import StoreSettings
from tests.integration import _services
from tests.integration._services import MotoServer, TcpProxy

moto_s3 = _services.moto_s3  # session fixture shared with the integration tests
FAST = "max_attempts=2&connect_timeout=0.5&read_timeout=2"


@pytest.fixture
def bucket(moto_s3: MotoServer) -> str:
    return moto_s3.create_bucket()


@pytest.fixture
def proxy(moto_s3: MotoServer) -> Iterator[TcpProxy]:
    p = TcpProxy(moto_s3.port)
    p.start()
    try:
        yield p
    finally:
        p.cut()


def test_url_parsing() -> None:
    loc = parse_url("s3://graphs/hif/prod/?max_attempts=5&connect_timeout=0.5&region=eu-west-1")
    assert (loc.bucket, loc.prefix, loc.max_attempts, loc.connect_timeout_s, loc.region) == (
        "graphs",
        "hif/prod/",
        5,
        0.5,
        "eu-west-1",
    )
    assert parse_url("s3://graphs").prefix == "" and loc.key("/graphs/a.json") == "hif/prod/graphs/a.json"
    with pytest.raises(ConfigError, match="blobs"):
        parse_url("s3:///no-bucket")
    with pytest.raises(ConfigError, match="max_attempts"):
        parse_url("s3://b/p?max_attempts=many")


def test_put_get_exists_round_trip_under_prefix(moto_s3: MotoServer, bucket: str) -> None:
    store = S3BlobStore(f"s3://{bucket}/run-1", endpoint_url=moto_s3.endpoint_url)
    key = graph_key("ab12cd")
    assert store.get(key) is None and not store.exists(key)
    store.put(key, b'{"nodes": []}')
    store.put(key, b'{"nodes": []}')  # a retried persist writes the same object again
    assert store.get(key) == b'{"nodes": []}' and store.exists(key)
    other = S3BlobStore(f"s3://{bucket}/run-2", endpoint_url=moto_s3.endpoint_url)
    assert not other.exists(key)  # prefixes keep runs apart
    store.check()
    store.close()


def test_factory_builds_s3_from_store_settings(moto_s3: MotoServer, bucket: str) -> None:
    settings = StoreSettings(blobs=f"s3://{bucket}/p", s3_endpoint_url=moto_s3.endpoint_url)
    store = open_blobs(settings.blobs_url(), s3_endpoint_url=settings.s3_endpoint_url)
    assert isinstance(store, S3BlobStore)
    store.put("k.json", b"1")
    assert store.get("k.json") == b"1"


def test_missing_bucket_is_a_clear_error(moto_s3: MotoServer) -> None:
    store = S3BlobStore("s3://no-such-bucket-hif/x", endpoint_url=moto_s3.endpoint_url)
    with pytest.raises(BlobWriteError, match="bucket 'no-such-bucket-hif' does not exist") as err:
        store.put("graphs/a.json", b"{}")
    assert err.value.context == {
        "bucket": "no-such-bucket-hif",
        "key": "x/graphs/a.json",
        "endpoint": moto_s3.endpoint_url,
    }
    with pytest.raises(StoreError, match="does not exist"):
        store.check()


def test_endpoint_down_then_back(moto_s3: MotoServer, bucket: str, proxy: TcpProxy) -> None:
    store = S3BlobStore(f"s3://{bucket}/p?{FAST}", endpoint_url=f"http://127.0.0.1:{proxy.port}")
    store.put("before.json", b"1")
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(BlobWriteError, match="unreachable") as err:
        store.put("during.json", b"2")
    assert time.monotonic() - started < 10  # bounded: retries with short timeouts, then a clear error
    assert err.value.context["key"] == "p/during.json" and err.value.context["bucket"] == bucket
    with pytest.raises(StoreUnavailableError):
        store.get("before.json")
    proxy.restore()
    store.put("during.json", b"2")  # the same client recovers once the endpoint is back
    assert store.get("during.json") == b"2" and store.get("before.json") == b"1"


def test_missing_credentials_are_named(
    moto_s3: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = S3BlobStore(f"s3://{bucket}/p", endpoint_url=moto_s3.endpoint_url)
    with pytest.raises(BlobWriteError, match="no AWS credentials"):
        store.put("a.json", b"{}")
