"""Research assets: favorite signals, saved datasets, backtest results (wiring over lib/).

Datasets and backtests live in the research store (``<data dir>/research.sqlite``); each is
a dynamic partition ("datasets", "backtests") so it can be materialized from the UI. The
CLI registers new ones in the instance at DAGSTER_HOME; ``research_registry_sensor`` adds
any the instance does not know yet (for example created while Dagster was not running).
A new dataset or backtest can also be created from the UI: add the partition, then
materialize it with ``from_text`` (a sentence for the agent) or JSON in the run config.
"""

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import dagster as dg
from dagster_openai import OpenAIResource
from pydantic import Field, ValidationError

from polymkt_dagster.defs.analytics.assets import (
    ELECTION_GROUPS_KEY,
    PRICE_INDEX_KEY,
    PRICES_1H_KEY,
)
from polymkt_dagster.defs.research.partitions import (
    backtests_partitions,
    datasets_partitions,
    favorites_partitions,
)
from polymkt_dagster.defs.shared.automation import analytics_automation, read_through_tag
from polymkt_dagster.defs.shared.checks import check_results
from polymkt_dagster.defs.shared.resources import PolymktResource, semantic_search_enabled
from polymkt_dagster.defs.shared.settings import analytics_on
from polymkt_dagster.lib.core import charts
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.report import markdown_table
from polymkt_dagster.lib.ingest.quality import CheckOutcome
from polymkt_dagster.lib.research import backtest_runs, datasets, signals
from polymkt_dagster.lib.research.agents import interpret_backtest, interpret_dataset
from polymkt_dagster.lib.research.backtest import (
    TRADE_PREVIEW,
    StrategyConfig,
    equity_markdown,
    metrics_markdown,
)
from polymkt_dagster.lib.research.research_store import ResearchStore, StoreError

FAVORITES_KEY = dg.AssetKey(["signals", "favorites"])
DATASETS_KEY = dg.AssetKey(["backtest", "datasets"])
BACKTEST_RESULTS_KEY = dg.AssetKey(["backtest", "results"])


def agent_client(
    context: dg.AssetExecutionContext, openai: OpenAIResource
) -> AbstractContextManager[Any]:
    """The OpenAI client when POLYMKT_OPENAI_API_KEY is set; None means rule-based parsing."""
    # The shared "openai" resource carries a placeholder key when none is configured.
    return openai.get_client(context) if semantic_search_enabled(openai) else nullcontext(None)


def _log_interpretation(context: dg.AssetExecutionContext, interpretation: Any) -> None:
    for warning in interpretation.warnings:
        context.log.warning(warning)
    if interpretation.not_understood:
        context.log.warning(f"not understood: {'; '.join(interpretation.not_understood)}")


@dg.asset(
    key=FAVORITES_KEY,
    deps=[
        ELECTION_GROUPS_KEY,
        dg.AssetDep(PRICES_1H_KEY, partition_mapping=dg.AllPartitionMapping()),
        # Read through the as-of index when present (days changed since it are read
        # from the hourly bars, so a stale index costs time, never correctness).
        PRICE_INDEX_KEY,
    ],
    partitions_def=favorites_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=analytics_automation(),
    # A new price index alone changes no favorite (the bars it indexes are read when it is
    # stale): it must not start a second run after the one the new bars started.
    tags=read_through_tag(PRICE_INDEX_KEY),
    group_name="signals",
    kinds={"parquet"},
    description=(
        "For each election group, N days before its end (partition = N): the candidate with "
        "the highest Yes price (last trade at or before that moment), the runner-up, the "
        "margin and the resolved outcome; groups without a price then are skipped with the "
        "reason."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "no_look_ahead",
            asset=FAVORITES_KEY,
            blocking=True,
            description="Every favorite is priced by a trade at or before its signal time.",
        )
    ],
)
def favorite_signals(
    context: dg.AssetExecutionContext, polymkt: PolymktResource
) -> dg.MaterializeResult:
    horizons = [int(key) for key in context.partition_keys]
    lake = polymkt.lake()
    with connect() as con:
        reports = signals.build_favorites(con, lake, horizons)
    lines = [
        "| days before | groups | signals | skipped | favorite won | avg favorite price |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        rate = f"{r.favorite_win_rate:.1%}" if r.favorite_win_rate is not None else "n/a"
        price = f"{r.avg_favorite_price:.4f}" if r.avg_favorite_price is not None else "n/a"
        lines.append(
            f"| {r.days_before} | {r.groups} | {r.ok} | {r.skipped} | {rate} "
            f"({r.favorites_won}/{r.favorites_resolved}) | {price} |"
        )
    look_ahead = sum(r.look_ahead_rows for r in reports)
    first = reports[0]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(r.groups for r in reports),
            "signals": sum(r.ok for r in reports),
            "skipped": sum(r.skipped for r in reports),
            "by_horizon": dg.MetadataValue.md("\n".join(lines)),
            "calibration_curve": dg.MetadataValue.md(_calibration_markdown(reports)),
            "path": dg.MetadataValue.path(str(first.path.parent)),
            "preview": dg.MetadataValue.md(
                f"{first.days_before} days before the end:\n\n"
                + markdown_table(first.table, signals.SIGNAL_PREVIEW)
            ),
        },
        check_results=check_results(
            [
                CheckOutcome(
                    "no_look_ahead",
                    look_ahead == 0,
                    f"{look_ahead} favorites priced by a trade after their signal time",
                    {"rows": look_ahead},
                )
            ],
            {"no_look_ahead"},
        ),
    )


def _calibration_markdown(reports: list[signals.FavoritesReport]) -> str:
    """Favorite win rate against the favorite's price, per horizon, as an inline PNG."""
    curves = {}
    for report in reports:
        rows = [
            r
            for r in report.table.select(["favorite_price", "favorite_won"]).to_pylist()
            if r["favorite_price"] is not None and r["favorite_won"] is not None
        ]
        curves[report.days_before] = charts.calibration_points(
            [r["favorite_price"] for r in rows], [bool(r["favorite_won"]) for r in rows]
        )
    if not any(curves.values()):
        return "_no resolved group with a favorite yet_"
    return charts.png_markdown(charts.calibration_png(curves), "calibration curve")


class DatasetConfig(dg.Config):
    from_text: str | None = Field(
        default=None,
        description="Describe the markets in words (dataset agent); creates or replaces the "
        "dataset's filters.",
    )
    filters_json: str | None = Field(
        default=None,
        description='Filters as JSON, e.g. {"categories": ["Elections"], "min_volume": 1000}; '
        "creates or replaces the dataset's filters.",
    )


def _filters_from_config(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    openai: OpenAIResource,
    polymkt: PolymktResource,
) -> datasets.DatasetFilters | None:
    if config.filters_json:
        try:
            return datasets.DatasetFilters.model_validate_json(config.filters_json)
        except ValidationError as exc:
            raise dg.Failure(f"filters_json is not valid dataset filters: {exc}") from exc
    if not config.from_text:
        return None
    with connect() as con:
        categories, tags = datasets.vocabulary(con, polymkt.lake())
    with agent_client(context, openai) as client:
        interpretation = interpret_dataset(
            config.from_text,
            client=client,
            model=polymkt.settings().openai_chat_model,
            categories=categories,
            tags=tags,
        )
    _log_interpretation(context, interpretation)
    return interpretation.value


@dg.asset(
    key=DATASETS_KEY,
    partitions_def=datasets_partitions,
    group_name="backtest",
    kinds={"parquet", "sqlite"},
    description=(
        "A saved dataset (partition = its name): its filters resolved against the current "
        "lake; the market list is written to `analytics/datasets/<name>.parquet` and stored."
    ),
)
def dataset_markets(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    polymkt: PolymktResource,
    openai: OpenAIResource,
) -> dg.MaterializeResult:
    name = context.partition_key
    settings, lake = polymkt.settings(), polymkt.lake()
    store = ResearchStore.in_data_dir(settings.data_dir)
    filters = _filters_from_config(context, config, openai, polymkt)
    try:
        with connect() as con:
            if filters is not None:
                datasets.save_dataset(
                    store, con, lake, name, filters,
                    create=store.get_dataset(name) is None, prompt=config.from_text,
                )  # fmt: skip
            elif store.get_dataset(name) is None:
                raise StoreError(
                    f"dataset {name!r} is not saved yet: give from_text or filters_json in the "
                    f"run config, or run `polymkt datasets create {name} ...`"
                )
            record, markets = datasets.refresh_dataset(store, con, lake, name)
    except StoreError as exc:
        raise dg.Failure(str(exc)) from exc
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": markets.num_rows,
            "filters": dg.MetadataValue.json(record.filters),
            "description": datasets.DatasetFilters.model_validate(record.filters).describe(),
            "prompt": record.prompt or "",
            "path": dg.MetadataValue.path(str(lake.single_file(datasets.dataset_table_name(name)))),
            "preview": dg.MetadataValue.md(markdown_table(markets, datasets.DATASET_PREVIEW)),
        }
    )


class BacktestRunConfig(dg.Config):
    from_text: str | None = Field(
        default=None,
        description='A sentence for the backtest agent ("buy the favorite 90 days out, hold '
        'to expiry"); used when this backtest is not saved yet.',
    )
    strategy_json: str | None = Field(
        default=None,
        description="A strategy config as JSON (see `polymkt backtest create --json`); used "
        "when this backtest is not saved yet.",
    )


def _prepare_from_config(
    context: dg.AssetExecutionContext,
    config: BacktestRunConfig,
    openai: OpenAIResource,
    store: ResearchStore,
    backtest_id: str,
    chat_model: str,
) -> None:
    if config.strategy_json:
        try:
            strategy = StrategyConfig.model_validate_json(config.strategy_json)
        except ValidationError as exc:
            raise dg.Failure(f"strategy_json is not a valid strategy config: {exc}") from exc
    elif config.from_text:
        with agent_client(context, openai) as client:
            interpretation = interpret_backtest(
                config.from_text,
                client=client,
                model=chat_model,
                datasets=[d.name for d in store.list_datasets()],
            )
        _log_interpretation(context, interpretation)
        strategy = interpretation.value
        context.log.info(f"prepared: {strategy.describe()}")
    else:
        raise dg.Failure(
            f"backtest {backtest_id!r} is not saved yet: give from_text or strategy_json in "
            "the run config, or run `polymkt backtest create`"
        )
    backtest_runs.prepare_backtest(
        store, strategy, backtest_id=backtest_id, prompt=config.from_text
    )


@dg.asset(
    key=BACKTEST_RESULTS_KEY,
    deps=[
        ELECTION_GROUPS_KEY,
        dg.AssetDep(PRICES_1H_KEY, partition_mapping=dg.AllPartitionMapping()),
        PRICE_INDEX_KEY,
        # A standard horizon reuses its favorites when they are newer than their inputs.
        dg.AssetDep(FAVORITES_KEY, partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep(DATASETS_KEY, partition_mapping=dg.AllPartitionMapping()),
    ],
    partitions_def=backtests_partitions,
    group_name="backtest",
    kinds={"parquet", "sqlite"},
    description=(
        "One backtest (partition = its id): trades, daily equity and per-group decisions as "
        "Parquet under `analytics/backtests/<id>/`, the metrics table and the equity curve."
    ),
)
def backtest_results(
    context: dg.AssetExecutionContext,
    config: BacktestRunConfig,
    polymkt: PolymktResource,
    openai: OpenAIResource,
) -> dg.MaterializeResult:
    backtest_id = context.partition_key
    settings, lake = polymkt.settings(), polymkt.lake()
    store = ResearchStore.in_data_dir(settings.data_dir)
    try:
        if store.get_backtest(backtest_id) is None:
            _prepare_from_config(
                context, config, openai, store, backtest_id, settings.openai_chat_model
            )
        with connect() as con:
            outputs = backtest_runs.execute_backtest(
                store, con, lake, backtest_id, run_id=context.run_id
            )
    except (StoreError, backtest_runs.BacktestRunError, ValidationError) as exc:
        raise dg.Failure(str(exc)) from exc
    result, metrics = outputs.result, outputs.result.metrics
    for skipped in result.skipped[:20]:
        context.log.debug(f"skipped {skipped['group_title']}: {skipped['reason']}")
    numeric = {
        key: dg.MetadataValue.float(float(metrics[key]))
        for key in ("total_return", "win_rate", "sharpe", "max_drawdown", "exposure")
        if metrics.get(key) is not None
    }
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": metrics["trades"],
            "strategy": result.config.describe(),
            "signals_source": metrics["signals_source"],
            "config": dg.MetadataValue.json(result.config.model_dump(mode="json")),
            "metrics": dg.MetadataValue.md(metrics_markdown(metrics)),
            "equity_curve": dg.MetadataValue.md(equity_markdown(outputs.png)),
            **numeric,
            "trades_preview": dg.MetadataValue.md(markdown_table(result.trades, TRADE_PREVIEW)),
            "skipped_groups": len(result.skipped),
            "trades_path": dg.MetadataValue.path(str(outputs.paths["trades"])),
            "equity_path": dg.MetadataValue.path(str(outputs.paths["equity"])),
            "decisions_path": dg.MetadataValue.path(str(outputs.paths["decisions"])),
        }
    )


@dg.sensor(
    name="research_registry_sensor",
    minimum_interval_seconds=30,
    asset_selection=[DATASETS_KEY],
    default_status=(
        dg.DefaultSensorStatus.RUNNING if analytics_on() else dg.DefaultSensorStatus.STOPPED
    ),
    description=(
        "Registers saved datasets and backtests as dynamic partitions and materializes new "
        "datasets, so ones created outside Dagster appear in the UI."
    ),
)
def research_registry_sensor(
    context: dg.SensorEvaluationContext, polymkt: PolymktResource
) -> dg.SensorResult:
    store = ResearchStore.in_data_dir(polymkt.settings().data_dir)
    saved_datasets = {d.name for d in store.list_datasets()}
    saved_backtests = {b.backtest_id for b in store.list_backtests()}
    new_datasets = sorted(saved_datasets - set(context.instance.get_dynamic_partitions("datasets")))
    new_backtests = sorted(
        saved_backtests - set(context.instance.get_dynamic_partitions("backtests"))
    )
    requests = [
        datasets_partitions.build_add_request(new_datasets),
        backtests_partitions.build_add_request(new_backtests),
    ]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=name, asset_selection=[DATASETS_KEY])
            for name in new_datasets
        ],
        dynamic_partitions_requests=[r for r in requests if r.partition_keys],
    )
