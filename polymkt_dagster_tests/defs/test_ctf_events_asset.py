"""raw/ctf_events through Dagster: ctfEvents.csv over a partition range, metadata, the check."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from polymkt_dagster.defs.ingest.assets import raw_ctf_events
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.lake import Lake, rows_in_files
from polymkt_dagster.lib.core.schemas import CTF_EVENTS
from polymkt_dagster.lib.ingest.bootstrap import source_day_range
from polymkt_dagster_tests.lib.ingest.test_ctf_csv import csv_record, write_csv
from polymkt_local.polymarket_apis import BASE_BLOCK, ctf_event_rows


def test_csv_run_imports_the_range_reports_events_and_is_idempotent(data_dir: Path) -> None:
    fills_first, fills_last = source_day_range(data_dir)
    start_s = int(datetime.combine(fills_first, datetime.min.time(), tzinfo=UTC).timestamp())
    rows = ctf_event_rows(64, first_block=BASE_BLOCK, last_block=BASE_BLOCK + 100_000)
    records = [csv_record(r, start_s + 7_200 * i) for i, r in enumerate(rows)]
    records[1][records[1].index(rows[1]["stakeholder"])] = "not-an-address"
    write_csv(data_dir / "ctfEvents.csv", records)
    assert source_day_range(data_dir) == (fills_first, fills_last)  # inside the fills' span
    # A week's range in one run (the events span 5.3 days from the first day of fills).
    first, last = fills_first, fills_first + timedelta(days=6)
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    lake = Lake(data_dir / "parquet")
    with dg.instance_for_test() as instance:
        for _ in range(2):
            result = dg.materialize(
                [raw_ctf_events], instance=instance, resources=resources, tags=tags
            )
            assert result.success
            (check,) = result.get_asset_check_evaluations()
            assert check.check_name == "ctf_event_id_unique" and check.passed
            events = result.asset_materializations_for_node("raw__ctf_events")
            metadata = events[0].metadata
            # each day partition carries its own rows; the run's total is run_row_count
            assert sum(e.metadata["dagster/row_count"].value for e in events) == 63
            assert metadata["run_row_count"].value == 63
            assert rows_in_files(lake.files(CTF_EVENTS.name)) == 63
        assert metadata["rows_rejected"].value == 1
        assert "| PositionsConverted |" in metadata["rows_by_event"].value
        assert "| timestamp |" in metadata["preview"].value
        partitions = instance.get_materialized_partitions(raw_ctf_events.key)
        assert len(partitions) == (last - first).days + 1
