"""Partitions of the research assets."""

import dagster as dg

from polymkt_dagster.lib.research.signals import DAYS_TO_EXPIRY

# signals/favorites: one partition per horizon, in days before a group's end date.
favorites_partitions = dg.StaticPartitionsDefinition([str(days) for days in DAYS_TO_EXPIRY])
# One partition per saved dataset / backtest; names are their keys in the research store.
datasets_partitions = dg.DynamicPartitionsDefinition(name="datasets")
backtests_partitions = dg.DynamicPartitionsDefinition(name="backtests")
