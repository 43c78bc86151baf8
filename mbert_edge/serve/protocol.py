"""uvicorn's httptools protocol with the two limits it lacks: a cap on a request's header bytes, and a deadline
for a request's headers to arrive. Written here because neither exists: llhttp buffers headers of any size
(a 64 MB header was accepted, and kept), and uvicorn times out only idle keep-alive connections. Its answer to a
request that is not HTTP is one-line JSON too (uvicorn's is plain text)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Answers 431 and closes the connection once a request's headers pass `max_header_bytes`, and 408 when
    they are not complete `header_timeout` seconds after their first byte. Set both with `limit` in each
    server process before it serves (uvicorn makes one protocol object per connection from this class, and
    its worker processes import it afresh, so the limits live on the class)."""

    max_header_bytes = 64 * 1024
    header_timeout = 10.0

    @classmethod
    def limit(cls, max_header_bytes: int, header_timeout: float) -> None:
        cls.max_header_bytes, cls.header_timeout = max_header_bytes, header_timeout

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True  # bytes received now belong to a request line and headers
        self._header_bytes = 0
        self._tail = b""  # the last bytes of the previous read, where a header terminator may have begun
        self._header_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            # Only the bytes up to the blank line that ends the headers count: the body may share their read.
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = seen[-3:] if end < 0 else b""
            if self._header_bytes > self.max_header_bytes:
                return self._refuse(
                    431,
                    "headers_too_large",
                    f"the request's headers are over this server's {self.max_header_bytes} bytes",
                )
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_headers, self._header_bytes, self._tail = False, 0, b""
        self._cancel_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_headers = True  # the next bytes on this connection start the next request
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes llhttp cannot parse (a bad request line, a `Content-Length` that is no number)."""
        self._refuse(400, "bad_request", f"the request is not valid HTTP ({msg.rstrip('.')})")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._awaiting_headers and not self.transport.is_closing():
            self._refuse(
                408, "request_timeout", f"the request's headers did not arrive within {self.header_timeout:g} s"
            )

    def _cancel_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _refuse(self, status: int, error_type: str, message: str) -> None:
        """One-line JSON, as every other error of the server, then the connection closes."""
        body = json.dumps({"error": message, "error_type": error_type}).encode()
        reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()
