"""Shared fixtures: the bundled sample, a lake built from it, and the local servers
(polymkt_local/) that stand in for Polymarket, OpenAI and S3."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.redact import registered_secrets, secrets_scope
from polymkt_dagster.lib.ingest.bootstrap import (
    import_ctf_events,
    import_events,
    import_markets,
    import_order_filled,
)
from polymkt_dagster.lib.ingest.trades import derive_trades
from polymkt_local.openai_compat import OpenAICompatServer
from polymkt_local.polymarket_apis import (
    PolymarketServers,
)
from polymkt_local.seaweed import SeaweedS3, start_seaweed, stop_seaweed

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
FIXTURES_DIR = REPO_ROOT / "polymkt_local" / "recorded"


_SESSION_SECRETS = registered_secrets()


@pytest.fixture(autouse=True)
def _secrets_registered_per_test() -> Iterator[None]:
    """A secret one test or module fixture configures (say a webhook's ``?key=abc``) must not
    mask another test's text: each test starts from the secrets known at session start."""
    with secrets_scope(start_from=_SESSION_SECRETS):
        yield


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE_DIR / "orderFilled.csv").is_file():
        pytest.fail(f"bundled sample missing at {SAMPLE_DIR}; run polymkt sample --out it")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES_DIR.is_dir():
        pytest.fail(f"recorded Polymarket payloads missing at {FIXTURES_DIR}")
    return FIXTURES_DIR


def copy_sample(sample_dir: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for source in sample_dir.iterdir():
        if source.is_file():
            shutil.copyfile(source, target / source.name)
    return target


@pytest.fixture
def data_dir(tmp_path: Path, sample_dir: Path) -> Path:
    """A private copy of the sample as a data dir (tests may add or break files)."""
    return copy_sample(sample_dir, tmp_path / "data")


def build_lake(data_dir: Path, bucket_count: int | None = None) -> Lake:
    lake = Lake(data_dir / "parquet", bucket_count=bucket_count)
    import_markets(data_dir, lake)
    import_events(data_dir, lake)
    fills = import_order_filled(data_dir, lake)
    import_ctf_events(data_dir, lake)
    with connect() as con:
        derive_trades(con, lake, [p.day for p in fills.partitions])
    return lake


@pytest.fixture(scope="session")
def sample_lake(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Lake:
    """The sample imported once per session (read-only for tests)."""
    return build_lake(copy_sample(sample_dir, tmp_path_factory.mktemp("sample_lake")))


@pytest.fixture(scope="session")
def bucketed_sample_lake(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Lake:
    return build_lake(copy_sample(sample_dir, tmp_path_factory.mktemp("bucketed")), 8)


@pytest.fixture
def polymarket_servers() -> Iterator[PolymarketServers]:
    """The local Polymarket servers over the bundled sample, ended an hour ago."""
    with PolymarketServers.over_sample() as servers:
        yield servers


@pytest.fixture(name="openai_server")
def openai_server_fixture() -> Iterator[OpenAICompatServer]:
    """A fresh OpenAI-compatible server per test (any bearer token is accepted)."""
    with OpenAICompatServer() as server:
        yield server


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    server = start_seaweed(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop_seaweed(server)
