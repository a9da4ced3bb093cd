"""Pre-flight: is the target up, and does it serve the featureset the run will ask for?"""

from __future__ import annotations

from typing import Any

from hif.errors import LoadClientError, PreflightError
from hif.harness.client import HttpClient


def unavailable_featuresets(body: Any) -> dict[str, str]:
    """Featuresets listed with ``available: false``, with their reason."""
    items = body.get("data", []) if isinstance(body, dict) else []
    return {
        str(i.get("name")): str(i.get("reason") or "unavailable")
        for i in items
        if isinstance(i, dict) and i.get("available") is False
    }


def served_featuresets(body: Any) -> list[str]:
    """Names of the available featuresets in a ``GET /v1/featuresets`` answer (lenient about shape)."""
    items: Any = body
    if isinstance(body, dict):
        items = body.get("data", body.get("featuresets", []))
    names: list[str] = []
    if isinstance(items, dict):  # {"name": {...}} form
        items = [{"name": k, **(v if isinstance(v, dict) else {})} for k, v in items.items()]
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and item.get("available", True) is not False:
            name = item.get("name") or item.get("id")
            if name:
                names.append(str(name))
    return names


async def preflight(client: HttpClient, *, base_url: str, features: str | None) -> dict[str, Any]:
    """Raise :class:`PreflightError` (one line naming what is wrong) unless the target is usable."""
    health = None
    try:
        for path in ("/healthz", "/readyz"):
            resp = await client.request("GET", path)
            health = (path, resp.status)
            if resp.status != 404:
                break
    except LoadClientError as exc:
        raise PreflightError(f"cannot reach {base_url}: {exc}") from exc
    if health is None or not 200 <= health[1] < 300:
        raise PreflightError(
            f"{base_url}{health[0] if health else ''} answered {health[1] if health else '-'}; "
            "the target is not healthy"
        )
    info: dict[str, Any] = {"health": health[0]}
    if features is None:
        return info
    try:
        resp = await client.request("GET", "/v1/featuresets")
    except LoadClientError as exc:
        raise PreflightError(f"cannot list featuresets at {base_url}: {exc}") from exc
    if resp.status != 200:
        raise PreflightError(f"GET {base_url}/v1/featuresets answered {resp.status}; cannot check --features")
    try:
        body = resp.json()
    except LoadClientError as exc:
        raise PreflightError(f"GET {base_url}/v1/featuresets: {exc}") from exc
    served = served_featuresets(body)
    if features not in served:
        down = unavailable_featuresets(body)
        why = f" ({features} is listed but unavailable: {down[features]})" if features in down else ""
        raise PreflightError(
            f"featureset {features!r} is not served by {base_url}{why}; served: {', '.join(served) or 'none'}"
        )
    info["featuresets"] = served
    return info
