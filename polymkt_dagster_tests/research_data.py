"""The sample with its analytics built (shared by the research asset and CLI tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from polymkt_dagster.lib.analytics import bars as analytics
from polymkt_dagster.lib.analytics.election_groups import build_election_groups
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster_tests.conftest import build_lake, copy_sample


def build_research_data(sample_dir: Path, data_dir: Path) -> Lake:
    """Copy the sample to ``data_dir``, import it, and build bars, summary and groups with
    lib/ directly (fast; the assets' own runs are tested on a few days)."""
    lake = build_lake(copy_sample(sample_dir, data_dir))
    days = lake.partition_days(TRADES.name)
    with connect() as con:
        analytics.build_hourly_bars(con, lake, days)
        analytics.build_daily_bars(con, lake, days)
        analytics.build_market_summary(con, lake, as_of=datetime.now(UTC))
        build_election_groups(con, lake, None)
    return lake
