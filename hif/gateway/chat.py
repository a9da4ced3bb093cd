"""``POST /v1/chat/completions``: validate, call the upstream, answer, hand the result to the Interceptor.

Streaming sends the upstream's chunks as they come. Response headers wait for the first chunk, so an
upstream that fails at once still gets a proper 502/504 envelope; a failure after that is a final
SSE ``error`` event. With ``explain``, the ``x-trace-id`` header is sent up front and the
``explanation`` object arrives as the last chunk before ``data: [DONE]``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from hif.errors import (
    BadRequestError,
    FeaturesetError,
    HifError,
    RequestError,
    UpstreamProtocolError,
    ValidationError,
)
from hif.explainer.featureset import Registry
from hif.gateway._asgi import (
    SSE_DONE,
    SSE_HEADERS,
    Receive,
    Responder,
    Scope,
    header,
    read_body,
    render_error,
    sse,
)
from hif.gateway.auth import CHAT, Principal
from hif.gateway.interceptor import Interceptor, new_trace_id
from hif.gateway.limits import RateLimiter
from hif.gateway.schemas import INTEGER_FIELDS, ChatRequest, parse_chat
from hif.gateway.viewlinks import ViewLinks
from hif.metrics import GatewayMetrics
from hif.upstream.base import Upstream, chunk_text, completion_text, prompt_text

log = logging.getLogger(__name__)


class UnsupportedMediaTypeError(RequestError):
    status_code = 415
    code = "unsupported_media_type"


def _require_json(scope: Scope) -> None:
    """The body must be JSON: ``application/json`` (any parameters) or no Content-Type at all."""
    content_type = header(scope, b"content-type")
    if content_type is not None and content_type.partition(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaTypeError(
            f"Content-Type must be application/json, got {content_type[:100]!r}", param="content-type"
        )


class ChatHandler:
    def __init__(
        self,
        *,
        upstream: Upstream,
        interceptor: Interceptor,
        registry: Registry,
        metrics: GatewayMetrics,
        max_body_bytes: int,
        limiter: RateLimiter | None = None,
        links: ViewLinks | None = None,
    ) -> None:
        self.upstream, self.interceptor, self.registry = upstream, interceptor, registry
        self.links = links or ViewLinks(None, ttl_s=900.0)
        self.metrics, self.max_body_bytes, self.limiter = metrics, max_body_bytes, limiter
        self._upstream_children: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, out: Responder, who: Principal) -> None:
        who.require(CHAT)
        _require_json(scope)
        if self.limiter is not None:  # before the body and the upstream: a refused stream never starts
            await self.limiter.check_chat(who)
        raw = await read_body(scope, receive, self.max_body_bytes)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"malformed JSON body: {exc}", code="invalid_json") from exc
        request = parse_chat(data)
        explain = self._explain(request)
        if explain is not None and self.limiter is not None:
            limited = await self.limiter.check_explain(who)
            if limited is not None:
                explain["rate_limited"] = limited
        body = {k: v for k, v in data.items() if k != "explain"}
        for name in INTEGER_FIELDS & body.keys():
            body[name] = getattr(request, name)  # 1.0 is the integer 1 (JSON Schema); forward it as one
        if request.stream:
            await self._stream(body, out, who, explain)
        else:
            await self._complete(body, out, who, explain)

    def _explain(self, request: ChatRequest) -> dict[str, str] | None:
        """The resolved explain request (with its trace id), or None when not asked for."""
        if request.explain is None:
            return None
        try:
            info = self.registry.resolve(request.explain.features)
        except FeaturesetError as exc:
            raise ValidationError(
                exc.message, code="featureset_unavailable", param="explain.features"
            ) from exc
        return {
            "trace_id": new_trace_id(),
            "granularity": request.explain.granularity,
            "requested": request.explain.features or info.name,
            "resolved": info.name,
        }

    async def _complete(
        self, body: dict[str, Any], out: Responder, who: Principal, explain: dict[str, str] | None
    ) -> None:
        started = time.perf_counter()
        outcome = "error"
        try:
            answer = await self.upstream.complete(body)
            outcome = "ok"
        finally:
            self._observe_upstream(started, outcome, out)
        headers = None
        if explain is not None:
            answer["explanation"] = self._admit(explain, who, body, completion_text(answer))
            headers = [(b"x-trace-id", explain["trace_id"].encode())]
        await out.json(200, answer, headers)

    async def _stream(
        self, body: dict[str, Any], out: Responder, who: Principal, explain: dict[str, str] | None
    ) -> None:
        started = time.perf_counter()
        chunks = self.upstream.stream(body)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            raise UpstreamProtocolError("upstream stream was empty", upstream=self.upstream.name) from None
        except BaseException:
            self._observe_upstream(started, "error", out)
            raise
        headers = list(SSE_HEADERS)
        if explain is not None:
            headers.append((b"x-trace-id", explain["trace_id"].encode()))
        await out.start(200, headers)
        await out.body(sse(first), more=True)
        texts = [chunk_text(first)]
        try:
            async for chunk in chunks:
                texts.append(chunk_text(chunk))
                await out.body(sse(chunk), more=True)
        except Exception as exc:
            # Headers are gone: the failure can only be a final SSE error event.
            self._observe_upstream(started, "error", out)
            if isinstance(exc, HifError):
                log.warning("upstream failed mid-stream: %s", exc)
            else:
                log.exception("stream failed")
            await out.body(sse(_stream_error(exc)), more=False)
            return
        self._observe_upstream(started, "ok", out)
        if explain is not None:
            explanation = self._admit(explain, who, body, "".join(texts))
            tail = {k: first.get(k) for k in ("id", "object", "created", "model")}
            await out.body(sse({**tail, "choices": [], "explanation": explanation}), more=True)
        await out.body(SSE_DONE)

    def _observe_upstream(self, started: float, outcome: str, out: Responder) -> None:
        out.upstream_s = time.perf_counter() - started
        child = self._upstream_children.get(outcome)
        if child is None:
            child = self._upstream_children[outcome] = self.metrics.upstream_duration.labels(
                self.upstream.name, outcome
            )
        child.observe(out.upstream_s)

    def _admit(
        self, explain: dict[str, str], who: Principal, body: dict[str, Any], completion: str
    ) -> dict[str, Any]:
        record = self.interceptor.admit(
            trace_id=explain["trace_id"],
            tenant=who.tenant,
            granularity=explain["granularity"],
            features_requested=explain["requested"],
            features_resolved=explain["resolved"],
            prompt=prompt_text(body.get("messages")),
            completion=completion,
            rate_limited=explain.get("rate_limited"),
        )
        trace_id = record.trace_id
        result: dict[str, Any] = {
            "trace_id": trace_id,
            "state": str(record.state),
            "granularity": record.granularity,
            "features": record.features_resolved,
            "status_url": f"/v1/traces/{trace_id}/status",
            "graph_url": f"/v1/traces/{trace_id}/graph",
            "view_url": self.links.url(trace_id, record.tenant),
        }
        if record.reason:
            result["reason"] = record.reason
        return result


def _stream_error(exc: Exception) -> dict[str, Any]:
    _status, envelope, _headers = render_error(exc)
    return envelope
