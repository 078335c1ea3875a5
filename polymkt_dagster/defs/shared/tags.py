"""Run tags the definitions set or read, spelled once.

The partition-range pair is Dagster's own convention for a run over a range of partitions
(``RunRequest.partition_key_range`` reads it back); Dagster exports it only from a private
module, so it is spelled here instead of importing ``dagster._core``.
"""

ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
