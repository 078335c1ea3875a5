"""Datasets: a saved set of markets defined by filters, resolved against the lake.

Filters combine with AND; an unset filter does not restrict:

- ``query``: every word appears (case-insensitive) in the question, event title, candidate
  label, slug, tags or description;
- ``categories`` / ``tags``: any of them (case-insensitive);
- ``ends_after`` / ``ends_before``: the market's end date is in [ends_after, ends_before];
- ``min_volume`` / ``max_volume``: USDC volume counted once per match (taker-side rows,
  from ``analytics/market_summary``; Gamma's ``volume`` when the summary is not built);
- ``closed`` / ``resolved`` / ``neg_risk``: true or false;
- ``market_ids``: only these markets.

The market list is resolved when a dataset is created or updated and stored with it, so
a backtest on a dataset is reproducible; refreshing (the ``backtest/datasets`` asset)
resolves the filters again against the current lake.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from polymkt_dagster.lib.analytics.bars import MARKET_SUMMARY, MARKET_SUMMARY_TABLE
from polymkt_dagster.lib.analytics.resolutions import resolutions_sql
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import MARKETS
from polymkt_dagster.lib.research.research_store import DatasetRecord, ResearchStore, StoreError

DATASETS_DIR = "analytics/datasets"
DATASET_PREVIEW = ["market_id", "question", "category", "end_date", "volume_usd", "status"]


class DatasetFilters(BaseModel):
    """Which markets a dataset holds (all filters AND together)."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(None, description="Words that must all appear in the market text.")
    categories: list[str] | None = Field(None, description="Any of these categories.")
    tags: list[str] | None = Field(None, description="Any of these tags.")
    ends_after: datetime | None = Field(None, description="Market end date on or after this.")
    ends_before: datetime | None = Field(None, description="Market end date on or before this.")
    min_volume: float | None = Field(None, ge=0, description="USDC volume at least this.")
    max_volume: float | None = Field(None, ge=0, description="USDC volume at most this.")
    closed: bool | None = Field(None, description="Only closed (true) or open (false) markets.")
    resolved: bool | None = Field(None, description="Only resolved (true) or unresolved.")
    neg_risk: bool | None = Field(None, description="Only negRisk (election-group) markets.")
    market_ids: list[str] | None = Field(None, description="Only these market ids.")

    @field_validator("categories", "tags", "market_ids")
    @classmethod
    def _no_blank(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        cleaned = [v.strip() for v in values if v and v.strip()]
        return cleaned or None

    @field_validator("ends_after", "ends_before")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _ranges(self) -> DatasetFilters:
        if self.ends_after and self.ends_before and self.ends_after > self.ends_before:
            raise ValueError("ends_after is later than ends_before")
        if (
            self.min_volume is not None
            and self.max_volume is not None
            and self.min_volume > self.max_volume
        ):
            raise ValueError("min_volume is above max_volume")
        return self

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_none=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def describe(self) -> str:
        parts = []
        data = self.model_dump(exclude_none=True)
        for key, value in data.items():
            if isinstance(value, list):
                value = ", ".join(value)
            elif isinstance(value, datetime):
                value = value.date().isoformat() if value.hour == 0 else value.isoformat()
            parts.append(f"{key}={value}")
        return "; ".join(parts) or "all markets"


def _market_text(alias: str) -> str:
    return (
        f"lower(concat_ws(' ', {alias}.question, {alias}.event_title, {alias}.group_item_title, "
        f"{alias}.slug, array_to_string({alias}.tags, ' '), {alias}.description))"
    )


def resolve_markets(
    con: duckdb.DuckDBPyConnection, lake: Lake, filters: DatasetFilters
) -> pa.Table:
    """The markets matching ``filters``, with what a person checks in a preview."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if filters.query:
        for index, word in enumerate(filters.query.lower().split()):
            where.append(f"contains({_market_text('m')}, $w{index})")
            params[f"w{index}"] = word
    if filters.categories:
        where.append("lower(m.category) IN (SELECT lower(unnest($categories)))")
        params["categories"] = filters.categories
    if filters.tags:
        where.append(
            "len(list_intersect(list_transform(coalesce(m.tags, []), x -> lower(x)), "
            "list_transform($tags, x -> lower(x)))) > 0"
        )
        params["tags"] = filters.tags
    if filters.ends_after:
        where.append("m.end_date >= $ends_after")
        params["ends_after"] = filters.ends_after
    if filters.ends_before:
        where.append("m.end_date <= $ends_before")
        params["ends_before"] = filters.ends_before
    if filters.min_volume is not None:
        where.append("volume_usd >= $min_volume")
        params["min_volume"] = filters.min_volume
    if filters.max_volume is not None:
        where.append("volume_usd <= $max_volume")
        params["max_volume"] = filters.max_volume
    for flag in ("closed", "resolved", "neg_risk"):
        value = getattr(filters, flag)
        if value is not None:
            where.append(f"coalesce(m.{flag}, false) = ${flag}")
            params[flag] = value
    if filters.market_ids:
        where.append("m.market_id IN (SELECT unnest($market_ids))")
        params["market_ids"] = filters.market_ids

    summary_path = lake.single_file(MARKET_SUMMARY)
    if summary_path.exists():
        summary = lake.scan_sql(MARKET_SUMMARY_TABLE, [summary_path])
        volume = "coalesce(s.volume_usd, m.volume)"
    else:
        summary = f"({MARKET_SUMMARY_TABLE.typed_empty_select()})"
        volume = "m.volume"
    sql = f"""
        SELECT * FROM (
            SELECT m.market_id, m.question, m.category, m.event_title, m.end_date,
                   {volume} AS volume_usd, m.closed, coalesce(r.resolved, false) AS resolved,
                   m.neg_risk,
                   CASE WHEN r.resolved THEN 'resolved'
                        WHEN m.closed THEN 'closed_unresolved' ELSE 'open' END AS status,
                   m.group_item_title, m.slug, m.tags, m.description
            FROM {lake.scan_sql(MARKETS)} m
            LEFT JOIN ({resolutions_sql(lake)}) r USING (market_id)
            LEFT JOIN {summary} s USING (market_id)
        ) m
        {"WHERE " + " AND ".join(where) if where else ""}
        ORDER BY m.market_id
    """
    table = con.execute(sql, params).to_arrow_table()
    return table.select(
        ["market_id", "question", "category", "event_title", "end_date", "volume_usd",
         "closed", "resolved", "neg_risk", "status"]
    )  # fmt: skip


def dataset_table_name(name: str) -> str:
    return f"{DATASETS_DIR}/{name}"


def save_dataset(
    store: ResearchStore,
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    name: str,
    filters: DatasetFilters,
    *,
    create: bool,
    description: str | None = None,
    prompt: str | None = None,
) -> tuple[DatasetRecord, pa.Table]:
    """Resolve ``filters`` and create (or replace the filters of) a dataset."""
    if filters.is_empty():
        raise StoreError(
            "a dataset needs at least one filter (query, category, tag, dates, volume, "
            "closed/resolved, negRisk or market ids)"
        )
    if create and store.get_dataset(name) is not None:
        raise StoreError(f"dataset {name!r} already exists; use `polymkt datasets update`")
    markets = resolve_markets(con, lake, filters)
    if filters.market_ids:
        missing = sorted(set(filters.market_ids) - set(markets.column("market_id").to_pylist()))
        if missing and markets.num_rows == 0:
            raise StoreError(f"none of the market ids {missing[:10]} is in raw/markets")
    record = DatasetRecord(
        name=name,
        filters=filters.to_json(),
        market_ids=markets.column("market_id").to_pylist(),
        description=description,
        prompt=prompt,
    )
    return store.save_dataset(record, create=create), markets


def refresh_dataset(
    store: ResearchStore, con: duckdb.DuckDBPyConnection, lake: Lake, name: str
) -> tuple[DatasetRecord, pa.Table]:
    """Resolve a saved dataset's filters again and write its market list to the lake."""
    record = store.require_dataset(name)
    filters = DatasetFilters.model_validate(record.filters)
    record, markets = save_dataset(
        store, con, lake, name, filters, create=False, description=record.description,
        prompt=record.prompt,
    )  # fmt: skip
    con.register("dataset_markets", markets)
    try:
        lake.write_single(dataset_table_name(name), con, "SELECT * FROM dataset_markets")
    finally:
        con.unregister("dataset_markets")
    return record, markets


def merge_filters(
    current: dict[str, Any], changes: DatasetFilters, clear: list[str]
) -> DatasetFilters:
    """An update: fields given in ``changes`` replace, ``clear`` removes, others stay."""
    merged = dict(current)
    for key in clear:
        if key not in DatasetFilters.model_fields:
            raise StoreError(
                f"cannot clear {key!r}: filters are {', '.join(DatasetFilters.model_fields)}"
            )
        merged.pop(key, None)
    merged.update(changes.model_dump(mode="json", exclude_none=True))
    return DatasetFilters.model_validate(merged)


def vocabulary(con: duckdb.DuckDBPyConnection, lake: Lake) -> tuple[list[str], list[str]]:
    """Distinct categories and tags of the lake's markets (words the dataset agent knows)."""
    markets = lake.scan_sql(MARKETS)
    categories = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT category FROM {markets} WHERE category IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]
    tags = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT unnest(tags) AS tag FROM {markets} ORDER BY 1"
        ).fetchall()
        if r[0]
    ]
    return categories, tags
