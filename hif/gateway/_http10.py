"""uvicorn's httptools protocol, answering HTTP/1.0 streams close-delimited instead of chunked.

uvicorn frames every response without a Content-Length as ``Transfer-Encoding: chunked``, whatever
the request's HTTP version; HTTP/1.0 has no chunked coding (RFC 9112, section 6.1), so a 1.0 client
reads the chunk sizes as part of the SSE stream. For a 1.0 request (never kept alive, so uvicorn
closes the connection after the response) the body is instead written as it comes and the close
ends it. granian (hyper) already does this; ``tests/integration/test_gateway_http10.py`` checks both.
"""

from __future__ import annotations

from typing import Any


def httptools_protocol(base: type | None = None) -> type:
    """The protocol class for ``uvicorn.Config(http=...)`` (uvicorn is imported only when serving).

    ``base`` is the httptools protocol to extend (the slow-client limits'); default uvicorn's own.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

    parent: type = base or HttpToolsProtocol

    class CloseDelimitedCycle(RequestResponseCycle):
        until_close = False

        async def send(self, message: Any) -> None:
            if message["type"] == "http.response.start" and not self.response_started:
                names = {bytes(name).lower() for name, _ in message.get("headers", ())}
                if not names & {b"content-length", b"transfer-encoding"}:
                    self.until_close = True
                    self.chunked_encoding = False  # decided here, so uvicorn adds no chunked header
            elif message["type"] == "http.response.body" and self.until_close:
                # uvicorn writes an unchunked body against a declared length: declare each part's own
                self.expected_content_length = len(message.get("body", b""))
            await super().send(message)

    class Protocol(parent):  # type: ignore[misc,valid-type]
        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            cycle = self.cycle
            # The ASGI task was only scheduled, not started: its first send sees the new class.
            if type(cycle) is RequestResponseCycle and cycle.scope.get("http_version") == "1.0":
                cycle.__class__ = CloseDelimitedCycle

    return Protocol
