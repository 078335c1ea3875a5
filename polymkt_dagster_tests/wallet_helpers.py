"""Helpers for the wallet/serving tests: a writable lake copy, chdb, a webhook receiver."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from polymkt_dagster.lib.lake import Lake
from polymkt_dagster.lib.sample import SampleConfig, _build_universe
from polymkt_dagster_tests.servers.local_http import LocalHTTPServer

_CHDB_DIR: list[Path] = []


def chdb_dsn() -> str:
    """One embedded ClickHouse path for the whole test process (chdb allows one per process);
    tests keep apart by using their own database (``fresh_database``)."""
    if not _CHDB_DIR:
        _CHDB_DIR.append(Path(tempfile.mkdtemp(prefix="issue6_chdb_")))
    return f"chdb://{_CHDB_DIR[0]}"


def fresh_database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def sharp_wallets() -> set[str]:
    """The bundled sample's five sharp wallets (it is generated with the default config)."""
    return set(_build_universe(SampleConfig()).sharp_wallets)


@pytest.fixture(scope="module")
def wallet_lake(sample_lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A private copy of the session's sample lake that tests may write analytics into."""
    data_dir = tmp_path_factory.mktemp("wallet_lake")
    shutil.copytree(sample_lake.root, data_dir / "parquet")
    return Lake(data_dir / "parquet")


class WebhookReceiver(LocalHTTPServer):
    """A real local HTTP server that records JSON POSTs; can fail the next requests."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._fail: deque[int] = deque()
        self._lock = threading.Lock()
        self.start()

    def handle(self, request: BaseHTTPRequestHandler, body: bytes | None) -> None:
        document = json.loads(body or b"{}")
        with self._lock:
            status = self._fail.popleft() if self._fail else 200
            self.statuses.append(status)
            if status == 200:
                self.received.append(document)
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/secret-token-123?key=abc"

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self._fail.extend(statuses)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()
