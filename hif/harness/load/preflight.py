"""Pre-flight: is the target up, and does it serve the featureset the run will ask for?

A featureset given by ``--features`` (or ``HIF_FEATURES``, or a config key) must be served, or the
run stops before any load. With none given the run asks for the runbook's ``sae-gpt4-2m``; where
that is not served (the embedded system serves a small MiniLM featureset), the run uses the
server's default instead and says so in one line, so the runbook's commands work as pasted.
"""

from __future__ import annotations

import sys
from typing import Any

from hif.errors import LoadClientError, PreflightError
from hif.harness.client import HttpClient
from hif.harness.load.settings import RUNBOOK_FEATURES, LoadSettings


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


def choose_featureset(body: Any, given: str | None, base_url: str) -> dict[str, Any]:
    """``{"requested", "given", "used", "note"}`` for a ``GET /v1/featuresets`` answer.

    ``given`` is None when nobody chose one; then the runbook's name is asked for and the server's
    default stands in when that is not served. A given name that is not served is an error.
    """
    served = served_featuresets(body)
    requested = given or RUNBOOK_FEATURES
    choice = {"requested": requested, "given": given is not None, "used": requested, "note": None}
    if requested in served:
        return choice
    down = unavailable_featuresets(body)
    why = f" ({requested} is listed but unavailable: {down[requested]})" if requested in down else ""
    default = body.get("default") if isinstance(body, dict) else None
    if given is None and isinstance(default, str) and default in served:
        choice["used"] = default
        choice["note"] = (
            f"featureset {requested} (the default) is not served here; using the server's default "
            f"{default}; pass --features to choose"
        )
        return choice
    flag = "--features" if given is not None else "--features NAME (none was given)"
    raise PreflightError(
        f"featureset {requested!r} is not served by {base_url}{why}; served: {', '.join(served) or 'none'}; "
        f"pass one of them with {flag}"
    )


async def preflight(
    client: HttpClient, *, base_url: str, features: str | None, check_features: bool = True
) -> dict[str, Any]:
    """Raise :class:`PreflightError` (one line naming what is wrong) unless the target is usable.

    With ``check_features`` the answer's ``featureset`` says which one the run will use
    (:func:`choose_featureset`); ``features`` None means none was given."""
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
    if not check_features:
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
    info["featuresets"] = served_featuresets(body)
    info["featureset"] = choose_featureset(body, features, base_url)
    return info


async def check_run(settings: LoadSettings) -> dict[str, Any] | None:
    """The pre-flight of one load run: the featureset choice (None when nothing is attached).

    A fallback from the runbook's featureset is said in one line on stderr, once per run."""
    probe = HttpClient(settings.base_url, timeout_s=settings.timeout_seconds)
    try:
        info = await preflight(
            probe,
            base_url=settings.base_url,
            features=settings.features,
            check_features=settings.attach_rate > 0,
        )
    finally:
        await probe.close()
    choice = info.get("featureset")
    if choice and choice["note"]:
        print(f"hif: {choice['note']}", file=sys.stderr, flush=True)
    return choice
