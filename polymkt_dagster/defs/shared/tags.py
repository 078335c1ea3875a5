"""Run tags the definitions set or read, spelled once.

The partition-range pair is Dagster's own convention for a run over a range of partitions
(``RunRequest.partition_key_range`` reads it back), and the partition tag the one for a run of
a single partition; Dagster exports them only from a private module, so they are spelled here
instead of importing ``dagster._core``.
"""

ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
