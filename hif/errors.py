"""One rooted error hierarchy for HIF.

Callers branch on *what to do*, so the tree is split that way::

    HifError
    ├── ConfigError                 bad setting at start-up; names the key
    │   └── PortInUseError          a listen port is taken; names the component and its flag
    ├── RequestError                client input rejected; carries HTTP status + OpenAI type/code
    │   ├── BadRequestError         400  malformed JSON, unknown parameter
    │   ├── AuthenticationError     401  missing or unknown bearer token
    │   ├── PermissionDeniedError   403  role lacks the right, tenant mismatch
    │   ├── NotFoundError           404  unknown route, unknown trace or another tenant's
    │   ├── GoneError               410  trace expired
    │   ├── PayloadTooLargeError    413  body over the limit
    │   ├── ValidationError         422  schema violation, names the field
    │   └── RateLimitError          429
    ├── UpstreamError               the LLM behind the gateway misbehaved (rendered 502/504)
    │   ├── UpstreamTimeoutError    504
    │   ├── UpstreamUnavailableError 502 connect refused, reset, 5xx, 429 from upstream
    │   └── UpstreamProtocolError   502 unparseable answer
    ├── StoreError                  job queue, trace state or blob store failed
    │   ├── StoreUnavailableError   backend unreachable (retry later)
    │   └── BlobWriteError          persistence write failed (retried, then trace failed)
    ├── ExplainerError              a job could not be explained
    │   ├── FeaturesetError         featureset unknown, unavailable or its files broken
    │   ├── AttributionError        gradient attribution failed (fallback may apply)
    │   └── JobExpiredError         the job's TTL passed before it finished
    ├── HarnessError                load/soak/report/chaos CLI problems (exit code 2)
    │   └── PreflightError          target unreachable or featureset not served
    └── LoadClientError             the load generator's HTTP client failed one request (recorded)
        ├── ClientTimeoutError      no full answer within the request timeout
        ├── ClientConnectError      connect refused/reset before a request was sent
        └── ClientProtocolError     unparseable answer or connection closed mid-answer

Third-party exceptions are translated at one boundary per backend with ``raise ... from exc``.
Every error carries optional context (request id, trace id, job id) for logs.
"""

from __future__ import annotations

from typing import Any


class HifError(Exception):
    """Root of every error HIF raises on purpose."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        ctx = " ".join(f"{k}={v}" for k, v in sorted(self.context.items()))
        return f"{self.message} ({ctx})"


class ConfigError(HifError):
    """A setting is missing or malformed; raised at start-up, naming the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}", key=key)
        self.key = key


class PortInUseError(ConfigError):
    """A port the component must listen on is taken (or refused): a permanent start-up problem."""

    def __init__(self, component: str, host: str, port: int, flag: str, reason: str) -> None:
        HifError.__init__(
            self,
            f"{component}: cannot listen on {host}:{port} ({reason}); choose another port with {flag}",
        )
        self.key, self.component, self.port, self.flag = flag, component, port, flag


# --- rejected requests -------------------------------------------------------------------------


class RequestError(HifError):
    """Client input rejected; rendered as an OpenAI error envelope."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        if code is not None:
            self.code = code
        self.param = param

    def envelope(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {"message", "type", "code", "param"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "code": self.code,
                "param": self.param,
            }
        }


class BadRequestError(RequestError):
    status_code = 400
    code = "bad_request"


class AuthenticationError(RequestError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(RequestError):
    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class NotFoundError(RequestError):
    status_code = 404
    error_type = "not_found_error"
    code = "not_found"


class GoneError(RequestError):
    status_code = 410
    error_type = "invalid_request_error"
    code = "expired"


class PayloadTooLargeError(RequestError):
    status_code = 413
    code = "payload_too_large"


class ValidationError(RequestError):
    status_code = 422
    code = "invalid_value"


class RateLimitError(RequestError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


# --- upstream ----------------------------------------------------------------------------------


class UpstreamError(HifError):
    """The OpenAI-compatible upstream failed; the gateway renders 502 or 504."""

    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"

    def envelope(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "code": self.code, "param": None}}


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamUnavailableError(UpstreamError):
    status_code = 502
    code = "upstream_unavailable"


class UpstreamProtocolError(UpstreamError):
    status_code = 502
    code = "upstream_protocol_error"


# --- stores ------------------------------------------------------------------------------------


class StoreError(HifError):
    """A job queue, trace-state or blob backend failed."""


class StoreUnavailableError(StoreError):
    """The backend cannot be reached right now; the caller may retry later."""


class BlobWriteError(StoreError):
    """Writing a graph to the blob store failed."""


# --- explainer ---------------------------------------------------------------------------------


class ExplainerError(HifError):
    """A job could not be explained."""


class FeaturesetError(ExplainerError):
    """A featureset is unknown, not served here, or its files are broken."""


class AttributionError(ExplainerError):
    """Gradient attribution failed; the heuristic fallback may take over."""


class JobExpiredError(ExplainerError):
    """The job's deadline passed before it finished."""


# --- harness -----------------------------------------------------------------------------------


class HarnessError(HifError):
    """A load, soak, chaos or report command cannot proceed (CLI exit code 2)."""

    exit_code = 2


class PreflightError(HarnessError):
    """The target is unreachable or does not serve what the run needs."""


class LoadClientError(HifError):
    """One request of the load generator failed; recorded under ``error_class``, never fatal."""

    error_class = "protocol"


class ClientTimeoutError(LoadClientError):
    error_class = "timeout"


class ClientConnectError(LoadClientError):
    error_class = "connect"


class ClientProtocolError(LoadClientError):
    error_class = "protocol"
