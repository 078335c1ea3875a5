"""ctfEvents.csv bootstrap (docs/architecture.md §3.1): good rows land once, bad rows are kept
with file, line, field and reason."""

import csv
from pathlib import Path
from typing import Any

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import CTF_EVENTS
from polymkt_dagster.lib.ingest.bootstrap import import_ctf_events, source_day_range
from polymkt_dagster.lib.ingest.sources.ctf_csv import CSV_COLUMNS
from polymkt_local.polymarket_apis import BASE_BLOCK, ctf_event_rows

START_S = 1_700_000_000


def csv_record(row: dict[str, Any], timestamp: int | str) -> list[str]:
    def cell(name: str) -> str:
        value = timestamp if name == "timestamp" else row.get(name)
        if value is None:
            return ""
        if isinstance(value, list):
            return "|".join(str(v) for v in value)
        return str(value)

    return [cell(name) for name in CSV_COLUMNS]


def write_csv(path: Path, records: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(records)


def _lake_rows(lake: Lake) -> dict[str, dict[str, Any]]:
    with connect() as con:
        table = con.execute(f"SELECT * FROM {lake.scan_sql(CTF_EVENTS)}").to_arrow_table()
    return {r["id"]: r for r in table.to_pylist()}


def test_csv_import_keeps_good_rows_once_and_rejects_bad_ones(tmp_path: Path) -> None:
    rows = ctf_event_rows(40, first_block=BASE_BLOCK, last_block=BASE_BLOCK + 80_000)
    records = [csv_record(r, START_S + 3_600 * i) for i, r in enumerate(rows)]
    # line 2 is the first data row: records[k] sits on line k + 2
    records[3][CSV_COLUMNS.index("transaction_hash")] = "0x1234"  # line 5
    records[5][CSV_COLUMNS.index("amount")] = str(2**64)  # line 7: overflows BIGINT
    records[7][CSV_COLUMNS.index("event")] = "Transfer"  # line 9
    records[9][CSV_COLUMNS.index("timestamp")] = "yesterday"  # line 11
    records[11] = records[11][:-2]  # line 13: too few cells
    records[13][CSV_COLUMNS.index("timestamp")] = "2023-11-15T01:00:00Z"  # ISO is fine
    records.append(list(records[0]))  # the same event twice
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_csv(data_dir / "ctfEvents.csv", records)
    lake = Lake(data_dir / "parquet")

    report = import_ctf_events(data_dir, lake)

    bad = {3, 5, 7, 9, 11}
    expected = {f"{r['transaction_hash']}_{r['log_index']}": r for i, r in enumerate(rows)
                if i not in bad}  # fmt: skip
    stored = _lake_rows(lake)
    assert set(stored) == set(expected)
    assert report.rows_rejected == 5 and report.rows_written == len(expected)
    assert report.rows_read == len(records)
    assert sum(report.rows_by_event.values()) == report.rows_accepted == len(expected) + 1
    rejects = list(csv.DictReader(report.rejects_path.open()))
    found = {(int(r["line"]), r["field"]) for r in rejects}
    assert found == {(5, "transaction_hash"), (7, "amount"), (9, "event"), (11, "timestamp"),
                     (13, "(row)")}  # fmt: skip
    assert all(r["file"].endswith("ctfEvents.csv") and r["reason"] for r in rejects)
    assert "BIGINT" in next(r["reason"] for r in rejects if r["field"] == "amount")
    # The columns come back as they went in (lists, NULLs, the source).
    resolution = next(
        r for i, r in enumerate(rows) if r["event"] == "ConditionResolution" and i not in bad
    )
    got = stored[f"{resolution['transaction_hash']}_{resolution['log_index']}"]
    assert got["payout_numerators"] == resolution["payout_numerators"]
    assert got["question_id"] == resolution["question_id"] and got["amount"] is None
    assert got["source"] == "csv" and got["block_number"] == resolution["block_number"]
    iso = rows[13]
    assert stored[f"{iso['transaction_hash']}_{iso['log_index']}"]["timestamp"].hour == 1
    # A second import changes nothing; the pipeline's day range covers the file.
    again = import_ctf_events(data_dir, lake)
    assert again.rows_written == report.rows_written and set(_lake_rows(lake)) == set(expected)
    first, last = source_day_range(data_dir)
    assert first.isoformat() == "2023-11-14" and (last - first).days >= 1


def test_csv_import_within_a_day_window_and_without_a_file(tmp_path: Path) -> None:
    rows = ctf_event_rows(10, first_block=BASE_BLOCK, last_block=BASE_BLOCK + 100)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    lake = Lake(data_dir / "parquet")
    assert import_ctf_events(data_dir, lake).source_files == []
    write_csv(data_dir / "ctfEvents.csv",
              [csv_record(r, START_S + 86_400 * (i % 3)) for i, r in enumerate(rows)])  # fmt: skip
    from datetime import date

    report = import_ctf_events(data_dir, lake, start=date(2023, 11, 15), end=date(2023, 11, 15))
    assert report.rows_written == len([i for i in range(10) if i % 3 == 1])
    assert lake.partition_days(CTF_EVENTS.name) == [date(2023, 11, 15)]
