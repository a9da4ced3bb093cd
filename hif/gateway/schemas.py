"""Wire schemas: what the gateway accepts and answers (pydantic v2; also the OpenAPI source).

Requests are validated strictly (no "1" -> 1 coercion) but unknown OpenAI parameters are allowed
and forwarded untouched, so a new SDK field never breaks the gateway.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hif.errors import ValidationError


class Explain(BaseModel):
    """The opt-in explanation request."""

    model_config = ConfigDict(strict=True, extra="forbid")
    granularity: Literal["sentence", "token"] = "sentence"
    features: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="featureset name; default: the registry's default",
    )


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    include_usage: bool | None = None


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: the OpenAI request plus ``explain``."""

    model_config = ConfigDict(strict=True, extra="allow")
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1, description="only one choice is supported")
    explain: Explain | None = None

    @field_validator("max_tokens", "max_completion_tokens", "n", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        """JSON Schema's ``integer`` (what the OpenAPI document says) is any number with a zero
        fraction, so ``1.0`` is taken as ``1``; strict mode still refuses ``"1"``, ``true`` and ``1.5``."""
        return int(value) if isinstance(value, float) and value.is_integer() else value


INTEGER_FIELDS = frozenset({"max_tokens", "max_completion_tokens", "n"})


# --- responses (for the OpenAPI document; the handlers build dicts directly for speed) ---------


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class Explanation(BaseModel):
    trace_id: str
    state: Literal["queued", "running", "complete", "failed", "expired", "shed", "rate_limited"]
    granularity: str
    features: str
    status_url: str
    graph_url: str
    view_url: str  # the viewer page, signed for this trace's tenant and short-lived: no bearer needed
    reason: str | None = None


class ChatCompletion(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, int] | None = None
    explanation: Explanation | None = None


class RequestedResolved(BaseModel):
    requested: str
    resolved: str


class TraceStatus(BaseModel):
    trace_id: str
    state: Literal["queued", "running", "complete", "failed", "expired", "shed", "rate_limited"]
    granularity: RequestedResolved
    features: RequestedResolved
    degraded: list[str]
    attribution: str | None
    error: str | None
    reason: str | None
    stage_ms: dict[str, float]
    attempts: int
    created_at: float
    updated_at: float
    expires_at: float


class Featureset(BaseModel):
    name: str
    description: str
    model: str
    layers: list[int]
    latents: int
    k: int
    available: bool
    reason: str | None


class FeaturesetList(BaseModel):
    object: Literal["list"]
    data: list[Featureset]
    default: str


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int = 0
    owned_by: str = ""


class ModelList(BaseModel):
    """OpenAI's ``GET /v1/models`` answer: the upstream's models."""

    object: Literal["list"]
    data: list[Model]


class FeatureContext(BaseModel):
    before: str
    token: str  # the activating token
    after: str


class FeatureHistogram(BaseModel):
    model_config = ConfigDict(extra="allow")
    counts: list[int]
    edges: list[float]


class FeatureCard(BaseModel):
    object: Literal["feature"]
    featureset: str
    layer: int
    index: int
    label: str | None
    label_score: float | None  # null: the label was not scored on held-out text
    max_activation: float | None
    contexts: list[FeatureContext]
    histogram: FeatureHistogram | None


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = {}


def parse_chat(data: Any) -> ChatRequest:
    """Validate a decoded body; a violation is a 422 naming the first offending field."""
    try:
        return ChatRequest.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ValidationError(f"{param or 'body'}: {first['msg']}", param=param) from exc
