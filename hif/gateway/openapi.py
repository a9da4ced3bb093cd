"""The OpenAPI 3.1 document of the gateway's routes, generated from the wire schemas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from hif.gateway.schemas import (
    ChatCompletion,
    ChatRequest,
    ErrorEnvelope,
    FeatureCard,
    FeaturesetList,
    Health,
    ModelList,
    TraceStatus,
)

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json("ErrorEnvelope", "OpenAI error envelope") for c in codes}


AUTH_HEADERS = [
    {
        "name": "x-tenant-id",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$"},
        "description": "tenant label; must match the API key's tenant where the key binds one",
    },
]
TRACE_ID = {
    "name": "trace_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_\\-]{1,128}$"},
}


# OpenAPI 3.1 has a text/event-stream schema describe one event (3.2 would call it itemSchema)
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "description": "a JSON chat.completion.chunk, an OpenAI error envelope, or [DONE]",
        },
    },
    "required": ["data"],
}


TOKEN = {
    "name": "token",
    "in": "query",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    "description": "the signed, short-lived token of the explanation's `view_url`",
}
HTML = {"text/html": {"schema": {"type": "string"}}}
FEATURE_PARAMS = [
    {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,128}$"},
    },
    {
        "name": "layer",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": 9999},
    },
    {
        "name": "index",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
    },
    {
        "name": "trace",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_\\-]{1,128}$"},
        "description": "with `token`: the trace whose viewer link opens this page (HTML instead of JSON)",
    },
    {**TOKEN, "required": False},
    *AUTH_HEADERS,
]


def _viewer_paths() -> dict[str, Any]:
    return {
        "/v1/traces/{trace_id}/view": {
            "get": {
                "operationId": "viewTrace",
                "summary": "the graph viewer page; opened by the explanation's signed `view_url`, no key",
                "security": [],
                "parameters": [TRACE_ID, TOKEN],
                "responses": {
                    "200": {
                        "description": "the viewer page (strict Content-Security-Policy)",
                        "content": HTML,
                    },
                    "202": {"description": "not finished yet: a page that reloads itself", "content": HTML},
                    **_errors(403, 404, 410, 503),
                },
            }
        },
        "/v1/featuresets/{name}/features/{layer}/{index}": {
            "get": {
                "operationId": "getFeature",
                "summary": "one latent: label, label score, top activating contexts, activation histogram",
                "parameters": FEATURE_PARAMS,
                "responses": {
                    "200": {
                        "description": "the feature card: JSON with a key, the page with `trace` and `token`",
                        "content": {"application/json": {"schema": _ref("FeatureCard")}, **HTML},
                    },
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
    }


def _paths() -> dict[str, Any]:
    # 400: a malformed x-tenant-id (AUTH_HEADERS' pattern) is refused before anything else
    trace_errors = _errors(400, 401, 403, 404, 503)
    return {
        "/v1/chat/completions": {
            "post": {
                "operationId": "createChatCompletion",
                "summary": "OpenAI Chat Completions, with an optional `explain` request",
                "parameters": AUTH_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ChatRequest")}},
                },
                "responses": {
                    "200": {
                        "description": "the completion (JSON), or an SSE stream when `stream` is true",
                        "headers": {"x-trace-id": {"schema": {"type": "string"}}},
                        "content": {
                            "application/json": {"schema": _ref("ChatCompletion")},
                            "text/event-stream": {"schema": SSE_EVENT},
                        },
                    },
                    **_errors(400, 401, 403, 413, 415, 422, 502, 504),
                    "429": {
                        **_json(
                            "ErrorEnvelope", "the API key's `rpm` limit is spent (no upstream call made)"
                        ),
                        "headers": {
                            "Retry-After": {
                                "description": "whole seconds until the key may send again",
                                "schema": {"type": "integer", "minimum": 1},
                            }
                        },
                    },
                },
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "the upstream's models (OpenAI format)",
                "parameters": AUTH_HEADERS,
                "responses": {"200": _json("ModelList", "the models"), **_errors(400, 401, 403, 502, 504)},
            }
        },
        "/v1/featuresets": {
            "get": {
                "operationId": "listFeaturesets",
                "summary": "featuresets this deployment serves",
                "parameters": AUTH_HEADERS,
                "responses": {"200": _json("FeaturesetList", "the registry"), **_errors(400, 401, 403)},
            }
        },
        "/v1/traces/{trace_id}/status": {
            "get": {
                "operationId": "getTraceStatus",
                "summary": "state of one explanation",
                "parameters": [TRACE_ID, *AUTH_HEADERS],
                "responses": {"200": _json("TraceStatus", "the trace"), **trace_errors},
            }
        },
        "/v1/traces/{trace_id}/graph": {
            "get": {
                "operationId": "getTraceGraph",
                "summary": "the attribution graph of a complete explanation",
                "parameters": [TRACE_ID, *AUTH_HEADERS],
                "responses": {
                    "200": {
                        "description": "the graph JSON",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "202": _json("TraceStatus", "not finished yet: the status"),
                    **trace_errors,
                    **_errors(410),
                },
            }
        },
        "/healthz": {
            "get": {"operationId": "healthz", "responses": {"200": _json("Health", "alive")}},
            "head": {"operationId": "healthzHead", "responses": {"200": {"description": "alive (no body)"}}},
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "responses": {"200": _json("Health", "ready"), "503": _json("Health", "not ready")},
            },
            "head": {
                "operationId": "readyzHead",
                "responses": {
                    "200": {"description": "ready (no body)"},
                    "503": {"description": "not ready (no body)"},
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "responses": {
                    "200": {
                        "description": "this document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def openapi_document(version: str, featuresets: Sequence[str] = ()) -> dict[str, Any]:
    """The document; ``featuresets`` (the names this deployment serves) become the enum of
    ``explain.features``, so a request the schema accepts is one the gateway accepts."""
    models: list[type[BaseModel]] = [
        ChatRequest,
        ChatCompletion,
        ErrorEnvelope,
        FeaturesetList,
        ModelList,
        FeatureCard,
        TraceStatus,
        Health,
    ]
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas = defs.get("$defs", {})
    if featuresets:
        features = schemas["Explain"]["properties"]["features"]
        features["anyOf"] = [{"type": "string", "enum": list(featuresets)}, {"type": "null"}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "HIF gateway",
            "version": version,
            "description": "OpenAI-compatible chat with an interpretability sidecar",
        },
        "paths": {**_paths(), **_viewer_paths()},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
