"""The contract between the gateway and whatever LLM answers behind it.

An upstream takes an OpenAI Chat Completions request body (a dict, the gateway's own fields such as
``explain`` already removed) and returns the OpenAI response dict, or yields the streamed
``chat.completion.chunk`` dicts. Failures are :class:`~hif.errors.UpstreamError` subclasses only:
each implementation translates its own exceptions at one boundary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Upstream(Protocol):
    name: str  # metric label: "sim" or the upstream's host

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed chat completion (``chat.completion`` object)."""
        ...

    def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects of a streamed completion, in order."""
        ...

    async def models(self) -> dict[str, Any]:
        """The models it answers for, as OpenAI's ``GET /v1/models`` list (``object: "list"``)."""
        ...

    async def aclose(self) -> None: ...


def completion_text(response: dict[str, Any]) -> str:
    """The assistant text of a non-streamed response (first choice), '' when absent."""
    try:
        content = response["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    return content if isinstance(content, str) else ""


def chunk_text(chunk: dict[str, Any]) -> str:
    """The text delta a streamed chunk carries (first choice), '' when none."""
    try:
        content = chunk["choices"][0]["delta"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    return content if isinstance(content, str) else ""


def prompt_text(messages: Any) -> str:
    """The conversation as plain text, the explainer's prompt: one ``role: content`` line each."""
    lines: list[str] = []
    for message in messages or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            texts = (p.get("text") for p in content if isinstance(p, dict))
            content = " ".join(t for t in texts if isinstance(t, str))
        if isinstance(content, str) and content:
            lines.append(f"{message.get('role', 'user')}: {content}")
    return "\n".join(lines)
