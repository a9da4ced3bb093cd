"""circuit-tracer's own frontend, served from its unpacked assets with graphs of ours, for Chromium.

The assets come from the copy scripts/circuit-tracer-frontend.sh unpacks into .cache/circuit-tracer
(with the libraries its index.html loads from CDNs, fetched from npm into ``vendor/``). Nothing of
the frontend's JavaScript is changed: only index.html's CDN ``<script src>`` URLs are pointed at the
local copies, since tests reach no network.

    with serve_site(tmp_path, {"slug": graph}) as base_url:
        page.goto(f"{base_url}/index.html?slug=slug")
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.graph_formats import CIRCUIT_TRACER, FRONTEND_ASSETS, graph_models

VENDOR = CIRCUIT_TRACER / "vendor"
# index.html's CDN script -> the local file standing in for it: d3 v7, then d3-jetpack's helpers
# (appendMany, nestBy, conventions, ...) patched onto that d3 (see _jetpack); the hot-reload client and
# the npy loader are not used by graph pages
LIB = "https://transformer-circuits.pub/2025/attribution-graphs/static_js/lib"
CDN = {
    f"{LIB}/hotserver-client-ws.js": "empty.js",
    f"{LIB}/d3.js": "d3.js",
    f"{LIB}/jetpack_2024-07-20.js": "jetpack.js",
    f"{LIB}/npy_v0.js": "empty.js",
    "https://unpkg.com/dagre@0.8.5/dist/dagre.min.js": "dagre.min.js",
    "https://unpkg.com/pako@2.1.0/dist/pako.min.js": "pako.min.js",
}
# d3-jetpack's UMD build, run against the page's d3: its browser branch would replace window.d3 with an
# empty object, so it runs through its CommonJS branch with ``require`` answering d3. Then the one
# difference from the jetpack build circuit-tracer loads: its conventions() object also draws its
# axes into a given layer, c.drawAxis(sel).
JETPACK_HEAD = """(function () {
  var module = {exports: {}}, exports = module.exports;
  var require = function () { return window.d3; };
"""
JETPACK_TAIL = """
  Object.keys(module.exports).forEach(function (k) {
    if (!(k in window.d3)) window.d3[k] = module.exports[k];
  });
  var conventions = window.d3.conventions;
  window.d3.conventions = function (opts) {
    var c = conventions(opts);
    c.drawAxis = function (sel) {
      sel = sel || c.svg;
      sel.append('g').attr('class', 'x axis')
        .attr('transform', 'translate(0,' + c.height + ')').call(c.xAxis);
      sel.append('g').attr('class', 'y axis').call(c.yAxis);
    };
    return c;
  };
})();
"""


def build_site(root: Path, graphs: dict[str, dict[str, Any]]) -> Path:
    graph_models()  # skips (or fails under CI) when the frontend is not unpacked
    site = root / "site"
    shutil.copytree(FRONTEND_ASSETS, site)
    shutil.copytree(VENDOR, site / "vendor")
    (site / "vendor" / "empty.js").write_text("")
    (site / "favicon.ico").write_bytes(b"")  # the browser asks for one; a 404 would log an error
    collection = (VENDOR / "d3-collection.js").read_text()  # d3.nest, which jetpack's nestBy needs
    jetpack = JETPACK_HEAD + (VENDOR / "d3-jetpack.cjs").read_text() + JETPACK_TAIL
    (site / "vendor" / "jetpack.js").write_text(collection + jetpack)
    index = (site / "index.html").read_text()
    for url, local in CDN.items():
        assert url in index, f"circuit-tracer's index.html no longer loads {url}"
        index = index.replace(url, f"./vendor/{local}")
    (site / "index.html").write_text(index)
    (site / "data").mkdir(exist_ok=True)
    (site / "graph_data").mkdir(exist_ok=True)
    entries = []
    for slug, graph in graphs.items():
        (site / "graph_data" / f"{slug}.json").write_text(json.dumps(graph))
        meta = graph["metadata"]
        entries.append(
            {
                "slug": slug,
                "scan": meta["scan"],
                "prompt": meta["prompt"],
                "node_threshold": meta["node_threshold"],
            }
        )
    (site / "data" / "graph-metadata.json").write_text(json.dumps({"graphs": entries}))
    return site


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_site(root: Path, graphs: dict[str, dict[str, Any]]) -> Iterator[str]:
    site = build_site(root, graphs)
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
