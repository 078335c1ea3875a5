"""The P&L chart's series: the last snapshot of each hour, for the wallets that matter most."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.wallets.snapshots import SNAPSHOT_SCHEMA, pnl_series

START = datetime(2024, 3, 1, tzinfo=UTC)


def _snapshots(path: Path, finals: dict[str, float]) -> Path:
    """Every 5 minutes for 2 hours, each wallet's P&L climbing linearly to its final value."""
    rows = []
    for step in range(24):
        for wallet, final in finals.items():
            total = final * (step + 1) / 24
            rows.append({"snapshot_at": START + timedelta(minutes=5 * step), "wallet": wallet,
                         "realized_pnl": 0.0, "unrealized_pnl": total, "total_pnl": total,
                         "exposure": 1.0, "open_positions": 1})  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows, schema=SNAPSHOT_SCHEMA), path)
    return path


def test_the_largest_wallets_either_way_with_one_point_per_hour(tmp_path: Path) -> None:
    files = [_snapshots(tmp_path / "day.parquet", {"0xsmall": 5.0, "0xloser": -900.0,
                                                     "0xwinner": 400.0})]  # fmt: skip
    with connect() as con:
        series = pnl_series(con, files, top=2)
    assert sorted(series) == ["0xloser", "0xwinner"]
    times, totals = series["0xloser"]
    assert times == [START, START + timedelta(hours=1)]
    # the last snapshot of each hour: step 11 (0:55) and step 23 (1:55)
    assert totals == [-900.0 * 12 / 24, -900.0]


def test_no_files_no_series() -> None:
    with connect() as con:
        assert pnl_series(con, []) == {}
