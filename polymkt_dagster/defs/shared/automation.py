"""Declarative automation that works on gappy histories, and the sensor that evaluates it.

Assets ask for automation with :func:`analytics_automation` (eager when
POLYMKT_ANALYTICS_MODE=on, none otherwise); the code location's build step
(polymkt_dagster/definitions.py) then applies :func:`with_gap_tolerant_automation`.

Dagster's ``AutomationCondition.eager()`` is unusable on this lake: it looks only at the
latest daily partition (so a rebuilt older day is never refreshed downstream) and waits while
*any* upstream partition is missing (the daily partitions start on 2020-09-01 and most days of
a real lake have never been materialized). The assets' modules still say ``eager()`` ("run me
after upstream updates"); :func:`with_gap_tolerant_automation` replaces each of those with a
condition built from the asset's own dependencies:

* a **daily** asset requests exactly the days whose upstream day was updated (or will be
  requested on this tick), and waits only for *those* days' upstream partitions; updates of
  unpartitioned parents (markets, positions) do not fan out to every day since 2020;
* an **unpartitioned** (or statically/dynamically partitioned) asset runs after any partition
  of any parent was updated, and waits only for unpartitioned parents that were never built.

Both skip while a parent or the asset itself is in progress, and neither requests anything on
the first evaluation or for partitions that merely never existed, so switching the sensor on
does not start a backfill of history.

Statically partitioned assets with a single-run backfill policy (signals/favorites: one run
computes every horizon) are evaluated by a second sensor, :data:`SINGLE_RUN_SENSOR`, which
launches one run for the partitions a tick requested instead of Dagster's run per partition
(see single_run_automation.py). The wallet layer (every asset definition with a key in the
``wallets`` group, the metric rollups whole) has a third, :data:`WALLETS_SENSOR`, with the same
conditions: Dagster puts a tick's assets of one partition in one run, so the day's ledger runs
(positions, P&L snapshots, rollups: tens of seconds on a large lake) would otherwise carry the
day's price bars and hold back everything downstream of them. Every other asset stays with
:data:`AUTOMATION_SENSOR`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import dagster as dg

from polymkt_dagster.defs.shared.asset_keys import RAW_KEYS
from polymkt_dagster.defs.shared.settings import analytics_on, settings_at_load
from polymkt_dagster.defs.shared.single_run_automation import (
    SingleRunAutomationSensor,
    is_single_run_static,
)

AUTOMATION_SENSOR = "analytics_automation"
SINGLE_RUN_SENSOR = "analytics_automation_single_run"
WALLETS_SENSOR = "wallet_automation"
# An asset's tag naming parents it reads through only to go faster (``whole_condition``):
# their updates never make it run again.
READ_THROUGH_TAG = "polymkt/automation_read_through"
WALLETS_GROUP = "wallets"
# Parents a day never waits for: a lake may hold a day's fills without its CTF position
# events (poly_data's layout has none), and that day's P&L must still follow the fills. An
# update of such a parent's day still requests the day.
OPTIONAL_PARENTS = (RAW_KEYS["ctf_events"],)
DAILY_LABEL = "same_day_upstream_updated"
WHOLE_LABEL = "any_upstream_partition_updated"


def analytics_automation() -> dg.AutomationCondition | None:
    """Eager (run after upstream updates) when POLYMKT_ANALYTICS_MODE=on, else manual only.

    The eager condition is the asset's request to follow its parents; the build step swaps
    it for the gap-tolerant condition of its partitioning.
    """
    return dg.AutomationCondition.eager() if analytics_on() else None


def _keys(keys: Iterable[dg.AssetKey]) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*keys)


def daily_condition(fan_out_parents: Iterable[dg.AssetKey] = ()) -> dg.AutomationCondition:
    """Request a day when the same day upstream changed; ``fan_out_parents`` never trigger.

    ``fan_out_parents`` are the parents whose update maps onto every day (unpartitioned, or
    an all-partitions mapping): they are still waited for, never a reason to run.
    """
    updated = dg.AutomationCondition.any_deps_updated()
    fan_out = list(fan_out_parents)
    if fan_out:
        updated = updated.ignore(_keys(fan_out))
    missing = dg.AutomationCondition.any_deps_missing().ignore(_keys(OPTIONAL_PARENTS))
    return (
        updated.since_last_handled()
        & ~missing
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(DAILY_LABEL)


def whole_condition(
    partitioned_parents: Iterable[dg.AssetKey] = (), read_through: Iterable[dg.AssetKey] = ()
) -> dg.AutomationCondition:
    """Run after any partition of any parent changed; never wait for missing history days.

    ``read_through`` are parents the asset only reads through to go faster (an index whose
    staleness costs time, never correctness): still waited for while in progress, never a
    reason to run again.
    """
    missing = dg.AutomationCondition.any_deps_missing()
    partitioned = list(partitioned_parents)
    if partitioned:
        missing = missing.ignore(_keys(partitioned))
    updated = dg.AutomationCondition.any_deps_updated()
    faster = list(read_through)
    if faster:
        updated = updated.ignore(_keys(faster))
    return (
        updated.since_last_handled()
        & ~missing
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(WHOLE_LABEL)


def _is_daily(partitions_def: dg.PartitionsDefinition | None) -> bool:
    return isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)


def condition_for(
    spec: dg.AssetSpec, partitions: Mapping[dg.AssetKey, dg.PartitionsDefinition | None]
) -> dg.AutomationCondition:
    """The gap-tolerant condition for one asset, given every asset's partitions."""
    if _is_daily(spec.partitions_def):
        fan_out = [
            dep.asset_key
            for dep in spec.deps
            if not _is_daily(partitions.get(dep.asset_key))
            or isinstance(dep.partition_mapping, dg.AllPartitionMapping)
        ]
        return daily_condition(fan_out)
    partitioned = [dep.asset_key for dep in spec.deps if partitions.get(dep.asset_key) is not None]
    return whole_condition(partitioned, read_through_parents(spec))


def read_through_tag(*parents: dg.AssetKey) -> dict[str, str]:
    """The tag by which an asset names parents it reads through only to go faster (asset
    tag values allow letters, digits and ``_.-``: keys as Python identifiers, dot-joined)."""
    return {READ_THROUGH_TAG: ".".join(key.to_python_identifier() for key in parents)}


def read_through_parents(spec: dg.AssetSpec) -> list[dg.AssetKey]:
    """The parents an asset names in its :data:`READ_THROUGH_TAG` (``read_through_tag``)."""
    named = set(spec.tags.get(READ_THROUGH_TAG, "").split("."))
    return [dep.asset_key for dep in spec.deps if dep.asset_key.to_python_identifier() in named]


def _is_eager(condition: dg.AutomationCondition | None) -> bool:
    return condition is not None and condition.get_label() == "eager"


def _all_specs(defs: dg.Definitions) -> list[dg.AssetSpec]:
    specs: list[dg.AssetSpec] = []
    for item in defs.assets or []:
        if isinstance(item, dg.AssetsDefinition):
            specs.extend(item.specs)
        elif isinstance(item, dg.AssetSpec):
            specs.append(item)
    return specs


def _default_status() -> dg.DefaultSensorStatus:
    on = settings_at_load().analytics_mode == "on"
    return dg.DefaultSensorStatus.RUNNING if on else dg.DefaultSensorStatus.STOPPED


def automation_sensor(
    exclude: Iterable[dg.AssetKey] = (),
) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the conditions every 30 s; running by default when POLYMKT_ANALYTICS_MODE=on."""
    return _condition_sensor(
        AUTOMATION_SENSOR,
        dg.AssetSelection.all() - _keys(exclude),
        "Refreshes the curated layers after the syncs: daily assets for the days whose "
        "upstream day changed, unpartitioned ones after any upstream update.",
    )


def _condition_sensor(
    name: str, target: dg.AssetSelection, description: str
) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        name,
        target=target,
        default_status=_default_status(),
        minimum_interval_seconds=settings_at_load().automation_interval_seconds,
        # Runs, not backfills: a tick that wants several partitions of one asset would
        # otherwise submit a backfill, whose runs the backfill daemon launches a tick later
        # and which counts as "in progress" for every downstream asset until the daemon
        # marks it done (measured: favorites waited 30 s behind a finished price_index).
        # Dagster then launches one run per partition, whatever the backfill policy: the
        # single-run static assets are left to SINGLE_RUN_SENSOR.
        emit_backfills=False,
        description=description,
    )


def single_run_automation_sensor(keys: Iterable[dg.AssetKey]) -> SingleRunAutomationSensor:
    """The same conditions and schedule for the single-run static assets, one run per tick."""
    return SingleRunAutomationSensor(
        SINGLE_RUN_SENSOR,
        target=_keys(keys),
        default_status=_default_status(),
        minimum_interval_seconds=settings_at_load().automation_interval_seconds,
        description=(
            "Refreshes the statically partitioned assets one run computes whole (favorite "
            "signals) after any upstream update: one run for the partitions a tick requests."
        ),
    )


def wallet_automation_sensor(keys: Iterable[dg.AssetKey]) -> dg.AutomationConditionSensorDefinition:
    """The same conditions and schedule for the wallet layer, in runs of its own."""
    return _condition_sensor(
        WALLETS_SENSOR,
        _keys(keys),
        "Refreshes the wallet layer (positions, P&L snapshots, alerts, metric rollups) after "
        "the syncs, in runs of its own: Dagster puts a tick's assets of one partition in one "
        "run, so the wallets' long ledger runs would otherwise hold back the day's price bars "
        "and everything that follows them.",
    )


def _wallet_keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    """Every key of an asset definition with a key in the wallets group (a multi-asset, such
    as the metric rollups, moves whole: a run cannot build part of it)."""
    return {
        key
        for item in defs.assets or []
        if isinstance(item, dg.AssetsDefinition)
        and any(spec.group_name == WALLETS_GROUP for spec in item.specs)
        for key in item.keys
    }


def _single_run_keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    return {
        key
        for item in defs.assets or []
        if isinstance(item, dg.AssetsDefinition) and is_single_run_static(item)
        for key in item.keys
    }


def with_gap_tolerant_automation(defs: dg.Definitions) -> dg.Definitions:
    """Swap every eager condition for the gap-tolerant one and add the automation sensors."""
    specs = _all_specs(defs)
    partitions = {spec.key: spec.partitions_def for spec in specs}

    def swap(spec: dg.AssetSpec) -> dg.AssetSpec:
        if not _is_eager(spec.automation_condition):
            return spec
        return spec.replace_attributes(automation_condition=condition_for(spec, partitions))

    # A key may be targeted by one automation sensor only: keys that another module's own
    # sensor targets stay with it.
    covered = {
        key
        for sensor in defs.sensors or []
        if isinstance(sensor, dg.AutomationConditionSensorDefinition)
        for key in _selected(sensor, specs)
    }
    with warnings.catch_warnings():
        # map_asset_specs is a "preview" API in 1.13; its warning would greet every load.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        mapped = defs.map_asset_specs(func=swap)
    single_run = _single_run_keys(defs) - covered
    wallets = _wallet_keys(defs) - covered - single_run
    sensors = [automation_sensor(exclude=covered | single_run | wallets)]
    if single_run:
        sensors.append(single_run_automation_sensor(single_run))
    if wallets:
        sensors.append(wallet_automation_sensor(wallets))
    return dg.Definitions.merge(mapped, dg.Definitions(sensors=sensors))


def _selected(
    sensor: dg.AutomationConditionSensorDefinition, specs: list[dg.AssetSpec]
) -> set[dg.AssetKey]:
    selection = sensor.asset_selection
    if isinstance(selection, dg.AssetSelection):
        explicit = getattr(selection, "selected_keys", None)
        if explicit is not None:
            return set(explicit)
    return set()
