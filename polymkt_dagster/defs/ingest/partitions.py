"""Partitions shared by the raw layer and everything derived from it per day."""

import dagster as dg

# Polymarket's order book history starts in autumn 2020; end_offset=1 includes today so
# the 10-minute sync can write the current day.
DAILY_START = "2020-09-01"
daily_partitions = dg.DailyPartitionsDefinition(start_date=DAILY_START, end_offset=1)
