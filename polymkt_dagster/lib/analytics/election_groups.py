"""Election groups: related candidate markets, one Yes token per candidate.

Automatic groups (docs/architecture.md §4):

- negRisk events: every market sharing a ``neg_risk_market_id`` is one group (id = that
  negRiskMarketID), one candidate per market (``group_item_title``).
- other events with two or more Yes/No markets: one group per event (id = ``event:<id>``).

A member is a binary market with a "Yes" outcome; its Yes token is the token at the Yes
position of ``outcomes``. Markets without a Yes outcome (sports Over/Under, team names) are
left out of automatic groups and counted. Resolutions come from ``resolutions_sql`` (the
chain's payouts first, then Gamma's): ``yes_payout`` is what one Yes share pays (1, 0, or 0.5
in a 50/50 resolution) and ``won`` is ``yes_payout = 1``; both are NULL until resolved.
The group ends at the latest end date of its members.

Users add or override groups in a YAML file (default ``<data dir>/election_groups.yaml``)::

    groups:
      - id: md-senate-2024            # new group, or the id of an automatic group
        title: Maryland Senate 2024
        markets: ["508980", "508986"] # members; a market listed here leaves its old group
        labels: {"508980": "Olga T."} # optional candidate labels
        end_date: 2024-11-05T00:00:00Z   # optional; default: latest member end date
    exclude: ["event:12345"]          # automatic groups to drop

An entry with the id of an automatic group and no ``markets`` only relabels it. A bad
entry is skipped and reported (file, entry, field); the other groups are still built.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from polymkt_dagster.lib.analytics.resolutions import resolutions_sql
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import MARKETS, Table
from polymkt_dagster.lib.ingest.quality import CheckOutcome

ELECTION_GROUPS = "analytics/election_groups"
OVERRIDES_FILE_NAME = "election_groups.yaml"

ELECTION_GROUPS_TABLE = Table(
    ELECTION_GROUPS,
    (
        ("group_id", "VARCHAR"),
        ("group_source", "VARCHAR"),  # neg_risk | event | user
        ("group_title", "VARCHAR"),
        ("event_id", "VARCHAR"),
        ("group_end_date", "TIMESTAMPTZ"),
        ("group_resolved", "BOOLEAN"),
        ("n_members", "INTEGER"),
        ("market_id", "VARCHAR"),
        ("candidate", "VARCHAR"),
        ("question", "VARCHAR"),
        ("yes_token_id", "VARCHAR"),
        ("end_date", "TIMESTAMPTZ"),
        ("closed", "BOOLEAN"),
        ("resolved", "BOOLEAN"),
        ("won", "BOOLEAN"),
        ("yes_payout", "DOUBLE"),
    ),
    key=("group_id", "market_id"),
)
_ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "BOOLEAN": pa.bool_(),
    "INTEGER": pa.int32(),
    "DOUBLE": pa.float64(),
}
_ARROW_SCHEMA = pa.schema(
    [(name, _ARROW_TYPES[kind]) for name, kind in ELECTION_GROUPS_TABLE.columns]
)
GROUP_PREVIEW = ["group_id", "group_title", "candidate", "end_date", "resolved", "won"]


class OverridesFileError(ValueError):
    """The overrides file cannot be read at all (not YAML, not a mapping)."""


@dataclass
class Member:
    market_id: str
    candidate: str
    question: str | None
    yes_token_id: str
    end_date: datetime | None
    closed: bool | None
    resolved: bool | None
    won: bool | None
    event_id: str | None = None
    event_title: str | None = None
    yes_payout: float | None = None

    @property
    def payout(self) -> float | None:
        """What one Yes share pays at resolution; None while unresolved."""
        if not self.resolved:
            return None
        if self.yes_payout is not None:
            return self.yes_payout
        # groups written before the yes_payout column: the winner flag says 1 or 0
        return 1.0 if self.won else 0.0


@dataclass
class Group:
    group_id: str
    source: str
    title: str
    event_id: str | None
    members: list[Member]
    end_date_override: datetime | None = None

    @property
    def end_date(self) -> datetime | None:
        if self.end_date_override is not None:
            return self.end_date_override
        ends = [m.end_date for m in self.members if m.end_date is not None]
        return max(ends) if ends else None

    @property
    def resolved(self) -> bool:
        return bool(self.members) and all(m.resolved for m in self.members)


@dataclass
class GroupsReport:
    path: Path
    groups: int
    members: int
    by_source: dict[str, int]
    resolved_groups: int
    skipped_markets_without_yes: int
    problems: list[str] = field(default_factory=list)
    overrides_file: Path | None = None


@dataclass
class GroupOverride:
    group_id: str
    title: str | None
    markets: list[str] | None
    labels: dict[str, str]
    end_date: datetime | None


@dataclass
class Overrides:
    groups: list[GroupOverride] = field(default_factory=list)
    exclude: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"{value!r} is not a date")


def load_overrides(path: Path) -> Overrides:
    """Read the user's groups file; a missing file means no overrides.

    A file that is not YAML (or not a mapping) raises OverridesFileError naming it; a bad
    entry is skipped and described in ``problems`` so the other entries still apply.
    """
    if not path.is_file():
        return Overrides()
    try:
        # BaseLoader keeps every scalar a string: a negRiskMarketID such as 0x66...00 must
        # not become an integer, nor a market id lose its leading zeros.
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise OverridesFileError(f"{path}: not valid YAML: {exc}") from exc
    if document is None:
        return Overrides()
    if not isinstance(document, dict):
        raise OverridesFileError(f"{path}: expected a mapping with 'groups' and/or 'exclude'")
    overrides = Overrides()
    unknown = sorted(set(document) - {"groups", "exclude"})
    if unknown:
        overrides.problems.append(f"{path}: unknown keys {unknown} ignored")
    exclude = document.get("exclude") or []
    if not isinstance(exclude, list):
        overrides.problems.append(f"{path}: 'exclude' must be a list of group ids; ignored")
    else:
        overrides.exclude = {str(x) for x in exclude}
    entries = document.get("groups") or []
    if not isinstance(entries, list):
        overrides.problems.append(f"{path}: 'groups' must be a list; ignored")
        entries = []
    for index, entry in enumerate(entries):
        where = f"{path}: groups[{index}]"
        parsed = _parse_entry(entry, where, overrides.problems)
        if parsed is not None:
            overrides.groups.append(parsed)
    return overrides


def _parse_entry(entry: Any, where: str, problems: list[str]) -> GroupOverride | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping with at least 'id'; entry skipped")
        return None
    group_id = entry.get("id")
    if group_id is None or not str(group_id).strip():
        problems.append(f"{where}: field 'id' is missing; entry skipped")
        return None
    markets = entry.get("markets")
    if markets is not None and (
        not isinstance(markets, list) or not all(isinstance(m, str) for m in markets)
    ):
        problems.append(f"{where}: field 'markets' must be a list of market ids; entry skipped")
        return None
    labels = entry.get("labels") or {}
    if not isinstance(labels, dict):
        problems.append(f"{where}: field 'labels' must map market id to label; entry skipped")
        return None
    end_date = None
    if entry.get("end_date") is not None:
        try:
            end_date = _as_datetime(entry["end_date"])
        except ValueError:
            problems.append(
                f"{where}: field 'end_date' {entry['end_date']!r} is not an ISO date; entry skipped"
            )
            return None
    return GroupOverride(
        group_id=str(group_id).strip(),
        title=str(entry["title"]) if entry.get("title") is not None else None,
        markets=[str(m) for m in markets] if markets is not None else None,
        labels={str(k): str(v) for k, v in labels.items()},
        end_date=end_date,
    )


def _member_rows(con: duckdb.DuckDBPyConnection, lake: Lake) -> tuple[list[dict[str, Any]], int]:
    """Every binary market with a Yes outcome, plus the count of markets without one."""
    markets = lake.scan_sql(MARKETS)
    rows = con.execute(
        f"""
        SELECT m.market_id, question, event_id, event_title, neg_risk, neg_risk_market_id,
               coalesce(nullif(trim(group_item_title), ''), question, m.market_id) AS candidate,
               token_ids[yes_index] AS yes_token_id, end_date, m.closed,
               coalesce(r.resolved, false) AS resolved,
               CASE WHEN r.resolved THEN r.payouts[yes_index] = 1.0 END AS won,
               CASE WHEN r.resolved THEN r.payouts[yes_index] END AS yes_payout
        FROM (
            SELECT *, list_position(list_transform(outcomes, o -> lower(trim(o))), 'yes')
                      AS yes_index
            FROM {markets}
        ) m
        LEFT JOIN ({resolutions_sql(lake)}) r ON r.market_id = m.market_id
        WHERE yes_index IS NOT NULL AND token_ids[yes_index] IS NOT NULL
        ORDER BY m.market_id
        """
    ).to_arrow_table()
    without_yes_row = con.execute(
        f"""SELECT count(*) FROM {markets}
            WHERE list_position(list_transform(outcomes, o -> lower(trim(o))), 'yes') IS NULL
               AND (neg_risk_market_id IS NOT NULL OR event_id IS NOT NULL)"""
    ).fetchone()
    return rows.to_pylist(), int(without_yes_row[0]) if without_yes_row else 0


def _member(row: dict[str, Any]) -> Member:
    return Member(
        market_id=row["market_id"],
        candidate=row["candidate"],
        question=row["question"],
        yes_token_id=row["yes_token_id"],
        end_date=row["end_date"],
        closed=row["closed"],
        resolved=row["resolved"],
        won=row["won"],
        event_id=row.get("event_id"),
        event_title=row.get("event_title"),
        yes_payout=row.get("yes_payout"),
    )


def automatic_groups(rows: list[dict[str, Any]]) -> list[Group]:
    """negRisk groups by negRiskMarketID, then other multi-market events by event id."""
    by_neg_risk: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["neg_risk"] and row["neg_risk_market_id"]:
            by_neg_risk[row["neg_risk_market_id"]].append(row)
        elif row["event_id"]:
            by_event[row["event_id"]].append(row)
    groups: list[Group] = []
    for key, members in by_neg_risk.items():
        first = members[0]
        groups.append(
            Group(
                group_id=key,
                source="neg_risk",
                title=first["event_title"] or first["question"] or key,
                event_id=first["event_id"],
                members=[_member(r) for r in members],
            )
        )
    for key, members in by_event.items():
        if len(members) < 2:
            continue  # a single market is not a group of candidates
        first = members[0]
        groups.append(
            Group(
                group_id=f"event:{key}",
                source="event",
                title=first["event_title"] or key,
                event_id=key,
                members=[_member(r) for r in members],
            )
        )
    return groups


def apply_overrides(
    groups: list[Group], rows: list[dict[str, Any]], overrides: Overrides
) -> tuple[list[Group], list[str]]:
    """User groups replace or add to the automatic ones (see the module docstring)."""
    problems = list(overrides.problems)
    by_id = {g.group_id: g for g in groups if g.group_id not in overrides.exclude}
    for excluded in sorted(overrides.exclude - {g.group_id for g in groups}):
        problems.append(f"exclude: no automatic group {excluded!r}; nothing to drop")
    members_by_market = {r["market_id"]: r for r in rows}
    for override in overrides.groups:
        existing = by_id.get(override.group_id)
        if override.markets is None:
            if existing is None:
                problems.append(
                    f"group {override.group_id!r}: no automatic group with this id and no "
                    "'markets' given; skipped"
                )
                continue
            target = existing
        else:
            members: list[Member] = []
            for market_id in override.markets:
                row = members_by_market.get(market_id)
                if row is None:
                    problems.append(
                        f"group {override.group_id!r}: market {market_id} is not a Yes/No "
                        "market in raw/markets; left out"
                    )
                    continue
                members.append(_member(row))
            moved = {m.market_id for m in members}
            for other in by_id.values():  # a market belongs to one group only
                other.members = [m for m in other.members if m.market_id not in moved]
            target = Group(
                group_id=override.group_id,
                source="user",
                title=override.title or (existing.title if existing else override.group_id),
                event_id=existing.event_id if existing else None,
                members=members,
            )
            by_id[override.group_id] = target
        if override.title:
            target.title = override.title
        if override.end_date is not None:
            target.end_date_override = override.end_date
        for member in target.members:
            if member.market_id in override.labels:
                member.candidate = override.labels[member.market_id]
    kept: list[Group] = []
    for group in by_id.values():
        if len(group.members) < 2:
            if group.source == "user":
                problems.append(
                    f"group {group.group_id!r}: fewer than 2 members after overrides; skipped"
                )
            continue
        kept.append(group)
    kept.sort(key=lambda g: (g.end_date or datetime.max.replace(tzinfo=UTC), g.group_id))
    return kept, problems


def groups_table(groups: list[Group]) -> pa.Table:
    records: list[dict[str, Any]] = []
    for group in groups:
        for member in sorted(group.members, key=lambda m: m.market_id):
            records.append(
                {
                    "group_id": group.group_id,
                    "group_source": group.source,
                    "group_title": group.title,
                    "event_id": group.event_id,
                    "group_end_date": group.end_date,
                    "group_resolved": group.resolved,
                    "n_members": len(group.members),
                    "market_id": member.market_id,
                    "candidate": member.candidate,
                    "question": member.question,
                    "yes_token_id": member.yes_token_id,
                    "end_date": member.end_date,
                    "closed": member.closed,
                    "resolved": member.resolved,
                    "won": member.won,
                    "yes_payout": member.yes_payout,
                }
            )
    return pa.Table.from_pylist(records, schema=_ARROW_SCHEMA)


def build_election_groups(
    con: duckdb.DuckDBPyConnection, lake: Lake, overrides_file: Path | None
) -> GroupsReport:
    """Rebuild ``analytics/election_groups`` (one row per member market)."""
    overrides = load_overrides(overrides_file) if overrides_file else Overrides()
    rows, without_yes = _member_rows(con, lake)
    groups, problems = apply_overrides(automatic_groups(rows), rows, overrides)
    table = groups_table(groups)
    con.register("election_groups_rows", table)
    try:
        path = lake.write_single(ELECTION_GROUPS, con, "SELECT * FROM election_groups_rows")
    finally:
        con.unregister("election_groups_rows")
    by_source: dict[str, int] = defaultdict(int)
    for group in groups:
        by_source[group.source] += 1
    return GroupsReport(
        path=path,
        groups=len(groups),
        members=table.num_rows,
        by_source=dict(by_source),
        resolved_groups=sum(1 for g in groups if g.resolved),
        skipped_markets_without_yes=without_yes,
        problems=problems,
        overrides_file=overrides_file if overrides_file and overrides_file.is_file() else None,
    )


def read_groups(lake: Lake) -> list[Group]:
    """The groups written by ``build_election_groups`` (empty when not built yet)."""
    path = lake.single_file(ELECTION_GROUPS)
    if not path.exists():
        return []
    return groups_from_table(pq.read_table(path))


def groups_from_table(table: pa.Table) -> list[Group]:
    groups: dict[str, Group] = {}
    columns = {
        name: _utc_datetimes(column) if _is_utc_timestamp(column.type) else column.to_pylist()
        for name, column in zip(table.column_names, table.columns, strict=True)
    }
    names = list(columns)
    for values in zip(*columns.values(), strict=True):
        row = dict(zip(names, values, strict=True))
        group = groups.get(row["group_id"])
        if group is None:
            group = groups[row["group_id"]] = Group(
                group_id=row["group_id"],
                source=row["group_source"],
                title=row["group_title"],
                event_id=row["event_id"],
                members=[],
                end_date_override=row["group_end_date"],
            )
        group.members.append(_member(row))
    return list(groups.values())


def _is_utc_timestamp(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) and kind.tz == "UTC"


def _utc_datetimes(column: pa.ChunkedArray) -> list[datetime | None]:
    """The column's datetimes, each distinct value converted once: members of a group share
    end dates, and pyarrow's per-value conversion was most of reading the groups."""
    per_second = {"s": 1_000_000, "ms": 1_000, "us": 1}.get(column.type.unit)
    if per_second is None:  # nanoseconds: let pyarrow convert them
        return column.to_pylist()
    seen: dict[int, datetime] = {}
    out: list[datetime | None] = []
    for value in column.cast(pa.int64()).to_pylist():
        if value is None:
            out.append(None)
            continue
        moment = seen.get(value)
        if moment is None:
            moment = seen[value] = _UNIX_EPOCH + timedelta(microseconds=value * per_second)
        out.append(moment)
    return out


_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def groups_checks(groups: list[Group]) -> list[CheckOutcome]:
    """A resolved negRisk (or user) group has exactly one winner: one Yes pays 1."""
    odd = [
        g.group_id
        for g in groups
        if g.source != "event" and g.resolved and sum(1 for m in g.members if m.won) != 1
    ]
    return [
        CheckOutcome(
            "one_winner_per_resolved_group",
            not odd,
            f"{len(odd)} resolved groups without exactly one winning candidate",
            {"groups": len(odd), "examples": ", ".join(odd[:5]) or "none"},
        )
    ]
