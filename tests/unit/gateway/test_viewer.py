"""The viewer's pieces without a browser: link signing, feature cards, escaping and the CSP."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from hif.errors import NotFoundError
from hif.explainer.features import FeatureCards
from hif.explainer.featureset import FeaturesetInfo, Registry
from hif.gateway import viewer
from hif.gateway.viewlinks import ViewLinkExpiredError, ViewLinks

EVIL = "<script>alert(1)</script>\"'&"


def test_links_open_one_trace_for_one_tenant_until_they_expire() -> None:
    now = [1000.0]
    links = ViewLinks(b"s" * 32, ttl_s=60, clock=lambda: now[0])
    token = links.token("t1", "acme")
    links.check(token, "t1", "acme")
    for trace, tenant in (("t2", "acme"), ("t1", "other")):
        with pytest.raises(NotFoundError):
            links.check(token, trace, tenant)
    for bad in (None, "", "x.y", token + "A", "9999999999." + token.split(".")[1]):
        with pytest.raises(NotFoundError):
            links.check(bad, "t1", "acme")
    now[0] += 61
    with pytest.raises(ViewLinkExpiredError):
        links.check(token, "t1", "acme")
    assert ViewLinks(b"other" * 8, ttl_s=60).token("t1", "acme") != token  # the secret matters


def _registry(tmp_path: Path) -> Registry:
    folder = tmp_path / "sae"
    folder.mkdir()
    labels = {
        "3": {
            "label": EVIL,
            "score": 0.71,
            "max_activation": 2.5,
            "contexts": ["the [[cat]] sat", "no mark here"],
            "histogram": {"counts": [3, 1, 0, 2], "edges": [0.0, 0.5, 1.0, 1.5, 2.0]},
        }
    }
    (folder / "labels.json").write_text(json.dumps(labels))
    info = FeaturesetInfo(
        name="fs",
        description="",
        model="m",
        model_kind="encoder",
        layers=(4,),
        latents=16,
        k=4,
        sae_path=folder,
    )
    return Registry(featuresets={"fs": info}, default="fs", path=tmp_path / "r.toml")


def test_feature_cards_read_labels_contexts_and_histograms(tmp_path: Path) -> None:
    cards = FeatureCards(_registry(tmp_path))
    card = cards.card("fs", 4, 3)
    assert card["label"] == EVIL and card["label_score"] == 0.71
    assert card["contexts"][0] == {"before": "the ", "token": "cat", "after": " sat"}
    assert card["contexts"][1]["token"] == ""
    unlabelled = cards.card("fs", 4, 5)
    assert unlabelled["label"] is None and unlabelled["contexts"] == [] and unlabelled["histogram"] is None
    for args in (("nope", 4, 3), ("fs", 2, 3), ("fs", 4, 16)):
        with pytest.raises(NotFoundError):
            cards.card(*args)


def test_pages_escape_every_string_and_match_their_csp(tmp_path: Path) -> None:
    page = viewer.feature_page(FeatureCards(_registry(tmp_path)).card("fs", 4, 3)).decode()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<mark>cat</mark>" in page and page.count("class='bar'") == 4
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in viewer.CSP and "script-src 'none'" in viewer.CSP
    graph = {
        "metadata": {
            "schema_version": 2,
            "prompt": EVIL + "answer",
            "completion_char": len(EVIL),
            "prompt_tokens": [EVIL, "b"],
            "node_threshold": 0.8,
        },
        "featureset": "fs",
        "nodes": [
            {"node_id": "E_1_0", "feature_type": "embedding", "layer": "E", "ctx_idx": 0, "clerp": EVIL},
            {
                "node_id": "4_3_1",
                "feature_type": "sae",
                "layer": "4",
                "ctx_idx": 1,
                "clerp": EVIL,
                "hif_latent": 3,
                "influence": 0.5,
            },
            {
                "node_id": "4_9_1",
                "feature_type": "sae",
                "layer": "4",
                "ctx_idx": 1,
                "clerp": "x",
                "influence": 0.9,
            },
            {"node_id": "7_99_1", "feature_type": "logit", "layer": "7", "ctx_idx": 1, "clerp": EVIL},
        ],
        "links": [{"source": "4_3_1", "target": "7_99_1", "weight": -0.5}],
    }
    html = viewer.graph_page(graph, "t1", "tok&en").decode()
    assert "<script>" not in html and html.count("circle class='node") == 3  # 4_9_1 is past the threshold
    assert "/v1/featuresets/fs/features/4/3?trace=t1&amp;token=tok%26en" in html
    assert "class='link neg'" in html
    old = viewer.graph_page({"metadata": {"schema_version": 1}, "nodes": []}, "t1", "x").decode()
    assert "schema version 1" in old
