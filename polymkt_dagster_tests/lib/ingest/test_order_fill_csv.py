"""Streaming orderFilled.csv import: the fast path agrees with the canonical SQL rules."""

import csv
import threading
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import ORDER_FILLED, POLY_DATA_ORDER_FILLED_COLUMNS
from polymkt_dagster.lib.ingest.bootstrap import import_order_filled
from polymkt_dagster.lib.ingest.sources import order_fill_fast_path as ofc
from polymkt_dagster.lib.ingest.sources.csv_source import Rejects, scan_csv
from polymkt_dagster.lib.ingest.sources.order_fill_csv import import_fill_csv
from polymkt_dagster.lib.ingest.sources.order_fill_rules import canonical_rules

HEADER = ",".join(POLY_DATA_ORDER_FILLED_COLUMNS)
TOKEN = "7" * 77
MAKER = "0x" + "ab" * 20
TAKER = "0x" + "cd" * 20
CHECKSUMMED = "0x" + "aB" * 20


def _tx(n: int) -> str:
    return "0x" + f"{n:064x}"


def _fill(
    ts: str = "1717200000",
    n: int = 1,
    *,
    maker: str = MAKER,
    taker: str = TAKER,
    maker_asset: str = "0",
    taker_asset: str = TOKEN,
    usdc: str = "500000",
    shares: str = "1000000",
    tx: str | None = None,
) -> str:
    return ",".join([ts, maker, maker_asset, usdc, taker, taker_asset, shares, tx or _tx(n)])


# Rows the fast path takes, rows only the canonical rules can normalise, and bad rows.
MIXED_ROWS = [
    _fill(n=1),
    _fill(n=2, maker=CHECKSUMMED),  # EIP-55 case: lower-cased
    _fill(n=3, maker="0X" + "ab" * 20),  # upper-case prefix
    _fill(n=4, taker=f" {TAKER} "),  # padded
    _fill(n=5, tx=_tx(5).upper().replace("0X", "0x")),  # upper-case hash
    _fill(n=6, taker_asset="000" + TOKEN),  # leading zeros in a token id
    _fill(n=7, maker_asset="00"),  # "00" is the USDC side "0"
    _fill(n=8, usdc="0500000"),  # leading zero in an amount
    _fill(n=9, shares=" 1000000"),  # padded amount
    _fill("1717200000123", 10),  # unix milliseconds
    _fill("2024-06-01 10:00:00+00", 11),  # ISO 8601
    _fill("1717200000.5", 12),  # fractional seconds
    _fill(n=13, maker_asset=TOKEN, taker_asset="0", usdc="2000000", shares="900000"),  # sell
    _fill("1717286400", 14),  # next day
    _fill(n=15, maker="0x" + "ag" * 20),  # bad: not hex
    _fill(n=16, tx=_tx(16)[:-1]),  # bad: short hash
    _fill("1500000000", 17),  # bad: 2017, before Polymarket
    _fill(n=18, usdc="0"),  # bad: zero amount
    _fill(n=19, usdc="3000000"),  # bad: price 3
    _fill(n=20, taker=""),  # bad: empty address
    _fill(n=21, taker_asset="1" * 81),  # bad: token id too long
    _fill(n=22, shares="9223372036854775807"),  # the largest BIGINT amount
    _fill(n=23, shares="9223372036854775808"),  # bad: one past it
    _fill("0001717200000", 24),  # leading zeros in unix seconds
    _fill("99999999999", 25),  # bad: seconds in the year 5138
    _fill("100000000000", 26),  # milliseconds by length: 1973, bad
    _fill(n=27, maker_asset=TOKEN, taker_asset="0", usdc="1000000", shares="1000002"),  # 1.000002
    _fill(n=28, usdc="1e8"),  # bad: exponent
    _fill(n=29, shares="100000000.5"),  # bad: fraction (never rounded)
    _fill(n=30, usdc="+200000"),  # bad: sign
    _fill(n=31, taker_asset="123"),  # bad: a 3-digit token id
    _fill(n=32, taker_asset="7.7e76"),  # bad: scientific notation
    _fill(n=33, taker_asset="7" * 70),  # bad: 70 digits
    _fill(n=34, taker_asset="7" * 71),  # the shortest token id
    _fill(n=35, taker_asset="7" * 79),  # bad: 79 digits
    _fill(n=36, maker_asset="5"),  # bad: one digit but not the USDC side
    _fill(n=37, usdc="-500000"),  # bad: negative
    _fill(n=1),  # duplicate of the first row
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def _lake_rows(lake: Lake) -> list[tuple]:
    """Every stored row in storage order (partitions by day, rows as written)."""
    rows: list[tuple] = []
    with connect() as con:
        for path in lake.files(ORDER_FILLED.name):
            rows += con.execute(
                f"SELECT * FROM read_parquet('{path}', hive_partitioning = false)"
            ).fetchall()
    return rows


def _rules_reference(source: Path) -> tuple[list[tuple], dict[int, str]]:
    """Good rows (first per id, sorted) and rejected lines by the canonical rules alone."""
    columns = ", ".join(f'"{c}"' for c in ORDER_FILLED.column_names)
    with connect() as con:
        scan = scan_csv(con, source, POLY_DATA_ORDER_FILLED_COLUMNS)
        con.register("checked", canonical_rules(con, scan.relation, scan.header))
        good = con.execute(
            f"SELECT {columns} FROM checked WHERE reject_field IS NULL "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY record_no) = 1 "
            'ORDER BY CAST("timestamp" AS DATE), "timestamp", transaction_hash, id'
        ).fetchall()
        rejected = dict(
            con.execute(
                "SELECT record_no + 1, reject_field FROM checked WHERE reject_field IS NOT NULL"
            ).fetchall()
        )
    return good, rejected


def test_fast_path_gives_exactly_what_the_canonical_rules_give(tmp_path: Path) -> None:
    source = _write(tmp_path / "orderFilled.csv", MIXED_ROWS)
    lake = Lake(tmp_path / "parquet")
    report = import_order_filled(tmp_path, lake)

    expected_rows, expected_rejects = _rules_reference(source)
    assert _lake_rows(lake) == expected_rows
    with report.rejects_path.open() as handle:
        rejects = {int(r["line"]): r["field"] for r in csv.DictReader(handle)}
    assert rejects == expected_rejects
    assert set(rejects.values()) >= {"maker", "transactionHash", "timestamp", "price"}
    assert report.rows_read == len(MIXED_ROWS)
    # accepted rows are distinct fills: the repeated one is counted as a duplicate
    assert report.rows_accepted == len(MIXED_ROWS) - len(expected_rejects) - 1
    assert report.duplicates_dropped == 1
    (accounting,) = report.accounting
    assert accounting.records_in_file == len(MIXED_ROWS)
    assert (accounting.accepted, accounting.rejected, accounting.duplicates) == (
        len(MIXED_ROWS) - len(expected_rejects) - 1,
        len(expected_rejects),
        1,
    )
    assert report.rows_written == len(expected_rows)
    stored = {r[0]: r for r in expected_rows}
    checksummed = next(r for r in stored.values() if r[4] == _tx(2))
    assert checksummed[6] == CHECKSUMMED.lower()


def test_file_not_grouped_by_day_lands_the_same_as_a_sorted_one(tmp_path: Path) -> None:
    days = ["1717200000", "1717286400", "1717372800"]  # 2024-06-01, -02, -03
    # Days interleave across batches of 2 rows, a day outgrows the in-memory limit, and
    # a late row repeats a fill already written: all of it goes through the spill.
    order = [0, 0, 1, 1, 0, 2, 1, 0, 0, 0, 2, 1]
    lines = [_fill(days[d], 100 + i) for i, d in enumerate(order)]
    lines.append(_fill(days[0], 100))  # late duplicate of the first fill
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    source = _write(shuffled / "orderFilled.csv", lines)
    reference = tmp_path / "reference"
    reference.mkdir()
    _write(reference / "orderFilled.csv", sorted(lines, key=lambda line: line[:10]))

    expected_lake = Lake(reference / "parquet")
    expected = import_order_filled(reference, expected_lake)

    lake = Lake(shuffled / "parquet")
    spill_dir = shuffled / "spill"
    with connect() as con:
        scan = scan_csv(con, source, POLY_DATA_ORDER_FILLED_COLUMNS)
        result = import_fill_csv(
            con, scan, lake, Rejects(), spill_dir=spill_dir, batch_rows=2, max_day_rows=3
        )
    assert _lake_rows(lake) == _lake_rows(expected_lake)
    assert sorted(result.partitions) == [date(2024, 6, 1), date(2024, 6, 2), date(2024, 6, 3)]
    assert sum(p.rows for p in result.partitions.values()) == expected.rows_written
    assert result.duplicates_dropped == expected.duplicates_dropped == 1
    assert list(spill_dir.iterdir()) == []  # the spill file is gone


def test_reimport_into_stored_days_keeps_stored_rows_and_sort_order(tmp_path: Path) -> None:
    _write(tmp_path / "orderFilled.csv", [_fill(n=1), _fill("1717200100", 2)])
    lake = Lake(tmp_path / "parquet")
    import_order_filled(tmp_path, lake)
    # A later dump: one fill again, one earlier in the day, one on a new day.
    _write(
        tmp_path / "orderFilled.csv",
        [_fill("1717200100", 2), _fill("1717199990", 3), _fill("1717286400", 4)],
    )
    report = import_order_filled(tmp_path, lake)
    rows = _lake_rows(lake)
    assert [r[4] for r in rows] == [_tx(3), _tx(1), _tx(2), _tx(4)]
    assert report.rows_written == 4 and report.duplicates_dropped == 0


def test_a_failing_write_stops_the_import_and_its_threads(tmp_path: Path) -> None:
    lines = [_fill(str(1717200000 + 86_400 * d), d) for d in range(40)]
    _write(tmp_path / "orderFilled.csv", lines)
    (tmp_path / "parquet").write_text("not a directory")  # every day write fails
    threads_before = {t.name for t in threading.enumerate()}
    with connect() as con, pytest.raises(OSError):
        # two rows a batch: the scan thread is still producing when the writer fails
        scan = scan_csv(con, tmp_path / "orderFilled.csv", POLY_DATA_ORDER_FILLED_COLUMNS)
        import_fill_csv(
            con, scan, Lake(tmp_path / "parquet"), Rejects(), spill_dir=tmp_path, batch_rows=2
        )
    names = {t.name for t in threading.enumerate()} - threads_before
    assert not {n for n in names if n.startswith(("fill-csv-scan", "fill-day-writer"))}


def _import_with(reader: str, source: Path, lake: Lake) -> tuple[object, list[tuple]]:
    rejects = Rejects()
    messages: list[str] = []
    with connect() as con:
        scan = scan_csv(con, source, POLY_DATA_ORDER_FILLED_COLUMNS)
        result = import_fill_csv(
            con,
            scan,
            lake,
            rejects,
            spill_dir=source.parent / "spill",
            reader=reader,
            progress=messages.append,
        )
    return result, sorted(rejects.rows), messages


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param("1717200004,0x1,0,1", id="wrong-column-count"),
        pytest.param("", id="blank-line"),
        pytest.param('"1717200005,unterminated', id="unterminated-quote"),
    ],
)
def test_pyarrow_and_duckdb_readers_land_the_same_rows_and_rejects(
    tmp_path: Path, damage: str
) -> None:
    lines = [*MIXED_ROWS[:6], damage, *MIXED_ROWS[6:]]
    outcomes = {}
    for reader in ("arrow", "duckdb"):
        folder = tmp_path / reader
        folder.mkdir()
        source = _write(folder / "orderFilled.csv", lines)
        lake = Lake(folder / "parquet")
        result, rejects, _ = _import_with(reader, source, lake)
        outcomes[reader] = (
            _lake_rows(lake),
            # the readers word a wrong column count differently; validation reasons agree
            sorted(
                ("columns", raw, "") if "columns" in reason else (field, raw, reason)
                for _, _, field, reason, raw in rejects
            ),
            result.rows_read,
            result.rows_accepted,
        )
        assert all(reason for _, _, _, reason, _ in rejects)  # an empty cell is named too
        if reader == "arrow" or damage:  # DuckDB does not report a blank line it skips
            file_lines = source.read_text().splitlines()
            for _, line, _, _, raw in rejects:  # raw: the cells, nulls left out
                cells = [c for c in raw.splitlines()[0].split(",") if c]
                assert cells == [c for c in file_lines[line - 1].split(",") if c], (reader, line)
    assert outcomes["arrow"] == outcomes["duckdb"]
    assert outcomes["arrow"][0]  # rows landed


def test_a_file_pyarrow_cannot_read_is_read_by_duckdb(tmp_path: Path) -> None:
    # Enough rows before the bad bytes that the header check does not decode them.
    good = [_fill(str(1717200000 + k), k) for k in range(100)]
    raw = ("\n".join([HEADER, *good]) + "\n").encode()
    raw += b"1717200001,0x\xff\xfe,0,1,2,3,4,5\n"  # not UTF-8: line 102
    raw += (_fill("1717286400", 200) + "\n").encode()
    source = tmp_path / "orderFilled.csv"
    source.write_bytes(raw)
    lake = Lake(tmp_path / "parquet")
    result, rejects, messages = _import_with("arrow", source, lake)
    assert any("using DuckDB" in m for m in messages)
    assert len(_lake_rows(lake)) == 101
    assert [line for _, line, *_ in rejects] == [102]
    assert result.rows_read == 102


def test_repeated_fills_and_long_runs_of_one_second_match_the_rules(tmp_path: Path) -> None:
    same_second = [_fill("1717200000", 1000 + k, usdc=str(1000 + k)) for k in range(80)]
    repeated_later = _fill("1717200050", 7)
    lines = [
        *same_second,  # longer than the compiled sort's tie run
        same_second[3],  # a repeat in the same second
        _fill("1717200040", 7),
        repeated_later.replace("1717200050", "1717200040", 1),  # same fill, same second
        repeated_later,  # the same fill id, a different second: the first row stays
        _fill("1717286400", 9),
        _fill("1717286500", 9).replace("1717286500", "1717286401", 1),
    ]
    source = _write(tmp_path / "orderFilled.csv", lines)
    lake = Lake(tmp_path / "parquet")
    report = import_order_filled(tmp_path, lake)
    expected_rows, _ = _rules_reference(source)
    assert _lake_rows(lake) == expected_rows
    assert report.duplicates_dropped == len(lines) - len(expected_rows) == 4


# Bytes around every boundary the word-wise checks test: digits, hex letters of both cases,
# their neighbours, 'x', control and non-ASCII bytes.
EDGE_BYTES = b"0123456789/:abcdefABCDEF`g@GxX\x10\x7f\x80\xb0\xff"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=90).map(bytes), min_size=1, max_size=30), st.data())
def test_word_wise_cell_checks_agree_with_bytewise_rules(cells: list[bytes], data) -> None:
    def edgy(cell: bytes) -> bytes:
        return bytes(EDGE_BYTES[b % len(EDGE_BYTES)] for b in cell)

    # Mostly well-formed cells with one byte swapped for an edge byte, plus random ones.
    hexes = [
        b"0x" + bytes(data.draw(st.sampled_from(b"0123456789abcdefABCDEF")) for _ in range(40))
    ]
    hexes += [b"0x" + edgy(c)[:40].ljust(40, b"a") for c in cells]
    digits = [edgy(c) for c in cells] + [b"1234567890123456789", b"0", b"01", b""]
    hex_array, digit_array = pa.array(hexes, pa.binary()), pa.array(digits, pa.binary())

    def checked(kernel, array, *args):
        ok = np.ones(len(array), dtype=np.bool_)
        kernel(*ofc._text_column(array), *args, ok)
        return ok.tolist()

    def is_hex(cell: bytes, any_case: bool) -> bool:
        body = cell[2:].lower() if any_case else cell[2:]
        return len(cell) == 42 and cell[:2] == b"0x" and all(b in b"0123456789abcdef" for b in body)

    for any_case in (True, False):
        assert checked(ofc._keep_hex, hex_array, 42, any_case) == [
            is_hex(c, any_case) for c in hexes
        ]
    assert checked(ofc._keep_digits, digit_array, 19, True) == [
        0 < len(c) <= 19 and c.isdigit() and not (c[:1] == b"0" and len(c) > 1) for c in digits
    ]


def test_many_stored_days_merge_at_once_as_one_import_of_the_union(tmp_path: Path) -> None:
    days = [str(1717200000 + 86_400 * d) for d in range(12)]  # the writers merge in parallel
    first = [_fill(day, 300 + i) for i, day in enumerate(days)]
    later = [_fill(day, 300 + i) for i, day in enumerate(days)]  # every fill again...
    later += [_fill(str(int(day) + 60), 400 + i) for i, day in enumerate(days)]  # ...and one more
    lake = Lake(tmp_path / "parquet")
    _write(tmp_path / "orderFilled.csv", first)
    import_order_filled(tmp_path, lake)
    _write(tmp_path / "orderFilled.csv", later)
    report = import_order_filled(tmp_path, lake)

    union = tmp_path / "union"
    union.mkdir()
    _write(union / "orderFilled.csv", first + later[len(days) :])
    expected = Lake(union / "parquet")
    import_order_filled(union, expected)
    assert _lake_rows(lake) == _lake_rows(expected)
    assert report.rows_written == 2 * len(days) and len(report.partitions) == len(days)


def test_amounts_and_token_ids_in_the_wrong_form_are_rejected_not_rounded(tmp_path: Path) -> None:
    _write(tmp_path / "orderFilled.csv", MIXED_ROWS)
    report = import_order_filled(tmp_path, Lake(tmp_path / "parquet"))
    with report.rejects_path.open() as handle:
        rejects = {row["raw"].split(",")[-1]: row for row in csv.DictReader(handle)}
    expected = {
        28: "makerAmountFilled", 29: "takerAmountFilled", 30: "makerAmountFilled",
        31: "takerAssetId", 32: "takerAssetId", 33: "takerAssetId", 35: "takerAssetId",
        36: "makerAssetId", 37: "makerAmountFilled", 6: "takerAssetId", 7: "makerAssetId",
        9: "takerAmountFilled",
    }  # fmt: skip
    for n, field_name in expected.items():
        assert rejects[_tx(n)]["field"] == field_name, n
        assert rejects[_tx(n)]["reason"]
    assert _tx(34) not in rejects  # 71 digits is a token id
    stored = {row[4] for row in _lake_rows(Lake(tmp_path / "parquet"))}
    assert _tx(34) in stored and _tx(29) not in stored


TOKEN_CASES = [
    "0", "00", "5", "123", "7" * 70, "7" * 71, "1" + "0" * 77, "7" * 79, "0" + "7" * 76,
    "7.7e76", "7e76", " " + "7" * 77, "+" + "7" * 76, "-" + "7" * 76, "", "7" * 76 + "a",
]  # fmt: skip
AMOUNT_CASES = [
    "1", "100000000", "0500000", "0", "1e8", "100000000.5", " 100000000", "100000000 ",
    "+200000000", "-5", "", "9223372036854775807", "9223372036854775808", "1_000", "0x10",
    "１２３",
]  # fmt: skip


def test_python_rules_and_their_sql_twins_agree() -> None:
    from polymkt_dagster.lib.ingest import normalize as n

    with connect() as con:
        for value in TOKEN_CASES:
            sql_token, sql_asset = con.execute(
                f"SELECT {n.sql_token_id('$v')}, {n.sql_asset_id('$v')}", {"v": value}
            ).fetchone()
            assert (sql_token is not None) == n.is_token_id(value), value
            assert (sql_asset is not None) == n.is_asset_id(value), value
        for value in AMOUNT_CASES:
            (sql_amount,) = con.execute(
                f"SELECT {n.sql_positive_bigint('$v')}", {"v": value}
            ).fetchone()
            assert sql_amount == n.parse_amount(value), value
    assert n.is_token_id("7" * 71) and not n.is_token_id("123") and not n.is_token_id("7e76")
    assert n.parse_amount("1e8") is None and n.parse_amount("100000000.5") is None
