"""Damaged input files through both doors: the `polymkt bootstrap` CLI and Dagster.

Each variant is a small data dir (markets.csv + orderFilled.csv, a few rows) with one kind
of damage. For each: the exit code (or run success), the good rows in the lake, the bad
rows in the rejects with a reason, no traceback shown, and a second import that changes
nothing.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from polymkt_dagster.defs.ingest.assets import raw_markets, raw_order_filled
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import (
    MARKETS,
    ORDER_FILLED,
    POLY_DATA_MARKETS_COLUMNS,
    POLY_DATA_ORDER_FILLED_COLUMNS,
)
from polymkt_dagster.lib.ingest.bootstrap import import_markets, import_order_filled

REPO_ROOT = Path(__file__).resolve().parents[2]
FILL_HEADER = list(POLY_DATA_ORDER_FILLED_COLUMNS)
MARKET_HEADER = list(POLY_DATA_MARKETS_COLUMNS)
TOKENS = ["1" + "1" * 76, "2" + "2" * 76, "3" + "3" * 76, "4" + "4" * 76]
MAKER = "0x" + "ab" * 20
TAKER = "0x" + "cd" * 20
DAY_ONE, DAY_TWO = 1717200000, 1717286400  # 2024-06-01, 2024-06-02 (UTC)


def _tx(n: int) -> str:
    return "0x" + f"{n:064x}"


def _fill(n: int, **cells: str) -> dict[str, str]:
    row = {
        "timestamp": str((DAY_ONE if n % 2 else DAY_TWO) + n),
        "maker": MAKER,
        "makerAssetId": "0",
        "makerAmountFilled": "500000",
        "taker": TAKER,
        "takerAssetId": TOKENS[n % 2],
        "takerAmountFilled": "1000000",
        "transactionHash": _tx(n),
    }
    row.update(cells)
    return row


def _market(n: int, **cells: str) -> dict[str, str]:
    row = {
        "createdAt": "2024-05-01T00:00:00Z",
        "id": str(500 + n),
        "question": f"Will thing {n} happen?",
        "answer1": "Yes",
        "answer2": "No",
        "neg_risk": "false",
        "market_slug": f"thing-{n}",
        "token1": TOKENS[2 * n % 4],
        "token2": TOKENS[(2 * n + 1) % 4],
        "condition_id": "0x" + f"{n:064x}",
        "volume": "10.5",
        "ticker": f"event-{n}",
        "closedTime": "",
    }
    row.update(cells)
    return row


def _csv_line(row: dict[str, str], header: list[str]) -> str:
    return ",".join(row[name] for name in header)


GOOD_FILLS = [_fill(n) for n in range(1, 7)]  # 6 fills over two days
GOOD_MARKETS = [_market(0), _market(1)]


@dataclass
class Variant:
    """A data dir's files and what an import of them must give."""

    fills: bytes
    markets: bytes
    fills_landed: int = len(GOOD_FILLS)
    fill_reject_lines: set[int] = field(default_factory=set)
    markets_landed: int = len(GOOD_MARKETS)
    market_reject_lines: set[int] = field(default_factory=set)
    fails_naming: tuple[str, ...] = ()  # the import fails; its message names these
    extra_files: dict[str, bytes] = field(default_factory=dict)
    check: Callable[[Path], None] | None = None


def _file(header: list[str], rows: list[str], *, newline: str = "\n") -> bytes:
    return (newline.join([",".join(header), *rows]) + newline).encode()


def _fills(rows: list[str] | None = None, **options: str) -> bytes:
    lines = [_csv_line(r, FILL_HEADER) for r in GOOD_FILLS] if rows is None else rows
    return _file(FILL_HEADER, lines, **options)


def _markets(rows: list[str] | None = None) -> bytes:
    lines = [_csv_line(r, MARKET_HEADER) for r in GOOD_MARKETS] if rows is None else rows
    return _file(MARKET_HEADER, lines)


def _good_fill_lines() -> list[str]:
    return [_csv_line(r, FILL_HEADER) for r in GOOD_FILLS]


def _with_fill_lines(extra: dict[int, str]) -> bytes:
    """The good fills with ``extra`` lines inserted at those 0-based row positions."""
    lines = _good_fill_lines()
    for position in sorted(extra):
        lines.insert(position, extra[position])
    return _fills(lines)


def _questions_stored_verbatim(data_dir: Path) -> None:
    with connect() as con:
        questions = {
            row[0]
            for row in con.execute(
                f"SELECT question FROM {Lake(data_dir / 'parquet').scan_sql(MARKETS)}"
            ).fetchall()
        }
    assert questions == {q for q in HOSTILE_QUESTIONS}


HOSTILE_QUESTIONS = [
    "<script>alert('x')</script> wins?",
    "'; DROP TABLE markets; -- ?",
    "Will 🚀 reach 🌕 [/] \x1b[31m?",
]


def _variants() -> dict[str, Variant]:
    reordered = [FILL_HEADER[k] for k in (7, 3, 0, 6, 1, 5, 2, 4)]
    good = _good_fill_lines()
    truncated = good[-1][: len(good[-1]) // 2]
    stray_quote = good[2].replace(MAKER, '"' + MAKER)
    return {
        "clean": Variant(_fills(), _markets()),
        "truncated-last-line": Variant(
            (_fills()[:-1].decode() + "\n" + truncated).encode(),
            _markets(),
            fill_reject_lines={8},
        ),
        "bom": Variant(b"\xef\xbb\xbf" + _fills(), b"\xef\xbb\xbf" + _markets()),
        "crlf": Variant(_fills(newline="\r\n"), _markets().replace(b"\n", b"\r\n")),
        "reordered-columns": Variant(
            _file(reordered, [_csv_line(r, reordered) for r in GOOD_FILLS]), _markets()
        ),
        "extra-columns": Variant(
            _file([*FILL_HEADER, "note"], [_csv_line(r, FILL_HEADER) + ",x" for r in GOOD_FILLS]),
            _markets(),
        ),
        "missing-required-column": Variant(
            _file(FILL_HEADER[:-1], [_csv_line(r, FILL_HEADER[:-1]) for r in GOOD_FILLS]),
            _markets(),
            fails_naming=("orderFilled.csv", "transactionHash"),
        ),
        "header-repeated-mid-file": Variant(
            _with_fill_lines({3: ",".join(FILL_HEADER)}), _markets(), fill_reject_lines={5}
        ),
        "nul-bytes": Variant(
            _with_fill_lines(
                {2: _csv_line(_fill(40, maker=MAKER[:10] + "\x00" + MAKER[11:]), FILL_HEADER)}
            ),
            _markets(),
            fill_reject_lines={4},
        ),
        "ten-megabyte-cell": Variant(
            _with_fill_lines({4: _csv_line(_fill(41, maker="a" * (10 << 20)), FILL_HEADER)}),
            _markets(),
            fill_reject_lines={6},
        ),
        "bad-amounts": Variant(
            _with_fill_lines(
                {
                    1: _csv_line(_fill(42, makerAmountFilled="-500000"), FILL_HEADER),
                    2: _csv_line(_fill(43, makerAmountFilled="0"), FILL_HEADER),
                    3: _csv_line(_fill(44, takerAmountFilled="9223372036854775808"), FILL_HEADER),
                    4: _csv_line(_fill(45, makerAmountFilled="1e8"), FILL_HEADER),
                    5: _csv_line(_fill(46, takerAmountFilled="100000000.5"), FILL_HEADER),
                }
            ),
            _markets(),
            fill_reject_lines={3, 4, 5, 6, 7},
        ),
        "millisecond-and-far-future-timestamps": Variant(
            _with_fill_lines(
                {
                    1: _csv_line(_fill(47, timestamp=f"{DAY_ONE}123"), FILL_HEADER),
                    2: _csv_line(_fill(48, timestamp="4102444800"), FILL_HEADER),  # 2100
                }
            ),
            _markets(),
            fills_landed=len(GOOD_FILLS) + 1,
            fill_reject_lines={4},
        ),
        "token-id-in-scientific-notation": Variant(
            _with_fill_lines({1: _csv_line(_fill(49, takerAssetId="1.1111e76"), FILL_HEADER)}),
            _markets(
                [
                    *[_csv_line(r, MARKET_HEADER) for r in GOOD_MARKETS],
                    _csv_line(_market(2, token1="3.3333e76"), MARKET_HEADER),
                ]
            ),
            fill_reject_lines={3},
            market_reject_lines={4},
        ),
        "stray-quote": Variant(
            _fills([*good[:2], stray_quote, *good[3:]]),
            _markets(),
            fills_landed=len(GOOD_FILLS) - 1,
            fill_reject_lines={4},
        ),
        "quote-running-to-end-of-file": Variant(
            _fills([*good[:4], good[4].replace(TAKER, '"' + TAKER), good[5]]),
            _markets(
                [
                    _csv_line(GOOD_MARKETS[0], MARKET_HEADER),
                    _csv_line(_market(2, question='"Stray quote, never closed'), MARKET_HEADER),
                    _csv_line(GOOD_MARKETS[1], MARKET_HEADER),
                ]
            ),
            fills_landed=len(GOOD_FILLS) - 1,
            fill_reject_lines={6},
            market_reject_lines={3},
        ),
        "duplicate-market-ids-with-different-questions": Variant(
            _fills(),
            _markets(
                [
                    _csv_line(GOOD_MARKETS[0], MARKET_HEADER),
                    _csv_line(_market(1, question="First wording?"), MARKET_HEADER),
                    _csv_line(GOOD_MARKETS[1], MARKET_HEADER),
                    _csv_line(GOOD_MARKETS[0], MARKET_HEADER),  # an identical repeat: a duplicate
                ]
            ),
            market_reject_lines={3},
        ),
        "html-sql-emoji-in-questions": Variant(
            _fills(),
            _markets(
                [
                    _csv_line(_market(k, question='"' + q.replace('"', '""') + '"'), MARKET_HEADER)
                    for k, q in enumerate(HOSTILE_QUESTIONS)
                ]
            ),
            markets_landed=len(HOSTILE_QUESTIONS),
            check=_questions_stored_verbatim,
        ),
        "jsonl-with-u2028-and-a-malformed-line": Variant(
            _fills(),
            _markets(),
            markets_landed=len(GOOD_MARKETS) + 1,
            extra_files={
                "markets.jsonl": "\n".join(
                    [
                        json.dumps(
                            {
                                "id": "900",
                                "question": "Line\u2028separator?",
                                "description": "a\u2028b\u2029c",
                                "conditionId": "0x" + "9" * 64,
                                "outcomes": '["Yes","No"]',
                                "clobTokenIds": json.dumps(TOKENS[:2]),
                            },
                            ensure_ascii=False,
                        ),
                        '{"id": "901", "question": ',
                    ]
                ).encode()
                + b"\n"
            },
        ),
    }


VARIANTS = _variants()


def _data_dir(tmp_path: Path, variant: Variant) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "orderFilled.csv").write_bytes(variant.fills)
    (data_dir / "markets.csv").write_bytes(variant.markets)
    for name, content in variant.extra_files.items():
        (data_dir / name).write_bytes(content)
    return data_dir


def _lake_state(data_dir: Path) -> tuple[list[tuple], list[tuple]]:
    lake = Lake(data_dir / "parquet")
    with connect() as con:
        fills = con.execute(f"SELECT * FROM {lake.scan_sql(ORDER_FILLED)} ORDER BY id").fetchall()
        markets = con.execute(
            f"SELECT * EXCLUDE (updated_at) FROM {lake.scan_sql(MARKETS)} ORDER BY market_id"
        ).fetchall()
    return fills, markets


def _rejected_lines(data_dir: Path, table: str) -> dict[int, str]:
    folder = data_dir / "rejects" / table
    found: dict[int, str] = {}
    for path in folder.glob("*.csv") if folder.is_dir() else []:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if Path(row["file"]).suffix == ".csv":  # JSON rejects are checked apart
                    found[int(row["line"])] = row["reason"]
    return found


def _assert_landed(data_dir: Path, variant: Variant) -> None:
    fills, markets = _lake_state(data_dir)
    assert len(fills) == variant.fills_landed
    assert len(markets) == variant.markets_landed
    fill_rejects = _rejected_lines(data_dir, ORDER_FILLED.name)
    assert set(fill_rejects) == variant.fill_reject_lines
    market_rejects = _rejected_lines(data_dir, MARKETS.name)
    assert set(market_rejects) == variant.market_reject_lines
    assert all(fill_rejects.values()) and all(market_rejects.values())  # each has a reason
    if variant.check:
        variant.check(data_dir)


def _cli_bootstrap(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "POLYMKT_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(REPO_ROOT),
        "COLUMNS": "1000",  # no wrapping inside file paths
    }
    return subprocess.run(
        [sys.executable, "-m", "polymkt_dagster.cli", "bootstrap"],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("name", list(VARIANTS))
def test_bad_input_through_the_cli(tmp_path: Path, name: str) -> None:
    variant = VARIANTS[name]
    data_dir = _data_dir(tmp_path, variant)
    first = _cli_bootstrap(data_dir)
    output = first.stdout + first.stderr
    assert "Traceback" not in output, output
    if variant.fails_naming:
        assert first.returncode == 2, output
        assert all(word in output for word in variant.fails_naming), output
        return
    assert first.returncode == 0, output
    assert "records = " in output  # the row accounting is printed
    _assert_landed(data_dir, variant)
    _assert_reimport_changes_nothing(data_dir)


def _assert_reimport_changes_nothing(data_dir: Path) -> None:
    """A second import (in-process: the CLI only wraps these calls) changes nothing."""
    before = _lake_state(data_dir), _rejected_lines(data_dir, ORDER_FILLED.name)
    lake = Lake(data_dir / "parquet")
    import_markets(data_dir, lake)
    import_order_filled(data_dir, lake)
    assert (_lake_state(data_dir), _rejected_lines(data_dir, ORDER_FILLED.name)) == before


@pytest.mark.parametrize("name", list(VARIANTS))
def test_bad_input_through_dagster(tmp_path: Path, name: str) -> None:
    variant = VARIANTS[name]
    data_dir = _data_dir(tmp_path, variant)
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    tags = {
        "dagster/asset_partition_range_start": "2024-06-01",
        "dagster/asset_partition_range_end": "2024-06-02",
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_markets, raw_order_filled],
            instance=instance,
            resources=resources,
            tags=tags,
            raise_on_error=False,
        )
        if variant.fails_naming:
            assert not result.success
            failures = [
                e.event_specific_data.error.cause.message  # type: ignore[union-attr]
                for e in result.all_events
                if e.is_step_failure
            ]
            assert any(all(w in m for w in variant.fails_naming) for m in failures), failures
            return
        assert result.success
        fills = result.asset_materializations_for_node("raw__order_filled")[0].metadata
        accounting = fills["row_accounting"].value
        assert "records = " in accounting, accounting
        assert fills["rows_rejected"].value == len(variant.fill_reject_lines)
        assert fills["rows_read"].value == fills["records_in_files"].value
        _assert_landed(data_dir, variant)
    _assert_reimport_changes_nothing(data_dir)
