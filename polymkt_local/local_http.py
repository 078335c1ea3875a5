"""The lifecycle every local test server shares: a real HTTP server on 127.0.0.1.

``ThreadingHTTPServer`` on an ephemeral port, one daemon thread per request, HTTP/1.1
keep-alive with ``TCP_NODELAY`` (headers and body go out in separate writes: without it,
Nagle and delayed ACKs add 40 ms to every answer). Subclasses implement ``handle``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalHTTPServer:
    """Start with ``start()`` or as a context manager; ``origin`` is ``http://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self._httpd: ThreadingHTTPServer | None = None

    def handle(self, request: BaseHTTPRequestHandler, body: bytes | None) -> None:
        """Answer one request; ``body`` is None for a GET, the raw bytes for a POST."""
        raise NotImplementedError

    @staticmethod
    def send_json(
        request: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer with ``data`` as a JSON body; a client that already left is ignored."""
        # The client may have timed out and left (a stalled request past its timeout).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(data)

    def start(self) -> Self:
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                server.handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                server.handle(self, self.rfile.read(length) if length else b"")

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"
