"""The HTTP protocol the workers run: uvicorn's httptools protocol, with the hot GET routes
answered right where the parser finishes a request's headers.

Why: on two cores at 1000 connections every microsecond per request is latency for the
other 999. Through ASGI each request costs a scope dict, an asyncio task, a receive/send
coroutine pair and header validation -- more than the lookup itself. Here a hot route's
pre-serialised bytes are written to the socket in the same callback that parsed the request.

Everything else takes uvicorn's ordinary path unchanged: other routes and methods, paths
with percent-escapes, a request pipelined behind one still being answered, a client that
is not reading its answers (flow control), upgrades. Both paths call the same
``FastPathApp.hot_get``, so the answers and the metrics are the same.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from music_platform.serving.service import error_json

if TYPE_CHECKING:
    from music_platform.serving.app import FastPathApp

log = logging.getLogger(__name__)

_INTERNAL_ERROR = error_json(500, "internal error; the server log has the details")


class FastHttpToolsProtocol(HttpToolsProtocol):
    """Use ``fast_protocol(app)``: it binds the app these connections answer from."""

    fast_app: FastPathApp
    # The server's default headers (date, server) as bytes: uvicorn replaces its list once a
    # second, so the rendering is cached per list object.
    _headers_source: object = None
    _headers_bytes: bytes = b""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.answered = False

    def on_headers_complete(self) -> None:
        if not self._answer_hot_route():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.answered:
            super().on_message_complete()

    def _default_headers(self) -> bytes:
        source = self.server_state.default_headers
        cls = type(self)
        if source is not cls._headers_source:
            cls._headers_bytes = b"".join(b"%s: %s\r\n" % (name, value) for name, value in source)
            cls._headers_source = source
        return cls._headers_bytes

    def _answer_hot_route(self) -> bool:
        """Answer now and return True, or return False for uvicorn's ordinary path."""
        parser = self.parser
        if (
            parser.get_method() != b"GET"
            or self.pipeline
            or (self.cycle is not None and not self.cycle.response_complete)
            or self.flow.write_paused
            or parser.should_upgrade()
        ):
            return False
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            return False  # uvicorn's path rejects it the usual way
        raw_path = url.path
        if b"%" in raw_path or not raw_path.isascii():
            return False  # uvicorn unquotes these: let it, so both paths see the same id
        started = perf_counter()
        try:
            hot = self.fast_app.hot_get(raw_path.decode("ascii"), url.query or b"")
        except Exception:
            log.exception("unhandled error on GET %s", raw_path.decode("ascii"))
            hot = ("other", 500, _INTERNAL_ERROR)
        if hot is None:
            return False
        route, status, body = hot
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        self.transport.write(
            b"%scontent-type: application/json\r\ncontent-length: %d\r\n%s%s\r\n%s"
            % (
                STATUS_LINE[status],
                len(body),
                self._default_headers(),
                b"" if keep_alive else b"connection: close\r\n",
                body,
            )
        )
        self.answered = True
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()  # counts the request and arms the keep-alive timeout
        self.fast_app.metrics.observe(route, "GET", status, perf_counter() - started)
        return True


def fast_protocol(app: FastPathApp) -> type[FastHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=`` setting, answering hot routes from ``app``."""
    return type("BoundFastHttpToolsProtocol", (FastHttpToolsProtocol,), {"fast_app": app})
