"""CSV import: validation, rejects, idempotence, atomic partitions, schema evolution."""

import csv
import json
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import DAY_COLUMN, Lake
from polymkt_dagster.lib.core.schemas import (
    MARKETS,
    ORDER_FILLED,
    POLY_DATA_MARKETS_COLUMNS,
    TRADES,
)
from polymkt_dagster.lib.ingest.bootstrap import (
    SourceFileError,
    import_events,
    import_markets,
    import_order_filled,
)

HEADER = (
    "timestamp,maker,makerAssetId,makerAmountFilled,taker,takerAssetId,takerAmountFilled,"
    "transactionHash"
)
TOKEN = "7" * 77
MAKER = "0x" + "ab" * 20
TAKER = "0x" + "cd" * 20


def _tx(n: int) -> str:
    return "0x" + f"{n:064x}"


def _fill(
    ts: str, n: int, maker: str = MAKER, usdc: str = "500000", shares: str = "1000000"
) -> str:
    return f"{ts},{maker},0,{usdc},{TAKER},{TOKEN},{shares},{_tx(n)}"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def _rows(lake: Lake, table=ORDER_FILLED) -> list[dict]:
    with connect() as con:
        sql = f"SELECT * FROM {lake.scan_sql(table)} ORDER BY id"
        return con.execute(sql).arrow().read_all().to_pylist()


def test_bad_rows_are_rejected_with_file_line_field_and_reason(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "orderFilled.csv",
        [
            _fill("1717200000", 1, maker=MAKER.upper().replace("0X", "0x")),  # mixed case: ok
            _fill("1717200001", 2, maker="0xbad"),  # line 3: bad address
            _fill("June 1st", 3),  # line 4: unparsable timestamp
            _fill("1717200003", 4, usdc="3000000"),  # line 5: price 3.0 > 1
            f"1717200004,{MAKER},0,1",  # line 6: wrong column count
            _fill("1717200005", 6, shares="-5"),  # line 7: negative amount
            _fill("1717286400", 7),  # line 8: next day, ok
        ],
    )
    lake = Lake(tmp_path / "parquet")
    report = import_order_filled(tmp_path, lake)
    assert report.rows_read == 7
    assert report.rows_accepted == 2 and report.rows_written == 2
    assert report.rows_rejected == 5
    assert [p.day for p in report.partitions] == [date(2024, 6, 1), date(2024, 6, 2)]

    with report.rejects_path.open() as handle:
        rejects = list(csv.DictReader(handle))
    by_line = {int(r["line"]): r for r in rejects}
    assert set(by_line) == {3, 4, 5, 6, 7}
    assert all(r["file"] == str(source) for r in rejects)
    assert by_line[3]["field"] == "maker" and "0xbad" in by_line[3]["reason"]
    assert by_line[4]["field"] == "timestamp" and "June 1st" in by_line[4]["reason"]
    assert by_line[5]["field"] == "price" and "outside [0, 1]" in by_line[5]["reason"]
    assert "columns" in by_line[6]["reason"].lower()
    assert by_line[7]["field"] == "takerAmountFilled"
    assert by_line[3]["raw"].startswith("1717200001,0xbad")

    rows = _rows(lake)
    assert {r["maker"] for r in rows} == {MAKER}  # lower-cased
    assert all(r["maker_asset_id"] == "0" and r["taker_asset_id"] == TOKEN for r in rows)
    assert all(r["timestamp"].tzinfo is not None for r in rows)
    assert all(r["source"] == "csv" for r in rows)


def test_reimport_is_idempotent_and_merges_new_rows(tmp_path: Path) -> None:
    _write(tmp_path / "orderFilled.csv", [_fill("1717200000", 1), _fill("1717200060", 2)])
    lake = Lake(tmp_path / "parquet")
    import_order_filled(tmp_path, lake)
    first = _rows(lake)
    second_report = import_order_filled(tmp_path, lake)
    assert _rows(lake) == first
    assert second_report.rows_written == 2

    # A later dump that repeats one fill and adds one: the partition holds the union once.
    _write(tmp_path / "orderFilled.csv", [_fill("1717200060", 2), _fill("1717200120", 3)])
    import_order_filled(tmp_path, lake)
    assert len(_rows(lake)) == 3
    assert len({r["id"] for r in _rows(lake)}) == 3


def test_duplicate_lines_in_one_file_land_once(tmp_path: Path) -> None:
    _write(tmp_path / "orderFilled.csv", [_fill("1717200000", 1)] * 3)
    report = import_order_filled(tmp_path, Lake(tmp_path / "parquet"))
    assert report.rows_written == 1 and report.duplicates_dropped == 2


def test_missing_columns_fail_naming_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "orderFilled.csv"
    path.write_text("timestamp,maker,taker\n1717200000,a,b\n")
    with pytest.raises(SourceFileError) as raised:
        import_order_filled(tmp_path, Lake(tmp_path / "parquet"))
    message = str(raised.value)
    assert str(path) in message
    assert "makerAssetId" in message and "transactionHash" in message


def test_binary_file_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "orderFilled.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    with pytest.raises(SourceFileError, match=r"orderFilled\.csv"):
        import_order_filled(tmp_path, Lake(tmp_path / "parquet"))


def test_range_only_touches_days_inside_it(tmp_path: Path) -> None:
    _write(tmp_path / "orderFilled.csv", [_fill("1717200000", 1), _fill("1717286400", 2)])
    lake = Lake(tmp_path / "parquet")
    report = import_order_filled(tmp_path, lake, start=date(2024, 6, 2), end=date(2024, 6, 2))
    assert [p.day for p in report.partitions] == [date(2024, 6, 2)]
    assert lake.partition_days(ORDER_FILLED.name) == [date(2024, 6, 2)]


def test_crash_mid_write_leaves_previous_partition_intact(tmp_path: Path) -> None:
    _write(tmp_path / "orderFilled.csv", [_fill("1717200000", 1), _fill("1717286400", 2)])
    lake = Lake(tmp_path / "parquet")
    import_order_filled(tmp_path, lake)
    before = _rows(lake)
    files_before = {p: p.read_bytes() for p in lake.files(ORDER_FILLED.name)}

    # A writer that dies after the first batch of the second day, as a killed process would.
    with connect() as con:
        relation = (
            con.execute(
                f'SELECT *, CAST("timestamp" AS DATE) AS {DAY_COLUMN} '
                f"FROM {lake.scan_sql(ORDER_FILLED)} ORDER BY {DAY_COLUMN}"
            )
            .arrow()
            .read_all()
        )

    def dying_stream():
        yield relation.to_batches()[0].slice(0, 1)
        yield relation.to_batches()[0].slice(1, 1)
        raise RuntimeError("killed")

    schema = relation.schema
    with pytest.raises(RuntimeError, match="killed"):
        lake.write_sorted_days(
            ORDER_FILLED.name, pa.RecordBatchReader.from_batches(schema, dying_stream())
        )
    assert _rows(lake) == before
    # The day being written when the crash hit keeps its previous file byte for byte.
    second_day = next(p for p in files_before if "day=02" in str(p))
    assert second_day.read_bytes() == files_before[second_day]
    assert set(lake.files(ORDER_FILLED.name)) == set(files_before)


def test_older_partitions_without_a_new_column_read_as_null(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "parquet")
    old_dir = lake.day_dir(TRADES.name, date(2024, 1, 1))
    old_dir.mkdir(parents=True)
    with duckdb.connect() as con:
        # An "old" partition written before fee and is_taker_side existed.
        con.execute(
            "COPY (SELECT TIMESTAMPTZ '2024-01-01 10:00:00+00' AS timestamp, '1' AS market_id, "
            "0.5 AS price, 10.0 AS usd_amount) "
            f"TO '{old_dir / 'part-0.parquet'}' (FORMAT parquet)"
        )
    with connect() as con:
        rows = con.execute(f"SELECT * FROM {lake.scan_sql(TRADES)}").arrow().read_all()
    assert rows.column_names == TRADES.column_names
    row = rows.to_pylist()[0]
    assert row["price"] == 0.5 and row["fee"] is None and row["is_taker_side"] is None


def test_empty_lake_scans_as_typed_empty_table(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "parquet")
    with connect() as con:
        table = con.execute(f"SELECT * FROM {lake.scan_sql(MARKETS)}").arrow().read_all()
    assert table.num_rows == 0 and table.column_names == MARKETS.column_names


def test_markets_csv_and_gamma_json_merge(data_dir: Path) -> None:
    lake = Lake(data_dir / "parquet")
    report = import_markets(data_dir, lake)
    assert report.rows_rejected == 0
    with connect() as con:
        markets = con.execute(f"SELECT * FROM {lake.scan_sql(MARKETS)}").arrow().read_all()
    rows = markets.to_pylist()
    assert len(rows) == report.rows_written > 100
    assert len({r["market_id"] for r in rows}) == len(rows)
    # Gamma JSON contributes what poly_data's CSV lacks: end dates, resolution, groups.
    assert all(r["end_date"] is not None for r in rows)
    assert any(r["resolved"] for r in rows) and any(r["neg_risk"] for r in rows)
    assert all(all(71 <= len(t) <= 78 for t in r["token_ids"]) for r in rows)  # real: 71-78
    events = import_events(data_dir, lake)
    assert events.rows_written > 0


def test_markets_csv_alone_with_bad_rows(tmp_path: Path, sample_dir: Path) -> None:
    lines = (sample_dir / "markets.csv").read_text().splitlines()
    header, good = lines[0], lines[1:6]
    broken = good[0].split(",")
    broken[7] = "12ab"  # token1 is not a decimal id
    (tmp_path / "markets.csv").write_text("\n".join([header, *good, ",".join(broken)]) + "\n")
    lake = Lake(tmp_path / "parquet")
    report = import_markets(tmp_path, lake)
    assert report.rows_written == 5 and report.rows_rejected == 1
    assert report.rejects_by_field == {"token1": 1}
    with connect() as con:
        rows = con.execute(f"SELECT * FROM {lake.scan_sql(MARKETS)}").arrow().read_all()
    assert all(r["outcomes"] and r["token_ids"] for r in rows.to_pylist())


def test_absurd_numeric_timestamps_are_rejected_not_fatal(tmp_path: Path) -> None:
    """Digits too large for any date (seconds or milliseconds) are a bad row, not a crash."""
    _write(
        tmp_path / "orderFilled.csv",
        [
            _fill("99999999999999999", 1),  # line 2: past any millisecond date
            _fill("99999999999999999999999999", 2),  # line 3: past BIGINT too
            _fill("1717200000000", 3),  # line 4: milliseconds, ok
            _fill("1717200001", 4),  # line 5: seconds, ok
        ],
    )
    report = import_order_filled(tmp_path, Lake(tmp_path / "parquet"))
    assert report.rows_accepted == 2 and report.rows_rejected == 2
    with report.rejects_path.open() as handle:
        rejects = {int(r["line"]): r["field"] for r in csv.DictReader(handle)}
    assert rejects == {2: "timestamp", 3: "timestamp"}


def test_csv_neg_risk_is_not_gamma_neg_risk_and_csv_rows_never_resolve(tmp_path: Path) -> None:
    # poly_data's neg_risk column is negRiskAugmented or negRiskOther: a Gamma payload's
    # negRisk wins where one exists; the CSV has no prices or status, so no resolution.
    header = ",".join(POLY_DATA_MARKETS_COLUMNS)
    condition = "0x" + "c" * 64
    lines = [
        header,
        f"2024-01-01T00:00:00Z,71,Q71?,Yes,No,True,q71,{'1' * 71},{'2' * 78},{condition},5,"
        "q71,2024-02-01 00:00:00+00",
        f"2024-01-01T00:00:00Z,72,Q72?,Yes,No,True,q72,{'3' * 76},{'4' * 77},,5,q72,",
    ]
    (tmp_path / "markets.csv").write_text("\n".join(lines) + "\n")
    gamma = {
        "id": "71", "conditionId": condition, "negRisk": False, "closed": True,
        "outcomes": '["Yes", "No"]', "outcomePrices": '["0", "1"]',
        "clobTokenIds": json.dumps(["1" * 71, "2" * 78]), "umaResolutionStatus": "resolved",
        "updatedAt": "2024-02-02T00:00:00Z",
    }  # fmt: skip
    (tmp_path / "markets.json").write_text(json.dumps([gamma]))
    lake = Lake(tmp_path / "parquet")
    import_markets(tmp_path, lake)
    with connect() as con:
        rows = con.execute(
            "SELECT market_id, neg_risk, resolved, payouts, resolution_source, "
            f"uma_resolution_status FROM {lake.scan_sql(MARKETS)} ORDER BY market_id"
        ).fetchall()
    assert rows == [
        ("71", False, True, [0.0, 1.0], "gamma", "resolved"),
        ("72", True, False, None, None, None),  # CSV only: its flag is all there is
    ]


def test_a_stray_quote_on_line_52_of_the_sample_loses_nothing(
    tmp_path: Path, sample_dir: Path
) -> None:
    """The issue's reproduction: before, 50 rows landed and 10,089 were in neither the lake
    nor the rejects (exit 0)."""
    lines = (sample_dir / "orderFilled.csv").read_text().splitlines()
    cells = lines[51].split(",")
    cells[1] = '"' + cells[1]
    lines[51] = ",".join(cells)
    (tmp_path / "orderFilled.csv").write_text("\n".join(lines) + "\n")
    lake = Lake(tmp_path / "parquet")
    report = import_order_filled(tmp_path, lake)
    records = len(lines) - 1
    assert report.rows_rejected == 1
    assert report.rows_accepted + report.duplicates_dropped == records - 1
    assert len(_rows(lake)) == report.rows_written == report.rows_accepted
    (accounting,) = report.accounting
    assert accounting.records_in_file == accounting.rows_read == records
    with report.rejects_path.open() as handle:
        (reject,) = list(csv.DictReader(handle))
    assert reject["line"] == "52" and "unterminated quote" in reject["reason"]
    assert reject["raw"] == lines[51]


def test_markets_and_events_csv_resynchronise_after_a_stray_quote(tmp_path: Path) -> None:
    header = (
        "createdAt,id,question,answer1,answer2,neg_risk,market_slug,token1,token2,"
        "condition_id,volume,ticker,closedTime"
    )

    def market(n: int, question: str) -> str:
        tokens = f"{'1' * 77},{'2' * 77}"
        return f"2024-05-01T00:00:00Z,{n},{question},Yes,No,false,m-{n},{tokens},0x{n:064x},1.5,ev,"

    (tmp_path / "markets.csv").write_text(
        "\n".join([
            header,
            market(1, "Plain?"),
            market(2, '"A stray quote, never closed?'),
            market(3, '"A question with a line break\nin it, properly quoted?"'),
            market(4, "Another?"),
        ]) + "\n"
    )  # fmt: skip
    (tmp_path / "events.csv").write_text(
        'id,title,markets\n10,"Stray,1\n11,Fine,3\n12,Also fine,4\n'
    )
    lake = Lake(tmp_path / "parquet")
    markets = import_markets(tmp_path, lake)
    assert markets.rows_written == 3 and markets.rows_rejected == 1
    (accounting,) = markets.accounting
    assert (accounting.records_in_file, accounting.accepted, accounting.rejected) == (4, 3, 1)
    with connect() as con:
        questions = [
            r[0]
            for r in con.execute(
                f"SELECT question FROM {lake.scan_sql(MARKETS)} ORDER BY market_id"
            ).fetchall()
        ]
    assert questions == ["Plain?", "A question with a line break\nin it, properly quoted?",
                         "Another?"]  # fmt: skip
    events = import_events(tmp_path, lake)
    assert events.rows_rejected == 1
    with events.rejects_path.open() as handle:
        assert [r["line"] for r in csv.DictReader(handle)] == ["2"]


def test_conflicting_market_ids_keep_the_later_row_and_reject_the_earlier(tmp_path: Path) -> None:
    header = (
        "createdAt,id,question,answer1,answer2,neg_risk,market_slug,token1,token2,"
        "condition_id,volume,ticker,closedTime"
    )
    row = "2024-05-01T00:00:00Z,7,{q},Yes,No,false,m,{t1},{t2},0x{c},1.5,ev,"
    first = row.format(q="Old wording?", t1="1" * 77, t2="2" * 77, c="7" * 64)
    later = row.format(q="New wording?", t1="1" * 77, t2="2" * 77, c="7" * 64)
    (tmp_path / "markets.csv").write_text("\n".join([header, first, later, later]) + "\n")
    lake = Lake(tmp_path / "parquet")
    report = import_markets(tmp_path, lake)
    assert (report.rows_written, report.rows_rejected, report.duplicates_dropped) == (1, 1, 1)
    with report.rejects_path.open() as handle:
        (reject,) = list(csv.DictReader(handle))
    assert reject["line"] == "2" and reject["field"] == "id"
    assert "line 4" in reject["reason"] and "line 2" in reject["reason"]  # the last row wins
    assert "question" in reject["reason"]
    with connect() as con:
        kept = con.execute(f"SELECT question FROM {lake.scan_sql(MARKETS)}").fetchall()
    assert kept == [("New wording?",)]


def test_json_lines_keep_u2028_and_reject_a_malformed_line(tmp_path: Path) -> None:
    import json

    def market(n: int, description: str) -> str:
        return json.dumps(
            {
                "id": str(n),
                "question": f"Q{n}?",
                "description": description,
                "conditionId": "0x" + f"{n:064x}",
                "outcomes": '["Yes","No"]',
                "clobTokenIds": json.dumps(["1" * 77, "2" * 77]),
            },
            ensure_ascii=False,
        )

    (tmp_path / "markets.jsonl").write_text(
        "\n".join([
            market(506884, "Rules:\u2028resolves Yes if\u2029so."),  # raw separators
            "{not json",
            "",
            '["an array, not an object"]',
            market(2, "plain"),
        ]) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    lake = Lake(tmp_path / "parquet")
    report = import_markets(tmp_path, lake)
    assert report.rows_written == 2 and report.rows_rejected == 2
    with report.rejects_path.open() as handle:
        assert sorted(int(r["line"]) for r in csv.DictReader(handle)) == [2, 4]
    (accounting,) = report.accounting
    assert accounting.records_in_file == 4  # the blank line is no record
    with connect() as con:
        (description,) = con.execute(
            f"SELECT description FROM {lake.scan_sql(MARKETS)} WHERE market_id = '506884'"
        ).fetchone()
    assert description == "Rules:\u2028resolves Yes if\u2029so."


def test_a_broken_json_array_fails_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "markets.json").write_text('[\n{"id": "1"},\n{"id": "2"\n]\n')
    with pytest.raises(SourceFileError, match=r"markets\.json.*line 4"):
        import_markets(tmp_path, Lake(tmp_path / "parquet"))
