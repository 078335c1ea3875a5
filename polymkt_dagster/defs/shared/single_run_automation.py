"""An automation sensor that gives a tick's partitions of a single-run asset one run.

Why it exists: an ``AutomationConditionSensorDefinition`` with ``emit_backfills=False`` turns
a tick's requests into one run per partition key, whatever the asset's backfill policy
(dagster 1.13, ``automation_tick_evaluation_context.build_run_requests`` ->
``_build_run_requests_from_partitions_def_mapping``: assets are grouped by partition key and
``BackfillPolicy`` is read only on the backfill path, ``_build_backfill_request``). A job
automation condition does not help either: a partitioned job is also launched once per
partition (``_build_job_run_requests``). So signals/favorites, whose one run computes every
horizon, paid seven process starts for a tick that asked for its seven horizons.

:class:`SingleRunAutomationSensor` is evaluated in the code server (Dagster's
``use_user_code_server``) and merges the per-partition requests of one asset into one run per
contiguous range of its partition keys, tagged as a range: the run a single-run backfill would
launch, without the backfill (which the backfill daemon starts a tick later and which counts
as "in progress" downstream until it is marked done).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from polymkt_dagster.defs.shared.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
)

DynamicPartitionsRequest = dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest


def is_single_run_static(assets_def: dg.AssetsDefinition) -> bool:
    """Statically partitioned with a single-run backfill policy: one run can build any set of
    its partitions, and the set is small enough to name as ranges of a fixed key order."""
    policy = assets_def.backfill_policy
    return (
        isinstance(assets_def.partitions_def, dg.StaticPartitionsDefinition)
        and policy is not None
        and policy.max_partitions_per_run is None
    )


def _mergeable_partitions(
    request: dg.RunRequest, assets: Mapping[dg.AssetKey, dg.AssetsDefinition]
) -> dg.StaticPartitionsDefinition | None:
    """The static partitions one run may cover for ``request``'s assets, or None to keep it."""
    if (
        request.partition_key is None
        or not request.asset_selection
        or request.run_key is not None
        or request.run_config
        or any(key not in assets for key in request.asset_selection)
    ):
        return None
    selected = [assets[key] for key in request.asset_selection]
    partitions = {assets_def.partitions_def for assets_def in selected}
    if len(partitions) != 1 or not all(is_single_run_static(a) for a in selected):
        return None
    partitions_def = partitions.pop()
    return partitions_def if isinstance(partitions_def, dg.StaticPartitionsDefinition) else None


def _ranges(keys: set[str], ordered: Sequence[str]) -> list[tuple[str, str]]:
    """The contiguous runs of ``keys`` in the partitions' own order, as (first, last)."""
    ranges: list[tuple[str, str]] = []
    start: str | None = None
    previous: str | None = None
    for key in ordered:
        if key in keys:
            start = key if start is None else start
            previous = key
        elif start is not None and previous is not None:
            ranges.append((start, previous))
            start = None
    if start is not None and previous is not None:
        ranges.append((start, previous))
    return ranges


def one_run_per_range(
    requests: Sequence[dg.RunRequest], assets: Mapping[dg.AssetKey, dg.AssetsDefinition]
) -> list[dg.RunRequest]:
    """Merge per-partition requests of single-run static assets into range requests.

    Requests that differ in anything but their partition stay apart; anything else (an
    unpartitioned run, a multi-run asset, a backfill) passes through unchanged.
    """
    kept: list[dg.RunRequest] = []
    groups: dict[tuple[Any, ...], list[dg.RunRequest]] = {}
    partitions_of: dict[tuple[Any, ...], dg.StaticPartitionsDefinition] = {}
    for request in requests:
        partitions_def = _mergeable_partitions(request, assets)
        if partitions_def is None:
            kept.append(request)
            continue
        checks = request.asset_check_keys
        group = (
            tuple(request.asset_selection or ()),
            None if checks is None else tuple(checks),
            tuple(sorted(_without_partition(request.tags).items())),
        )
        groups.setdefault(group, []).append(request)
        partitions_of[group] = partitions_def
    for group, members in groups.items():
        first = members[0]
        keys = {str(member.partition_key) for member in members}
        ordered = partitions_of[group].get_partition_keys()
        for start, end in _ranges(keys, ordered):
            kept.append(
                dg.RunRequest(
                    asset_selection=first.asset_selection,
                    asset_check_keys=first.asset_check_keys,
                    tags={
                        **_without_partition(first.tags),
                        ASSET_PARTITION_RANGE_START_TAG: start,
                        ASSET_PARTITION_RANGE_END_TAG: end,
                    },
                )
            )
    return kept


def _without_partition(tags: Mapping[str, str]) -> dict[str, str]:
    # A run carries either a partition or a range; Dagster refuses to create one with both.
    return {name: value for name, value in tags.items() if name != PARTITION_TAG}


class SingleRunAutomationSensor(dg.AutomationConditionSensorDefinition):
    """Evaluates its assets' automation conditions in the code server and launches one run per
    contiguous range of the partitions a tick requested of a single-run static asset."""

    def __init__(
        self,
        name: str,
        *,
        target: dg.AssetSelection,
        default_status: dg.DefaultSensorStatus,
        minimum_interval_seconds: int,
        description: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self._arguments: dict[str, Any] = {
            "name": name,
            "target": target,
            "default_status": default_status,
            "minimum_interval_seconds": minimum_interval_seconds,
            "description": description,
        }
        with warnings.catch_warnings():
            # use_user_code_server is "beta" in 1.13; its warning would greet every load.
            warnings.simplefilter("ignore", dg.BetaWarning)
            super().__init__(
                name,
                target=target,
                default_status=default_status,
                minimum_interval_seconds=minimum_interval_seconds,
                description=description,
                metadata=metadata,
                # Runs, not backfills (see automation.py's sensor for the measurement).
                emit_backfills=False,
                # Only a sensor evaluated in the code server runs this class's code: the
                # daemon evaluates the other kind itself and submits a run per partition.
                use_user_code_server=True,
            )

    def resolve_run_requests(
        self,
        run_requests: Sequence[dg.RunRequest],
        context: dg.SensorEvaluationContext,
        asset_selection: dg.AssetSelection | None,
        dynamic_partitions_requests: Sequence[DynamicPartitionsRequest],
    ) -> Sequence[dg.RunRequest]:
        # The one private seam: Dagster offers no hook between an automation tick's run
        # requests and their submission. SensorDefinition.evaluate_tick hands the tick's raw
        # requests (before partition tags and jobs are resolved) to this method, so merging
        # here yields requests that resolve exactly like a sensor's own range request.
        repository = context.repository_def
        merged = (
            one_run_per_range(run_requests, repository.assets_defs_by_key)
            if repository is not None
            else list(run_requests)
        )
        return super().resolve_run_requests(
            merged, context, asset_selection, dynamic_partitions_requests
        )

    def with_attributes(
        self,
        *,
        jobs: Sequence[Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SingleRunAutomationSensor:
        # The parent rebuilds a plain AutomationConditionSensorDefinition (Definitions does
        # this to stamp metadata), which would silently drop the merging.
        return SingleRunAutomationSensor(
            **self._arguments,
            metadata=metadata if metadata is not None else self.metadata,
        )
