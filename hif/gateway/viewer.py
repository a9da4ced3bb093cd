"""The graph viewer and feature pages: HTML rendered on the server, no script at all.

Why our own page rather than circuit-tracer's frontend: that frontend loads d3, dagre and pako from
public CDNs at run time (a deployment here may have no internet, and a strict Content-Security-Policy
forbids it), and it is not part of HIF's runtime install. The graphs themselves are in its format, so
its frontend (or Neuronpedia) opens the JSON from ``/v1/traces/{id}/graph`` unchanged.

The page is an SVG: one column per token position, one row per layer (input tokens at the bottom,
targets on top), links coloured by sign and sized by |weight|, each node's clerp, activation and
influence in its tooltip. Nodes past the graph's ``node_threshold`` (cumulative influence, as the
viewers prune) are left out. Each feature node links to its feature page. Every string that came from
a user or a model (prompt, completion, tokens, labels) goes through :func:`html.escape`; the only
style is the constant sheet below, allowed by its hash in the CSP, so nothing injected can run.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any
from urllib.parse import quote

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px;margin:0 0 8px}
.meta{color:#555;margin:4px 0}
.text{white-space:pre-wrap;background:#f6f6f6;padding:6px;border-radius:4px}
svg{border:1px solid #ddd;background:#fff}
.link{fill:none;stroke-opacity:.55}
.link.pos{stroke:#2b7bb9}
.link.neg{stroke:#c0392b}
.node{stroke:#333;stroke-width:1}
.node.sae{fill:#f5d76e}
.node.err{fill:#bbb}
.node.emb{fill:#9fd39f}
.node.logit{fill:#c39bd3}
.node.heuristic{stroke-dasharray:2 2}
a:hover .node{stroke-width:3}
.tok{font-size:11px;fill:#333}
.lay{font-size:11px;fill:#777}
mark{background:#ffe58a}
table{border-collapse:collapse}
td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:left}
.bar{fill:#2b7bb9}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{STYLE_HASH}'; "
    "img-src 'none'; script-src 'none'; connect-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
COL_W, ROW_H, PAD, NODE_R = 56, 90, 40, 6
KIND_CLASS = {"sae": "sae", "sae reconstruction error": "err", "embedding": "emb", "logit": "logit"}

e = html.escape  # every interpolated string goes through this


def _page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>"
    ).encode()


def feature_url(featureset: str, layer: str | int, latent: int, trace_id: str, token: str) -> str:
    return (
        f"/v1/featuresets/{quote(featureset, safe='')}/features/{layer}/{latent}"
        f"?trace={quote(trace_id, safe='')}&token={quote(token, safe='')}"
    )


def _shown(graph: dict[str, Any]) -> list[dict[str, Any]]:
    threshold = float(graph["metadata"].get("node_threshold") or 1.0)
    return [
        n
        for n in graph["nodes"]
        if n["feature_type"] in ("embedding", "logit") or (n.get("influence") or 0.0) <= threshold
    ]


def _rows(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """Row per layer, bottom to top: E, the hook layers ascending, the target layer."""
    layers = sorted({n["layer"] for n in nodes if n["layer"] != "E"}, key=int)
    order = ["E", *layers]
    return {layer: len(order) - 1 - i for i, layer in enumerate(order)}


def _positions(nodes: list[dict[str, Any]], rows: dict[str, int]) -> dict[str, tuple[float, float]]:
    """Node centres: its token's column, its layer's row; nodes sharing a cell fan out in a grid."""
    cells: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for n in nodes:
        cells.setdefault((n["ctx_idx"], n["layer"]), []).append(n)
    out: dict[str, tuple[float, float]] = {}
    for (ctx, layer), members in cells.items():
        per_row = 4
        for i, n in enumerate(members):
            dx = (i % per_row - (min(len(members), per_row) - 1) / 2) * (NODE_R * 2 + 2)
            dy = (i // per_row) * (NODE_R * 2 + 2)
            out[n["node_id"]] = (PAD + ctx * COL_W + COL_W / 2 + dx, PAD + rows[layer] * ROW_H + dy)
    return out


def _svg(graph: dict[str, Any], trace_id: str, token: str) -> tuple[str, int, int]:
    nodes = _shown(graph)
    rows = _rows(nodes)
    where = _positions(nodes, rows)
    links = [link for link in graph["links"] if link["source"] in where and link["target"] in where]
    biggest = max((abs(link["weight"]) for link in links), default=1.0) or 1.0
    tokens = graph["metadata"]["prompt_tokens"]
    width, height = PAD * 2 + COL_W * max(1, len(tokens)), PAD * 2 + ROW_H * len(rows) + 30
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' id='graph'>"]
    for link in links:
        (x1, y1), (x2, y2) = where[link["source"]], where[link["target"]]
        sign = "pos" if link["weight"] >= 0 else "neg"
        stroke = 0.5 + 3.5 * abs(link["weight"]) / biggest
        parts.append(
            f"<line class='link {sign}' x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' "
            f"stroke-width='{stroke:.2f}'><title>{e(link['source'])} → {e(link['target'])}: "
            f"{link['weight']:.4g}</title></line>"
        )
    featureset = str(graph.get("featureset") or graph["metadata"].get("scan", ""))
    for n in nodes:
        x, y = where[n["node_id"]]
        kind = KIND_CLASS.get(n["feature_type"], "sae")
        extra = " heuristic" if n.get("hif_method") == "heuristic" else ""
        tip = f"{n['clerp']}\nlayer {n['layer']}, position {n['ctx_idx']}"
        if n.get("activation") is not None:
            tip += f"\nactivation {n['activation']:.4g}"
        if n.get("influence") is not None:
            tip += f"\ncumulative influence {n['influence']:.3f}"
        circle = (
            f"<circle class='node {kind}{extra}' data-node='{e(n['node_id'])}' cx='{x:.1f}' cy='{y:.1f}' "
            f"r='{NODE_R}'><title>{e(tip)}</title></circle>"
        )
        if n["feature_type"] == "sae" and "hif_latent" in n:
            href = feature_url(featureset, n["layer"], int(n["hif_latent"]), trace_id, token)
            circle = f"<a href='{e(href)}' class='feature'>{circle}</a>"
        parts.append(circle)
    for layer, row in rows.items():
        name = "tokens" if layer == "E" else ("targets" if layer == max(rows, key=lambda k: rows[k]) else "")
        label = f"{name or 'layer ' + layer}"
        parts.append(f"<text class='lay' x='4' y='{PAD + row * ROW_H - 10}'>{e(label)}</text>")
    base = PAD + ROW_H * len(rows) + 10
    for pos, tok in enumerate(tokens):
        x = PAD + pos * COL_W + COL_W / 2
        parts.append(
            f"<text class='tok' x='{x:.1f}' y='{base}' text-anchor='middle'>{e(tok.strip() or '·')}</text>"
        )
    parts.append("</svg>")
    return "".join(parts), len(nodes), len(links)


def graph_page(graph: dict[str, Any], trace_id: str, token: str) -> bytes:
    """The viewer page for one graph (schema version 2; older graphs get a note instead)."""
    meta = graph.get("metadata") or {}
    version = int(meta.get("schema_version") or 1)
    if version < 2:
        body = (
            f"<h1>Trace {e(trace_id)}</h1><p class='meta'>This graph was stored in schema version "
            f"{version}, before the community format; the viewer draws version 2 graphs. Its JSON is "
            f"served unchanged at <code>/v1/traces/{e(trace_id)}/graph</code>.</p>"
        )
        return _page(f"Trace {trace_id}", body)
    svg, n_nodes, n_links = _svg(graph, trace_id, token)
    cut = int(meta.get("completion_char") or 0)
    prompt, completion = meta.get("prompt", "")[:cut], meta.get("prompt", "")[cut:]
    subject = meta.get("subject_model") or {}
    degraded = ", ".join(graph.get("degraded") or []) or "none"
    scores = meta.get("scores") or {}
    note = "" if scores.get("comparable_to_gradient", True) else " (heuristic scores: not comparable)"
    body = (
        f"<h1>Attribution graph · trace {e(trace_id)}</h1>"
        f"<p class='meta'>subject model {e(str(subject.get('name', '?')))} · featureset "
        f"{e(str(graph.get('featureset', '')))} · {e(str(graph.get('granularity', '')))} graph · "
        f"attribution {e(str(graph.get('attribution_method', '')))}{e(note)} · degraded: {e(degraded)}</p>"
        f"<p class='meta'>targets: {e(str((meta.get('target') or {}).get('definition', '')))}</p>"
        f"<p class='meta'>showing {n_nodes} nodes and {n_links} links (node threshold "
        f"{meta.get('node_threshold')})</p>"
        f"<div class='text' id='prompt'>{e(prompt)}</div><p></p>"
        f"<div class='text' id='completion'>{e(completion)}</div><p></p>{svg}"
    )
    return _page(f"Trace {trace_id}", body)


def pending_page(trace_id: str, state: str) -> bytes:
    """The page while the explanation runs: it reloads itself every two seconds."""
    page = _page(
        f"Trace {trace_id}",
        f"<h1>Trace {e(trace_id)}</h1><p class='meta' id='state'>The explanation is {e(state)}; "
        "this page reloads until its graph is ready.</p>",
    )
    return page.replace(
        b"<meta charset='utf-8'>", b"<meta charset='utf-8'><meta http-equiv='refresh' content='2'>"
    )


def _histogram(histogram: dict[str, Any] | None) -> str:
    if not histogram or not histogram.get("counts"):
        return "<p class='meta' id='histogram'>No activation histogram is stored for this latent.</p>"
    counts = [int(c) for c in histogram["counts"]]
    edges = [float(x) for x in histogram.get("edges") or []]
    top, width, height = max(counts) or 1, 8, 80
    bars = "".join(
        f"<rect class='bar' x='{i * width}' y='{height - height * c / top:.1f}' width='{width - 1}' "
        f"height='{height * c / top:.1f}'><title>{c}</title></rect>"
        for i, c in enumerate(counts)
    )
    span = f"{edges[0]:.3g} … {edges[-1]:.3g}" if len(edges) >= 2 else ""
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' id='histogram' width='{width * len(counts)}' "
        f"height='{height}'>{bars}</svg><p class='meta'>activation {e(span)}</p>"
    )


def feature_page(card: dict[str, Any]) -> bytes:
    """One latent: its label and label score, top activating contexts (token marked), histogram."""
    label = card["label"] or "unlabelled"
    score = card["label_score"]
    score_text = "not scored" if score is None else f"{float(score):.3f}"
    rows = "".join(
        f"<tr><td>{e(c['before'])}<mark>{e(c['token'])}</mark>{e(c['after'])}</td></tr>"
        for c in card["contexts"]
    )
    title = f"{card['featureset']} · layer {card['layer']} · latent {card['index']}"
    body = (
        f"<h1>{e(title)}</h1><p class='meta' id='label'>label: {e(label)} · label score: "
        f"{e(score_text)} · max activation: {e(str(card['max_activation']))}</p>"
        f"{_histogram(card['histogram'])}<h2>Top activating contexts</h2>"
        f"<table id='contexts'>{rows or '<tr><td>none stored</td></tr>'}</table>"
    )
    return _page(title, body)
