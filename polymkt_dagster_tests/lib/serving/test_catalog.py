from pathlib import Path

from polymkt_dagster.lib.analytics.resolutions import RESOLUTIONS, resolutions_sql
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import RAW_TABLES, TRADES
from polymkt_dagster.lib.serving.catalog import refresh_catalog


def test_views_over_an_empty_lake_are_typed_and_empty(tmp_path: Path) -> None:
    catalog = tmp_path / "polymkt.duckdb"
    counts = refresh_catalog(Lake(tmp_path / "parquet"), catalog)
    # the resolutions view (one per market, chain first, then Gamma) comes with the raw views
    assert counts == {**dict.fromkeys(RAW_TABLES, 0), RESOLUTIONS.name: 0}
    with connect(catalog, read_only=True) as con:
        columns = [r[0] for r in con.execute("DESCRIBE trades").fetchall()]
        resolution_columns = [r[0] for r in con.execute("DESCRIBE resolutions").fetchall()]
    assert columns == TRADES.column_names
    assert resolution_columns == RESOLUTIONS.column_names


def test_resolutions_view_equals_resolutions_sql(tmp_path: Path, sample_lake: Lake) -> None:
    catalog = tmp_path / "polymkt.duckdb"
    counts = refresh_catalog(sample_lake, catalog)
    with connect() as con:
        expected = con.execute(
            f"SELECT * FROM ({resolutions_sql(sample_lake)}) ORDER BY market_id"
        ).fetchall()
    with connect(catalog, read_only=True) as con:
        seen = con.execute("SELECT * FROM resolutions ORDER BY market_id").fetchall()
    assert seen == expected and counts[RESOLUTIONS.name] == len(expected) > 0


def test_views_follow_new_partitions_without_refresh(tmp_path: Path, sample_lake: Lake) -> None:
    lake = Lake(tmp_path / "parquet")
    catalog = tmp_path / "polymkt.duckdb"
    # A partial lake: markets and one day of trades.
    markets = sample_lake.single_file("markets")
    lake.single_file("markets").parent.mkdir(parents=True)
    lake.single_file("markets").write_bytes(markets.read_bytes())
    days = sample_lake.partition_days(TRADES.name)
    for day in days[:2]:
        for source in sample_lake.day_files(TRADES.name, day):
            target = lake.day_dir(TRADES.name, day) / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
        if day == days[0]:
            counts = refresh_catalog(lake, catalog)
    assert counts["markets"] > 0 and counts["order_filled"] == 0
    with connect(catalog, read_only=True) as con:
        seen = con.execute("SELECT count(DISTINCT CAST(timestamp AS DATE)) FROM trades").fetchone()
    assert seen[0] == 2  # the second day's file appeared after the refresh
