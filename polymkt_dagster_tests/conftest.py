"""Shared fixtures: the bundled sample and a lake built from it, on temporary paths."""

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
from polymkt_dagster_tests.servers.polymarket_apis import polymarket_servers  # noqa: F401
from polymkt_dagster_tests.servers.seaweed import seaweedfs  # noqa: F401  (session S3 server)

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
FIXTURES_DIR = REPO_ROOT / "polymkt_dagster_tests" / "fixtures" / "polymarket"


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
