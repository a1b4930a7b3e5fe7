"""A one-reply HTTP server for wire shapes the fake provider never sends.

Every POST gets the reply a test put in ``server.canned`` (status, content type, body),
with a ``Content-Length``; the request itself is read and forgotten::

    with serve_canned() as server:
        server.canned = (200, "text/event-stream", b"data: [DONE]\\n\\n")
        ...  # point a client at server.openai_base
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

__all__ = ["CannedServer", "serve_canned"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CannedServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, content_type, body = self.server.canned
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class CannedServer(ThreadingHTTPServer):
    """Answers every POST with ``canned``: (status, content type, body)."""

    daemon_threads = True
    canned: tuple[int, str, bytes] = (200, "text/event-stream", b"")

    @property
    def openai_base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def serve_canned() -> Iterator[CannedServer]:
    """A :class:`CannedServer` on a free port of 127.0.0.1, serving in a daemon thread."""
    server = CannedServer(("127.0.0.1", 0), _Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
