"""Headless Chromium driven over the DevTools protocol (a websocket), for the viewer tests.

    with Browser.launch(chromium_path, tmp_dir) as browser:
        page = browser.open("http://127.0.0.1:8080/v1/traces/abc/view?token=...")
        page.status, page.errors                 # HTTP status of the document, console errors
        page.evaluate("document.title")
        page.click("a.feature")                  # follows the link, waits for the next load

Chromium reports console messages, uncaught exceptions and browser-side errors (a CSP violation, a
failed resource) as events; :class:`Page` collects the error-level ones in ``errors``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

LAUNCH_TIMEOUT_S = 20.0
LOAD_TIMEOUT_S = 20.0


class Page:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self._ids = ws, itertools.count(1)
        self.errors: list[str] = []
        self.status: int | None = None
        self._events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def _note(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params") or {}
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(
                f"{details.get('text')} {(details.get('exception') or {}).get('description', '')}"
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".rstrip())
        elif method == "Network.responseReceived" and params.get("type") == "Document":
            self.status = int(params["response"]["status"])
        self._events.append(msg)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv(timeout=LOAD_TIMEOUT_S))
            if msg.get("id") == call_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result") or {})
            self._note(msg)
        raise TimeoutError(method)

    def _wait(self, event: str) -> None:
        if any(m.get("method") == event for m in self._events):
            return
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self._note(msg)
            if msg.get("method") == event:
                return
        raise TimeoutError(event)

    def goto(self, url: str) -> Page:
        self._events.clear()
        self.status = None
        self.call("Page.navigate", url=url)
        self._wait("Page.loadEventFired")
        return self

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> Page:
        """Click the first element matching ``selector`` and wait for the page it leads to."""
        self._events.clear()
        self.status = None
        clicked = self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return false;"
            " el.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, view: window}));"
            " return true; })()"
        )
        if not clicked:
            raise AssertionError(f"nothing matches {selector!r}")
        self._wait("Page.loadEventFired")
        return self


class Browser:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc, self.port = proc, port

    @classmethod
    @contextlib.contextmanager
    def launch(cls, chromium: str, profile: Path) -> Iterator[Browser]:
        profile.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield cls(proc, cls._port(proc, profile / "DevToolsActivePort"))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    @staticmethod
    def _port(proc: subprocess.Popen[bytes], marker: Path) -> int:
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode}")
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.05)  # polling for the file Chromium writes once it listens, against a deadline
        raise TimeoutError("chromium did not open its DevTools port")

    @contextlib.contextmanager
    def page(self) -> Iterator[Page]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            target = json.loads(resp.read())
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            yield Page(ws)
        with contextlib.suppress(OSError):
            urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/json/close/{target['id']}", timeout=5
            ).close()
