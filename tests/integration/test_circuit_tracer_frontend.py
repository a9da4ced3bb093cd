"""Each graph kind renders in circuit-tracer's own frontend (its assets, unchanged) in Chromium.

Schema validation is necessary but weak (circuit-tracer's Model ignores extra fields and types links
as plain dicts), so the graphs also go through the frontend's JavaScript: it formats them, prunes
them on ``influence`` and ``node_threshold``, lays the nodes out and draws the target's links.
"""

from __future__ import annotations

import dataclasses
import urllib.request
from typing import Any

import pytest

from hif.explainer.featureset import load_registry
from hif.explainer.plan import CAP_NODES, REDUCE_TOPK
from hif.store.base import Job
from tests.graph_formats import FRONTEND_ASSETS, check_community_format
from tests.integration._browser import Browser
from tests.integration._circuit_tracer_site import serve_site

pytestmark = pytest.mark.explainer

PROMPT = "How do I open a file in Python? <b>quickly</b>"
COMPLETION = 'Use the built-in open() function. It returns a file object. Say "done" when you are.'
# slug -> (featureset, granularity, attribution, ladder rungs)
KINDS = {
    "sentence": ("sae-minilm-l6-res4-4k", "sentence", "gradient", ()),
    "token": ("sae-minilm-l6-res4-4k", "token", "gradient", ()),
    "two-layer": ("sae-minilm-l6-res2-4-4k", "token", "gradient", ()),
    "degraded": ("sae-minilm-l6-res4-4k", "token", "gradient", (REDUCE_TOPK, CAP_NODES)),
    "heuristic": ("sae-minilm-l6-res4-4k", "sentence", "heuristic", ()),
    "inputs": ("sae-minilm-l6-res4-4k", "sentence", "gradient", ()),  # token -> feature links into every node
}
CANVAS_INK = (
    "[...document.querySelectorAll('.link-graph canvas')].map(c => { const d = c.getContext('2d')"
    ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
    " for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })"
)


def _graph(pipelines: dict[str, Any], slug: str) -> dict[str, Any]:
    name, granularity, method, rungs = KINDS[slug]
    if name not in pipelines:
        from hif.explainer.core.pipeline import load_pipeline

        pipelines[name] = load_pipeline(load_registry().resolve(name), device="cpu", threads=1)
    pipeline = pipelines[name]
    plan = pipeline.default_plan(granularity)
    if REDUCE_TOPK in rungs:
        plan = plan.degrade(REDUCE_TOPK, top_k=plan.top_k // 2)
    if CAP_NODES in rungs:
        plan = plan.degrade(CAP_NODES, max_nodes=plan.max_nodes // 2, max_edges=plan.max_edges // 2)
    if slug == "inputs":
        plan = dataclasses.replace(plan, embedding_nodes=plan.max_nodes)
    job = Job(
        trace_id=slug,
        tenant="acme",
        granularity=granularity,
        featureset=name,
        prompt=PROMPT,
        completion=COMPLETION,
        created_at=0.0,
        expires_at=float("inf"),
        budget_s=5.0,
    )
    [extraction] = pipeline.extract([job], [plan])
    decoding = pipeline.decode(extraction, plan)
    attribution = (
        pipeline.attribute(decoding, plan) if method == "gradient" else pipeline.heuristic(decoding, plan)
    )
    graph = pipeline.graph(job, decoding, attribution, plan)
    check_community_format(graph)
    return graph


@pytest.fixture(scope="module")
def graphs() -> dict[str, dict[str, Any]]:
    pipelines: dict[str, Any] = {}
    return {slug: _graph(pipelines, slug) for slug in KINDS}


@pytest.fixture(scope="module")
def site(graphs: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with serve_site(tmp_path_factory.mktemp("circuit-tracer"), graphs) as base_url:
        yield base_url


@pytest.mark.parametrize("slug", list(KINDS))
def test_graph_renders_in_circuit_tracers_frontend(
    slug: str, graphs: dict[str, dict[str, Any]], site: str, browser: Browser
) -> None:
    graph = graphs[slug]
    target = next(n["node_id"] for n in graph["nodes"] if n["feature_type"] == "logit")
    if slug == "inputs":  # click the most influential feature fed by input tokens: its panel lists them
        fed = {link["target"] for link in graph["links"] if link["source"].startswith("E_")}
        target = min((n for n in graph["nodes"] if n["node_id"] in fed), key=lambda n: n["influence"])[
            "node_id"
        ]
        assert graph["metadata"]["scores"]["replacement"] is not None
    with browser.page() as page:
        page.goto(f"{site}/index.html?slug={slug}&clickedId={target}")
        count = _wait_for_nodes(page)
        assert page.errors == [], page.errors
        kept = [n for n in graph["nodes"] if n["feature_type"] in ("embedding", "logit")]
        assert count >= len(kept)  # inputs and targets always stay; features past the threshold may go
        assert sum(page.evaluate(CANVAS_INK)) > 0  # the clicked target's links are drawn
        # its node-connections panel lists the clicked target's inputs, read from our links
        inputs = page.evaluate("document.querySelectorAll('.node-connections .feature-row').length")
        assert inputs > 0


def _wait_for_nodes(page: Any) -> int:
    """The frontend draws after its fetches resolve: poll its DOM, in the page, against a deadline."""
    result = page.call(
        "Runtime.evaluate",
        expression=(
            "new Promise(done => { const t0 = Date.now(); (function poll() {"
            " const n = document.querySelectorAll('.link-graph circle').length;"
            " if (n || Date.now() - t0 > 10000) done(n); else setTimeout(poll, 50); })(); })"
        ),
        awaitPromise=True,
        returnByValue=True,
    )
    return int(result["result"]["value"])


def test_the_site_serves_circuit_tracers_own_javascript(site: str) -> None:
    """Only index.html's CDN URLs are rewritten: every script of the frontend is served byte for byte."""
    for path in sorted((FRONTEND_ASSETS / "attribution_graph").glob("*.js")):
        with urllib.request.urlopen(f"{site}/attribution_graph/{path.name}", timeout=10) as resp:
            assert resp.read() == path.read_bytes(), path.name
