"""Partitions shared by the raw layer and everything derived from it per day."""

from datetime import date, timedelta

import dagster as dg

# Polymarket's order book history starts in autumn 2020; end_offset=1 includes today so
# the 10-minute sync can write the current day.
DAILY_START = "2020-09-01"
daily_partitions = dg.DailyPartitionsDefinition(start_date=DAILY_START, end_offset=1)


def window_days(context: dg.AssetExecutionContext) -> list[date]:
    """The UTC days of the run's partition range (one run covers a whole backfill range)."""
    window = context.partition_time_window
    first = window.start.date()
    last = (window.end - timedelta(days=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
