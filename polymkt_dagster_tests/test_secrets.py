"""Planted secrets never reach a message, a log, run storage or the lake (issue 15).

Secrets sit where providers put them: a short key in the RPC URL's path (Alchemy /v2/<key>),
an ``apikey=`` query value, Basic-auth user info, a token in the Goldsky URL path and an
OpenAI key. The sources are local servers that echo each request (headers included) back in
their error answer. Failing syncs run through the CLI and through Dagster (`sync backfill`),
then every byte they produced is searched: stdout and stderr, every file under DAGSTER_HOME
(the instance's SQLite run and event-log storage, compute logs) and every file of the data
dir (lake, audit trail, rejects, sync state).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from polymkt_dagster.lib.core.redact import redact_text, redact_url, register_secrets
from polymkt_local.echo import EchoServer

REPO_ROOT = Path(__file__).resolve().parent.parent
RPC_PATH_KEY = "Zq7Rk3y"  # short: no length rule may let it through
RPC_QUERY_KEY = "QsTrApIkEy55"
BASIC_USER, BASIC_PASSWORD = "alice", "W0nderl4nd"
GOLDSKY_PATH_KEY = "gsk9T0k"
OPENAI_KEY = "sk-planted-0penai-KEY-7731"
PLANTED = [
    RPC_PATH_KEY,
    RPC_QUERY_KEY,
    BASIC_PASSWORD,
    base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode().rstrip("="),
    GOLDSKY_PATH_KEY,
    OPENAI_KEY,
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMKT_")}
    env.update(extra)
    return env


def _leaks(blob: bytes) -> list[str]:
    return [secret for secret in PLANTED if secret.encode() in blob]


def _files_leaking(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            leaks = _leaks(path.read_bytes())
            if leaks:
                found[str(path.relative_to(root))] = leaks
    return found


def test_redaction_masks_every_planted_form() -> None:
    url = (
        f"http://{BASIC_USER}:{BASIC_PASSWORD}@127.0.0.1:9/v2/{RPC_PATH_KEY}?apikey={RPC_QUERY_KEY}"
    )
    assert redact_url(url) == "http://***@127.0.0.1:9/v2/***?apikey=***"
    for provider, key in (
        ("https://polygon-mainnet.g.alchemy.com/v2/{}", "k3Y"),
        ("https://polygon-mainnet.infura.io/v3/{}", "0123456789abcdef0123456789abcdef"),
        ("https://x.matic.quiknode.pro/{}/", "a1b2c3"),
        ("https://api.goldsky.com/api/public/{}/subgraphs/orderbook-subgraph/0.0.1/gn", "p1"),
    ):
        assert key not in redact_url(provider.format(key))
    register_secrets(url)
    basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    echoed = (
        f'{{"error": "denied: POST /v2/{RPC_PATH_KEY}?apikey={RPC_QUERY_KEY}", '
        f'"headers": {{"Authorization": "Basic {basic}"}}, "token": "t0k3nvalue"}}'
    )
    masked = redact_text(echoed)
    assert not _leaks(masked.encode()) and "t0k3nvalue" not in masked
    assert "denied" in masked  # what the server said survives, its secrets do not


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_failing_syncs_leak_no_planted_secret(tmp_path: Path) -> None:
    data_dir, home = tmp_path / "data", tmp_path / "home"
    data_dir.mkdir()
    with (
        EchoServer(status=401) as rpc,
        EchoServer(status=503, headers={"Retry-After": "0"}) as goldsky,
    ):
        rpc_url = (
            f"http://{BASIC_USER}:{BASIC_PASSWORD}@{rpc.origin.removeprefix('http://')}"
            f"/v2/{RPC_PATH_KEY}?apikey={RPC_QUERY_KEY}"
        )
        env = _env(
            POLYMKT_DATA_DIR=str(data_dir),
            DAGSTER_HOME=str(home),
            POLYMKT_POLYGON_RPC_URL=rpc_url,
            POLYMKT_GOLDSKY_ORDERBOOK_URL=(
                f"{goldsky.origin}/api/public/{GOLDSKY_PATH_KEY}/subgraphs/orderbook-subgraph/gn"
            ),
            POLYMKT_GAMMA_API_URL=goldsky.origin,
            POLYMKT_OPENAI_API_KEY=OPENAI_KEY,
            POLYMKT_RPC_CONFIRMATIONS="1",
        )
        outputs: list[subprocess.CompletedProcess[str]] = []
        for args in (
            ["sync", "fills", "--source", "rpc", "--start", "2024-03-01", "--json"],
            ["sync", "fills", "--source", "goldsky", "--start", "2024-03-01", "--json"],
            ["sync", "backfill", "--start", "2024-03-01", "--end", "2024-03-02", "--json"],
        ):
            extra = {"POLYMKT_ORDER_FILLED_SOURCE": "rpc"} if args[1] == "backfill" else {}
            outputs.append(
                subprocess.run(
                    [sys.executable, "-m", "polymkt_dagster.cli", *args],
                    env={**env, **extra},
                    capture_output=True,
                    text=True,
                    timeout=600,
                    cwd=REPO_ROOT,
                )
            )
        assert rpc.requests and goldsky.requests  # the servers did see (and echo) the keys
        assert any(RPC_PATH_KEY in path for path in rpc.requests)

    for completed in outputs:
        assert completed.returncode == 1, completed.stderr[-2000:]
        assert _leaks((completed.stdout + completed.stderr).encode()) == []
        assert "Traceback" not in completed.stderr
    rpc_fail, goldsky_fail, backfill = outputs
    assert "rpc:" in rpc_fail.stderr and "HTTP 401" in rpc_fail.stderr
    assert "goldsky:" in goldsky_fail.stderr and "http 503" in goldsky_fail.stderr
    document = json.loads(backfill.stdout)  # --json: one document on stdout, no logs
    assert document["success"] is False
    # both raw steps that read the node fail (fills and CTF events): each names its cause
    assert re.match(r"raw__(order_filled|ctf_events): SourceError: rpc:", document["error"])
    assert "Error occurred while executing op" not in document["error"]
    assert "DEBUG" not in backfill.stderr

    assert any(home.rglob("*.db")), "the Dagster instance keeps its storage under DAGSTER_HOME"
    assert _files_leaking(home) == {}
    assert _files_leaking(data_dir) == {}
