"""What every order-fill source hands the sync: validated canonical rows and a position.

Sources (``goldsky.GoldskySource``, ``rpc.RpcSource``) address their events by an integer
*position* (unix seconds, block numbers) so the sync can keep one kind of watermark for
both. A batch covers a half-open range of positions completely; rows that fail validation
are reported with the reason and never stop the rows around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa

from polymkt_dagster.lib.core.http import RequestStats
from polymkt_dagster.lib.ingest import normalize as n

MAX_BIGINT = 2**63 - 1
EARLIEST = datetime.fromisoformat(n.EARLIEST_TIMESTAMP).replace(tzinfo=UTC).timestamp()

ORDER_FILLED_ARROW = pa.schema(
    [
        ("id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("block_number", pa.int64()),
        ("log_index", pa.int32()),
        ("transaction_hash", pa.string()),
        ("order_hash", pa.string()),
        ("maker", pa.string()),
        ("taker", pa.string()),
        ("maker_asset_id", pa.string()),
        ("taker_asset_id", pa.string()),
        ("maker_amount_filled", pa.int64()),
        ("taker_amount_filled", pa.int64()),
        ("fee", pa.int64()),
        ("exchange", pa.string()),
        ("contract_version", pa.string()),
        ("source", pa.string()),
    ]
)


@dataclass
class RejectedFill:
    where: str  # e.g. "goldsky id 0xab…_0xcd…" or "rpc block 123 log 4"
    field: str
    reason: str


class FillColumns:
    """Column buffers for canonical fills; ``add`` validates one fill and keeps or rejects it."""

    def __init__(self) -> None:
        self.columns: dict[str, list[object]] = {name: [] for name in ORDER_FILLED_ARROW.names}
        self.rejects: list[RejectedFill] = []

    def __len__(self) -> int:
        return len(self.columns["id"])

    def add(self, where: str, **row: object) -> bool:
        problem = _problem(row)
        if problem:
            self.rejects.append(RejectedFill(where, *problem))
            return False
        for name, values in self.columns.items():
            values.append(row.get(name))
        return True

    def to_table(self) -> pa.Table:
        arrays = []
        for fld in ORDER_FILLED_ARROW:
            values = self.columns[fld.name]
            if fld.name == "timestamp":
                arrays.append(pa.array(values, type=pa.int64()).cast(pa.timestamp("s", tz="UTC")))
            else:
                arrays.append(pa.array(values, type=fld.type))
        table = pa.Table.from_arrays(arrays, names=ORDER_FILLED_ARROW.names)
        return table.cast(ORDER_FILLED_ARROW)


def _problem(row: dict[str, object]) -> tuple[str, str] | None:
    ts = row.get("timestamp")
    if not isinstance(ts, int) or ts < EARLIEST or ts > 4_102_444_800:
        return "timestamp", f"timestamp {ts!r} is not a plausible unix time"
    for name in ("maker", "taker"):
        value = row.get(name)
        if not isinstance(value, str) or not n.ADDRESS_RE.fullmatch(value):
            return name, f"invalid address {value!r}"
    for name in ("transaction_hash", "order_hash"):
        value = row.get(name)
        if not isinstance(value, str) or not n.TX_HASH_RE.fullmatch(value):
            return name, f"invalid 32-byte hash {value!r}"
    for name in ("maker_asset_id", "taker_asset_id"):
        value = row.get(name)
        if not isinstance(value, str) or not n.TOKEN_ID_RE.fullmatch(value):
            return name, f"invalid asset id {value!r}"
    for name in ("maker_amount_filled", "taker_amount_filled"):
        value = row.get(name)
        if not isinstance(value, int) or not 0 < value <= MAX_BIGINT:
            return name, f"amount {value!r} is not a positive 64-bit integer"
    fee = row.get("fee")
    if fee is not None and (not isinstance(fee, int) or not 0 <= fee <= MAX_BIGINT):
        return "fee", f"fee {fee!r} is not a non-negative 64-bit integer"
    if row.get("maker_asset_id") != "0" and row.get("taker_asset_id") != "0":
        return "maker_asset_id", "neither side of the fill is USDC (asset id 0)"
    return None


def to_int(value: object) -> int | None:
    """Decimal text or int to int; None when it is neither (the validator then rejects)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and n.TOKEN_ID_RE.fullmatch(value.strip()):
        return int(value.strip())
    return None


def to_text(value: object) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


@dataclass
class FillBatch:
    """Fills with positions in [start, next_position), all of them."""

    table: pa.Table
    start: int
    next_position: int
    rejects: list[RejectedFill] = field(default_factory=list)


class FillSource(Protocol):
    """An order-fill source addressed by integer positions."""

    name: str
    stats: RequestStats
    position_unit: str  # "second" | "block"

    def position_at(self, when: datetime) -> int:
        """First position whose events happen at or after ``when``."""

    def head(self) -> int:
        """Exclusive end of the positions that are complete at the source now."""

    def time_at(self, position: int) -> datetime:
        """The time up to which events are complete when coverage ends at ``position``."""

    def fetch(self, start: int, end: int, target_rows: int) -> FillBatch:
        """All events with position in [start, p) for some start < p <= end, about
        ``target_rows`` of them (a single position is never split)."""

    def close(self) -> None: ...
