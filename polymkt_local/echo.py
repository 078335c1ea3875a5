"""A server that echoes every request back in its error answer, as some proxies and
misconfigured gateways do: request line, headers (Authorization included) and body."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from polymkt_local.local_http import LocalHTTPServer


class EchoServer(LocalHTTPServer):
    """Answers ``status`` with the request echoed in a JSON body; counts requests."""

    def __init__(self, status: int = 401, headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.status = status
        self.headers = headers or {}
        self.requests: list[str] = []

    def handle(self, request: BaseHTTPRequestHandler, body: bytes | None) -> None:
        self.requests.append(request.path)
        echo = {
            "error": f"denied: {request.command} {request.path}",
            "headers": dict(request.headers.items()),
            "body": (body or b"").decode("utf-8", "replace"),
        }
        self.send_json(request, self.status, json.dumps(echo).encode(), self.headers)
