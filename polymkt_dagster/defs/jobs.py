"""Named jobs of the code location: what `polymkt pipeline` runs, so every run it records can
be re-executed from the UI and shows on the overview timeline (an ad-hoc materialization
runs as ``__ephemeral_asset_job__``, which the UI cannot re-execute).

The main job selects every unpartitioned or daily asset, so it is built from the loaded
definitions by the code location's build step (polymkt_dagster/definitions.py); this module
holds no definition of its own for the defs-folder loader to pick up.
"""

from __future__ import annotations

import dagster as dg

from polymkt_dagster.defs.shared.partitions import daily_partitions

MAIN_JOB = "main"
FAVORITES_JOB = "signals_favorites"
BACKTEST_JOB = "backtest"
RAW_SYNC_JOB = "raw_sync"

_RAW_SYNC = [
    dg.AssetKey(["raw", "order_filled"]),
    dg.AssetKey(["raw", "trades"]),
    dg.AssetKey(["raw", "ctf_events"]),
]

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
    """The named jobs over the assets of ``defs``."""
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
                RAW_SYNC_JOB,
                selection=dg.AssetSelection.assets(*_RAW_SYNC),
                partitions_def=daily_partitions,
                description=(
                    "Order fills, trades and CTF events of a range of days from the live sources "
                    "(`polymkt sync backfill`)."
                ),
            ),
            dg.define_asset_job(
                BACKTEST_JOB,
                selection=dg.AssetSelection.assets(_BACKTEST),
                description="One saved backtest (a partition of backtest/results).",
            ),
        ]
    )
