"""merge_order_fills: the one merge of fresh fills into day partitions (sync and spill)."""

from datetime import date
from pathlib import Path

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import ORDER_FILLED
from polymkt_dagster.lib.ingest.merge import merge_order_fills


def _fresh(rows: list[tuple[str, str, str]]) -> str:
    """A canonical fills SELECT from (id, ISO timestamp, maker) triples."""
    values = ", ".join(f"('{i}', TIMESTAMPTZ '{ts}', '{maker}')" for i, ts, maker in rows)
    columns = ", ".join(
        f"CAST(NULL AS {ctype}) AS {name}"
        for name, ctype in ORDER_FILLED.columns
        if name not in ("id", "timestamp", "maker", "transaction_hash")
    )
    return (
        f"SELECT id, ts AS \"timestamp\", maker, '0xtx' AS transaction_hash, {columns} "
        f"FROM (VALUES {values}) AS v(id, ts, maker)"
    )


def _stored(lake: Lake) -> list[tuple[str, str]]:
    with connect() as con:
        return con.execute(
            f'SELECT id, maker FROM {lake.scan_sql(ORDER_FILLED)} ORDER BY "timestamp", id'
        ).fetchall()


def test_unique_fills_into_empty_days_are_sorted_and_split_by_day(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with connect() as con:
        writes = merge_order_fills(
            con,
            lake,
            _fresh(
                [
                    ("b", "2024-06-02 00:00:01+00", "m1"),
                    ("c", "2024-06-01 12:00:00+00", "m2"),
                    ("a", "2024-06-01 12:00:00+00", "m3"),
                ]
            ),
        )
    assert [(w.day, w.rows) for w in writes] == [(date(2024, 6, 1), 2), (date(2024, 6, 2), 1)]
    assert _stored(lake) == [("a", "m3"), ("c", "m2"), ("b", "m1")]


def test_repeated_ids_land_once_and_stored_rows_win(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with connect() as con:
        # repeated id in a batch for empty days: the dedup still runs
        merge_order_fills(
            con,
            lake,
            _fresh([("a", "2024-06-01 12:00:00+00", "m1"), ("a", "2024-06-01 12:00:00+00", "m1")]),
        )
        assert _stored(lake) == [("a", "m1")]
        # unique ids, but the day holds a stored row with one of them: the stored row stays
        merge_order_fills(
            con,
            lake,
            _fresh(
                [("a", "2024-06-01 12:00:00+00", "other"), ("z", "2024-06-01 13:00:00+00", "m9")]
            ),
        )
    assert _stored(lake) == [("a", "m1"), ("z", "m9")]
    with connect() as con:
        nothing = _fresh([("q", "2024-06-01 00:00:00+00", "m")]) + " WHERE false"
        assert merge_order_fills(con, lake, nothing) == []
