"""The viewer in headless Chromium against ``hif serve``: signed links, a strict CSP, escaping,
nodes and links drawn, feature pages one click away, expired and foreign links refused."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from hif.gateway.viewlinks import ViewLinks
from tests.integration._browser import Browser
from tests.integration.conftest import RELAXED_SLA, EmbeddedSystem, start_system

SECRET = "viewer-test-secret"
HOSTILE = "Is <script>alert('x')</script> & <img src=x onerror=alert(1)> safe? Say \"no\"."


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSystem]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIF_VIEW_SECRET", SECRET)  # so the test can sign links the gateway accepts
        with start_system(tmp_path_factory.mktemp("viewer"), "--workers", "1", *RELAXED_SLA) as running:
            yield running


@pytest.fixture(scope="module")
def explained(system: EmbeddedSystem) -> dict[str, dict[str, Any]]:
    """One complete explanation per granularity (the hostile prompt in the sentence one)."""
    out = {}
    for granularity, text in (("sentence", HOSTILE), ("token", "Why is the sky blue?")):
        explanation = system.chat(text, granularity=granularity)["explanation"]
        assert system.wait_terminal(explanation["trace_id"])["state"] == "complete"
        out[granularity] = explanation
    return out


def _token(view_url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(view_url).query)["token"][0]


@pytest.mark.parametrize("granularity", ["sentence", "token"])
def test_the_viewer_draws_the_graph_without_errors(
    system: EmbeddedSystem, browser: Browser, explained: dict[str, dict[str, Any]], granularity: str
) -> None:
    with browser.page() as page:
        page.goto(system.base_url + explained[granularity]["view_url"])
        assert page.status == 200 and page.errors == []
        assert page.evaluate("document.querySelectorAll('svg#graph circle.node').length") > 3
        assert page.evaluate("document.querySelectorAll('svg#graph line.link').length") > 0
        assert page.evaluate("document.querySelectorAll('circle.node.emb').length") > 0
        assert page.evaluate("document.querySelectorAll('circle.node.logit').length") > 0
        assert page.evaluate("document.scripts.length") == 0


def test_user_text_is_escaped_and_the_csp_is_strict(
    system: EmbeddedSystem, browser: Browser, explained: dict[str, dict[str, Any]]
) -> None:
    with browser.page() as page:
        page.goto(system.base_url + explained["sentence"]["view_url"])
        assert page.errors == []
        assert HOSTILE in page.evaluate("document.getElementById('prompt').textContent")
        assert page.evaluate("document.querySelectorAll('img, script, iframe').length") == 0
        # the CSP refuses what an injection would need: a script or an inline style added at run time
        page.evaluate(
            "(() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
            " document.body.appendChild(s); })()"
        )
        assert page.evaluate("window.ran === undefined")
        assert any("Content Security Policy" in e for e in page.errors)


def test_clicking_a_feature_opens_its_page(
    system: EmbeddedSystem, browser: Browser, explained: dict[str, dict[str, Any]]
) -> None:
    with browser.page() as page:
        page.goto(system.base_url + explained["token"]["view_url"])
        page.click("a.feature circle")
        assert page.status == 200 and page.errors == []
        assert "/features/" in page.evaluate("location.pathname")
        assert page.evaluate("document.getElementById('label').textContent").startswith("label: ")
        assert page.evaluate("document.querySelectorAll('#contexts tr').length") >= 1


def test_expired_and_foreign_links_are_refused(
    system: EmbeddedSystem, browser: Browser, explained: dict[str, dict[str, Any]]
) -> None:
    sentence, token = explained["sentence"], explained["token"]
    expired = ViewLinks(SECRET.encode(), ttl_s=-1).url(sentence["trace_id"], "default")
    foreign_tenant = ViewLinks(SECRET.encode(), ttl_s=600).url(sentence["trace_id"], "someone-else")
    other_trace = f"/v1/traces/{sentence['trace_id']}/view?token={_token(token['view_url'])}"
    with browser.page() as page:
        page.goto(system.base_url + expired)
        assert page.status == 403
        assert "view_link_expired" in page.evaluate("document.body.textContent")
        for url in (foreign_tenant, other_trace, f"/v1/traces/{sentence['trace_id']}/view"):
            page.goto(system.base_url + url)
            assert page.status == 404, url
