"""The graph formats owned by other projects, checked with their own definitions.

- circuit-tracer: its pydantic ``Model`` from ``frontend/graph_models.py`` (the copy that
  scripts/circuit-tracer-frontend.sh unpacks into .cache/circuit-tracer, never installed);
- Neuronpedia: the required fields and types of its published ``graph-schema.json``
  (apps/webapp/app/api/graph/graph-schema.json in the neuronpedia repository, schema version 1.0.0),
  transcribed below as a JSON Schema and checked with ``jsonschema`` (the schema is not packaged
  anywhere installable, so it cannot be loaded from its own project here);
- what both frontends' JavaScript assumes and neither schema says (logit clerps carry ``"token"``
  and ``(p=...)``, ids are unique, links join existing nodes, ``ctx_idx`` indexes ``prompt_tokens``).

    from tests.graph_formats import check_community_format
    check_community_format(graph)          # AssertionError / pydantic.ValidationError when broken
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest

CIRCUIT_TRACER = Path(__file__).resolve().parent.parent / ".cache" / "circuit-tracer"
FRONTEND_ASSETS = CIRCUIT_TRACER / "circuit_tracer" / "frontend" / "assets"

# Neuronpedia's graph-schema.json 1.0.0: what it requires and the types it allows (optional keys
# are typed only where the schema types them).
_STR, _NUM = {"type": "string"}, {"type": "number"}
NEURONPEDIA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["metadata", "qParams", "nodes", "links"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["slug", "scan", "prompt_tokens", "prompt"],
            "properties": {
                "slug": _STR,
                "scan": _STR,
                "prompt_tokens": {"type": "array", "items": _STR},
                "prompt": _STR,
                "node_threshold": _NUM,
                "feature_details": {"type": "object"},
                "info": {"type": "object"},
                "generation_settings": {"type": "object"},
                "pruning_settings": {"type": "object"},
            },
        },
        "qParams": {
            "type": "object",
            "properties": {
                "pinnedIds": {"type": "array", "items": _STR},
                "supernodes": {"type": "array"},
                "linkType": _STR,
                "clickedId": _STR,
                "sg_pos": _STR,
            },
        },
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"],
                "properties": {
                    "node_id": _STR,
                    "feature": {"type": ["integer", "null"]},
                    "layer": {"type": ["string", "integer"]},
                    "ctx_idx": {"type": "integer"},
                    "feature_type": _STR,
                    "jsNodeId": _STR,
                    "clerp": _STR,
                    "influence": {"type": ["number", "null"]},
                    "activation": {"type": ["number", "null"]},
                },
            },
        },
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["source", "target", "weight"],
                "properties": {"source": _STR, "target": _STR, "weight": _NUM},
            },
        },
    },
}

# What circuit-tracer's frontend JavaScript reads beyond Neuronpedia's requirements (its own
# graph files always carry these): required keys per object and their JSON types.
VIEWER_REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "graph": {"metadata": (dict,), "qParams": (dict,), "nodes": (list,), "links": (list,)},
    "metadata": {
        "slug": (str,),
        "scan": (str,),
        "transcoder_list": (list,),
        "prompt_tokens": (list,),
        "prompt": (str,),
        "node_threshold": (int, float),
        "schema_version": (int,),
    },
    "qParams": {
        "pinnedIds": (list,),
        "supernodes": (list,),
        "linkType": (str,),
        "clickedId": (str,),
        "sg_pos": (str,),
    },
    "node": {
        "node_id": (str,),
        "feature": (int,),
        "layer": (str,),
        "ctx_idx": (int,),
        "feature_type": (str,),
        "token_prob": (int, float),
        "is_target_logit": (bool,),
        "run_idx": (int,),
        "reverse_ctx_idx": (int,),
        "jsNodeId": (str,),
        "clerp": (str,),
    },
    "link": {"source": (str,), "target": (str,), "weight": (int, float)},
}


def graph_models() -> ModuleType:
    """circuit-tracer's ``frontend.graph_models``; skips (fails under CI=true) when not unpacked."""
    if not (CIRCUIT_TRACER / "circuit_tracer" / "frontend" / "graph_models.py").is_file():
        why = "circuit-tracer's frontend is not unpacked: run scripts/circuit-tracer-frontend.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {why}", pytrace=False)
        pytest.skip(why)
    if str(CIRCUIT_TRACER) not in sys.path:
        sys.path.insert(0, str(CIRCUIT_TRACER))
    return importlib.import_module("circuit_tracer.frontend.graph_models")


def _typed(obj: dict[str, Any], kind: str) -> None:
    for key, types in VIEWER_REQUIRED[kind].items():
        assert key in obj, f"{kind} lacks {key!r}: {obj}"
        value = obj[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        assert ok, f"{kind}.{key} is {type(value).__name__}, wants {types}"


def check_neuronpedia(graph: dict[str, Any]) -> None:
    jsonschema.validate(graph, NEURONPEDIA_SCHEMA)


def check_viewer_fields(graph: dict[str, Any]) -> None:
    _typed(graph, "graph")
    _typed(graph["metadata"], "metadata")
    _typed(graph["qParams"], "qParams")
    for node in graph["nodes"]:
        _typed(node, "node")
    for link in graph["links"]:
        _typed(link, "link")


def check_viewer_assumptions(graph: dict[str, Any]) -> None:
    nodes, tokens = graph["nodes"], graph["metadata"]["prompt_tokens"]
    ids = [n["node_id"] for n in nodes]
    assert len(ids) == len(set(ids)), "node ids collide"
    assert all(0 <= n["ctx_idx"] < len(tokens) for n in nodes), "a ctx_idx is not a token position"
    known = set(ids)
    assert all(link["source"] in known and link["target"] in known for link in graph["links"])
    for node in nodes:
        if node["feature_type"] == "logit":
            token = node["clerp"].split('"')[1].split('" k(p=')[0]
            assert token, node["clerp"]
            prob = float(node["clerp"].split("(p=")[1].split(")")[0])
            assert prob == pytest.approx(node["token_prob"], abs=1e-3)
        elif node["influence"] is not None:
            assert 0.0 < node["influence"] <= 1.0
    threshold = graph["metadata"]["node_threshold"]
    assert isinstance(threshold, float) and 0.0 < threshold <= 1.0


def check_community_format(graph: dict[str, Any]) -> None:
    graph_models().Model.model_validate(graph)
    check_neuronpedia(graph)
    check_viewer_fields(graph)
    check_viewer_assumptions(graph)
