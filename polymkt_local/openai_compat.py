"""A local OpenAI-compatible HTTP server: the network edge of every embeddings test.

It is a real server (stdlib ``http.server`` on 127.0.0.1, an ephemeral port, one thread per
request) that speaks ``POST /v1/embeddings`` like the OpenAI API: bearer auth, ``float`` and
``base64`` encodings, ``dimensions``, ``usage`` and OpenAI-shaped error bodies. Embeddings
are deterministic (a signed hashed bag of stemmed words, L2-normalised), so texts sharing
words are close. It counts requests and inputs, and can be told to answer the next
requests with 429/5xx (optionally with Retry-After) or to stall past a client timeout.

Other endpoints (chat completions, ...) can be added without touching the handler:
``server.routes["/v1/chat/completions"] = handler`` where ``handler(body) -> (status, json)``.

Use the ``openai_server`` fixture, or ``with OpenAICompatServer() as server:``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np

from polymkt_dagster.lib.search import HashingEmbedder

from .local_http import LocalHTTPServer

Handler = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (after any injected failure was decided)."""

    path: str
    model: str | None
    inputs: int
    status: int


@dataclass(frozen=True)
class _Injected:
    status: int | None  # None: stall instead of failing
    retry_after: float | None = None
    stall_s: float = 0.0


def _error(status: int, message: str, kind: str, code: str | None = None) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": kind, "param": None, "code": code}}


class OpenAICompatServer(LocalHTTPServer):
    """Start with ``start()`` or as a context manager; ``base_url`` ends in ``/v1``."""

    def __init__(self, *, dim: int = 64, api_key: str | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.expected_api_key = api_key  # None accepts any non-empty bearer token
        self.routes: dict[str, Handler] = {"/v1/embeddings": self._embeddings}
        self.requests: list[RecordedRequest] = []
        self._injected: deque[_Injected] = deque()
        self._lock = threading.Lock()
        self._embedders: dict[int, HashingEmbedder] = {}

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    # ---- test controls ---------------------------------------------------------------
    def fail_next(self, *statuses: int, retry_after: float | None = None) -> None:
        """Answer the next requests with these HTTP statuses, in order."""
        with self._lock:
            self._injected.extend(_Injected(s, retry_after) for s in statuses)

    def stall_next(self, count: int, seconds: float) -> None:
        """Hold the next ``count`` requests for ``seconds`` before answering normally."""
        with self._lock:
            self._injected.extend(_Injected(None, stall_s=seconds) for _ in range(count))

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    @property
    def embedding_requests(self) -> int:
        """Successful embedding requests."""
        return sum(1 for r in self.requests if r.path == "/v1/embeddings" and r.status == 200)

    @property
    def embedded_inputs(self) -> int:
        """Texts embedded by successful requests."""
        return sum(
            r.inputs for r in self.requests if r.path == "/v1/embeddings" and r.status == 200
        )

    @property
    def failed_requests(self) -> int:
        return sum(1 for r in self.requests if r.status != 200)

    # ---- HTTP ------------------------------------------------------------------------
    def handle(self, request: BaseHTTPRequestHandler, raw: bytes | None) -> None:
        path = request.path.split("?", 1)[0].rstrip("/")
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        inputs = body.get("input") if isinstance(body, dict) else None
        n_inputs = len(inputs) if isinstance(inputs, list) else (1 if inputs else 0)
        model = body.get("model") if isinstance(body, dict) else None
        headers: dict[str, str] = {}

        with self._lock:
            injected = self._injected.popleft() if self._injected else None
        if injected is not None and injected.status is None:
            time.sleep(injected.stall_s)
            injected = None

        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if injected is not None:
            status, payload = _error(
                injected.status or 500,
                "Rate limit reached for requests"
                if injected.status == 429
                else "The server had an error while processing your request.",
                "requests" if injected.status == 429 else "server_error",
            )
            if injected.retry_after is not None:
                headers["Retry-After"] = f"{injected.retry_after:g}"
        elif not token or (self.expected_api_key and token != self.expected_api_key):
            masked = f"{token[:3]}****{token[-4:]}" if len(token) > 8 else "****"
            status, payload = _error(
                401,
                f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        elif path not in self.routes:
            status, payload = _error(404, f"Unknown route {path}", "invalid_request_error")
        elif not isinstance(body, dict):
            status, payload = _error(400, "Request body is not JSON", "invalid_request_error")
        else:
            status, payload = self.routes[path](body)

        with self._lock:
            self.requests.append(RecordedRequest(path, model, n_inputs, status))
        data = json.dumps(payload).encode()
        self.send_json(request, status, data, headers)

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _error(400, "'input' must be a string or a non-empty list of strings",
                          "invalid_request_error")  # fmt: skip
        if any(not t for t in texts):
            return _error(400, "'input' cannot contain empty strings", "invalid_request_error")
        if len(texts) > 2048:
            return _error(400, "'input' has more than 2048 items", "invalid_request_error")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter", "invalid_request_error")
        dim = int(body.get("dimensions") or self.dim)
        with self._lock:
            embedder = self._embedders.setdefault(dim, HashingEmbedder(dim))
            vectors = embedder.embed(texts)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, vector in enumerate(vectors):
            encoded: Any = (
                base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
                if as_base64
                else [float(x) for x in vector]
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(max(1, len(t.split())) for t in texts)
        return 200, {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
