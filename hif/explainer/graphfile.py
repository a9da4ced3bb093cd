"""How a graph is stored: JSON, capped in size, gzip-compressed; and how a stored one is read back.

The worker writes :func:`encode`'s bytes to the blob store; the gateway serves :func:`decode`'s.
A graph stored before compression (plain JSON, any schema version) is served exactly as stored:
gzip data starts with ``1f 8b``, which no JSON document does, so no marker or migration is needed.
Its ``metadata.schema_version`` says which format it is in (1: before the community format).

>>> data = encode({"metadata": {"schema_version": 2}, "nodes": [], "links": []}, max_bytes=1000)
>>> decode(data)
b'{"metadata":{"schema_version":2},"nodes":[],"links":[]}'
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson

from hif.errors import StoreError

GZIP_MAGIC = b"\x1f\x8b"
COMPRESS_LEVEL = 6
DECODED_LIMIT_BYTES = 64 * 1024 * 1024  # a stored graph never inflates past this (caps keep them far below)
SHRINK_NODES = ("sae", "sae reconstruction error")  # what a byte cap may drop; inputs and targets stay


def schema_version(graph: dict[str, Any]) -> int:
    """The graph's format version (graphs before the community format may lack it: 1)."""
    return int((graph.get("metadata") or {}).get("schema_version") or 1)


def _shrink(graph: dict[str, Any]) -> bool:
    """Halve the links (weakest first), or else the least influential scored nodes; False when stuck."""
    links = graph["links"]
    if links:
        graph["links"] = sorted(links, key=lambda link: -abs(link["weight"]))[: len(links) // 2]
        return True
    scored = [n for n in graph["nodes"] if n.get("feature_type") in SHRINK_NODES]
    if not scored:
        return False
    drop = {
        n["node_id"]
        for n in sorted(scored, key=lambda n: -(n.get("influence") or 0.0))[: (len(scored) + 1) // 2]
    }
    graph["nodes"] = [n for n in graph["nodes"] if n["node_id"] not in drop]
    return True


def cap_bytes(graph: dict[str, Any], max_bytes: int) -> bytes:
    """The graph's JSON, shrunk until it fits ``max_bytes`` (the cut is recorded in its metadata)."""
    data = orjson.dumps(graph)
    if len(data) <= max_bytes:
        return data
    before = (len(graph["nodes"]), len(graph["links"]))
    while len(data) > max_bytes and _shrink(graph):
        graph.setdefault("metadata", {}).setdefault("pruning_settings", {})["max_bytes"] = max_bytes
        graph["metadata"]["pruning_settings"]["cut_by_max_bytes"] = {
            "nodes": before[0] - len(graph["nodes"]),
            "links": before[1] - len(graph["links"]),
        }
        data = orjson.dumps(graph)
    return data


def encode(graph: dict[str, Any], *, max_bytes: int) -> bytes:
    """Capped JSON, gzip-compressed (deterministic: no timestamp in the header)."""
    return gzip.compress(cap_bytes(graph, max_bytes), compresslevel=COMPRESS_LEVEL, mtime=0)


def decode(data: bytes) -> bytes:
    """The JSON bytes of a stored graph: inflated when compressed, as stored otherwise."""
    if not data.startswith(GZIP_MAGIC):
        return data
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, DECODED_LIMIT_BYTES)
    except zlib.error as exc:
        raise StoreError(f"stored graph is not valid gzip: {exc}") from exc
    if inflater.unconsumed_tail:
        raise StoreError(f"stored graph inflates past {DECODED_LIMIT_BYTES} bytes")
    return out


__all__ = ["cap_bytes", "decode", "encode", "schema_version"]
