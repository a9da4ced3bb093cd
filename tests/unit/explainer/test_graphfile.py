"""Stored graphs: capped in bytes, gzip-compressed, and pre-compression graphs read back as stored."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest

from hif.errors import StoreError
from hif.explainer import graphfile


def _graph(n_features: int, n_links: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"node_id": "E_1_0", "feature_type": "embedding", "influence": None},
        {"node_id": "7_9_0", "feature_type": "logit", "influence": None},
    ]
    nodes += [
        {"node_id": f"4_{i}_0", "feature_type": "sae", "influence": (i + 1) / n_features, "clerp": "x" * 40}
        for i in range(n_features)
    ]
    links = [
        {"source": f"4_{i % n_features}_0", "target": "7_9_0", "weight": float(i)} for i in range(n_links)
    ]
    return {"metadata": {"schema_version": 2}, "qParams": {}, "nodes": nodes, "links": links}


def test_a_graph_within_its_cap_round_trips_compressed() -> None:
    graph = _graph(20, 50)
    data = graphfile.encode(graph, max_bytes=1_000_000)
    assert data.startswith(graphfile.GZIP_MAGIC) and len(data) < len(orjson.dumps(graph))
    assert orjson.loads(graphfile.decode(data)) == graph
    assert graphfile.encode(graph, max_bytes=1_000_000) == data  # deterministic bytes


def test_the_byte_cap_drops_weak_links_then_weak_nodes_and_says_so() -> None:
    graph = _graph(200, 2000)
    full = len(orjson.dumps(graph))
    cap = full // 8
    capped = orjson.loads(graphfile.decode(graphfile.encode(graph, max_bytes=cap)))
    assert len(orjson.dumps(capped)) <= cap
    cut = capped["metadata"]["pruning_settings"]["cut_by_max_bytes"]
    assert cut["links"] > 0 and capped["metadata"]["pruning_settings"]["max_bytes"] == cap
    kinds = [n["feature_type"] for n in capped["nodes"]]
    assert "embedding" in kinds and "logit" in kinds  # inputs and targets are never cut
    kept_weights = [abs(link["weight"]) for link in capped["links"]]
    assert not kept_weights or min(kept_weights) >= 2000 - len(kept_weights)  # the strongest survive
    if cut["nodes"]:
        kept = [n["influence"] for n in capped["nodes"] if n["feature_type"] == "sae"]
        assert max(kept) < 1.0  # the least influential (largest cumulative share) went first


def test_graphs_stored_before_compression_are_read_as_stored() -> None:
    old = b'{"metadata": {"schema_version": 1}, "nodes": [], "links": []}'
    assert graphfile.decode(old) == old
    assert graphfile.schema_version(orjson.loads(old)) == 1
    assert graphfile.schema_version({"nodes": []}) == 1


def test_corrupt_or_oversized_gzip_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreError):
        graphfile.decode(graphfile.GZIP_MAGIC + b"not gzip")
    monkeypatch.setattr(graphfile, "DECODED_LIMIT_BYTES", 100)
    with pytest.raises(StoreError, match="inflates past"):
        graphfile.decode(gzip.compress(b" " * 1000))
