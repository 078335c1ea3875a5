"""Named jobs of the code location: what `polymkt pipeline` runs, so every run it records can
be re-executed from the UI and shows on the overview timeline (an ad-hoc materialization
runs as ``__ephemeral_asset_job__``, which the UI cannot re-execute)."""

from __future__ import annotations

import dagster as dg

MAIN_JOB = "main"
FAVORITES_JOB = "signals_favorites"
BACKTEST_JOB = "backtest"

_FAVORITES = dg.AssetKey(["signals", "favorites"])
_BACKTEST = dg.AssetKey(["backtest", "results"])


def _main_keys(defs: dg.Definitions, daily: dg.PartitionsDefinition) -> list[dg.AssetKey]:
    """Every unpartitioned or daily asset: the graph one range run over the data can build."""
    keys: list[dg.AssetKey] = []
    for item in defs.assets or []:
        if isinstance(item, dg.AssetsDefinition) and item.partitions_def in (None, daily):
            keys.extend(item.keys)
    return keys


def job_definitions(defs: dg.Definitions) -> dg.Definitions:
    from polymkt_dagster.defs.ingest.partitions import daily_partitions

    return dg.Definitions(
        jobs=[
            dg.define_asset_job(
                MAIN_JOB,
                selection=dg.AssetSelection.assets(*_main_keys(defs, daily_partitions)),
                partitions_def=daily_partitions,
                description=(
                    "The whole graph over a range of days (`polymkt pipeline` runs it over the "
                    "days found in the data dir): raw layer, analytics, wallets, search, serving."
                ),
            ),
            dg.define_asset_job(
                FAVORITES_JOB,
                selection=dg.AssetSelection.assets(_FAVORITES),
                description="Favorite signals for every horizon (one run over the horizons).",
            ),
            dg.define_asset_job(
                BACKTEST_JOB,
                selection=dg.AssetSelection.assets(_BACKTEST),
                description="One saved backtest (a partition of backtest/results).",
            ),
        ]
    )


def run_job(
    name: str,
    *,
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    tags: dict[str, str],
    run_config: dict[str, object] | None = None,
    partition_key: str | None = None,
    asset_selection: list[dg.AssetKey] | None = None,
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """Execute a job of the code location in this process, recorded under its own name."""
    from polymkt_dagster.definitions import defs

    # The caller's resources (its data dir) replace the location's: a job is built from
    # definitions whose resources are bound, so they are swapped there, not per run.
    with_resources = dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        resources={**(defs.resources or {}), **resources},
        executor=defs.executor,
    )
    return with_resources.resolve_job_def(name).execute_in_process(
        instance=instance,
        tags=tags,
        run_config=run_config,
        partition_key=partition_key,
        asset_selection=asset_selection,
        raise_on_error=raise_on_error,
    )
