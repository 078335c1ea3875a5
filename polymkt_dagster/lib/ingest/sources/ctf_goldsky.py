"""CTF position events from Polymarket's Goldsky activity subgraph (history before 2026-04-28).

The activity subgraph (Polymarket/polymarket-subgraph ``activity-subgraph/schema.graphql``)
keeps four of the events as entities, each with id ``<txHash>_<logIndex in hex>``
(``common/utils/getEventKey.ts``):

    splits              id timestamp stakeholder condition amount
    merges              id timestamp stakeholder condition amount
    redemptions         id timestamp redeemer condition indexSets payout
    negRiskConversions  id timestamp stakeholder negRiskMarketId amount indexSet questionCount

What it does not keep, and so what rows from it lack (NULL): the block number, the emitting
contract (a split through the NegRiskAdapter and a direct ConditionalTokens split are both a
``Split``), the collateral, the parent collection, a split's partition, the NegRiskAdapter
redemption's per-outcome ``amounts`` (its ``indexSets`` is always ``[1, 2]``), and
``ConditionResolution`` altogether. Its mappings also skip the events whose stakeholder is an
exchange, the NegRiskAdapter or an AMM, and splits/merges on conditions it did not see prepared
(``src/ConditionalTokensMapping.ts``, ``src/NegRiskAdapterMapping.ts``). The chain
(``ctf_events.CtfRpcSource``) is therefore the complete source; the subgraph serves history
where a node's ``eth_getLogs`` is too slow or too expensive. Ids are rebuilt with the decimal
log index, so a row seen by both sources is one row (the stored one wins).

Each entity is paged by (timestamp, id) like the fills (``goldsky.GoldskySource``); a batch
covers the seconds every entity has completed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.http import RequestStats, RetryPolicy
from polymkt_dagster.lib.ingest.sources.ctf_events import CtfColumns
from polymkt_dagster.lib.ingest.sources.fill_source import FillBatch, RejectedFill, to_int, to_text
from polymkt_dagster.lib.ingest.sources.goldsky import GoldskySource

ADVICE = (
    "Check POLYMKT_GOLDSKY_ACTIVITY_URL and the subgraph's status, then re-run: the sync "
    "resumes from the watermark saved in the lake"
)


class _EntityReader(GoldskySource):
    """One activity-subgraph entity, paged by (timestamp, id) into ``CtfColumns``."""

    event = ""

    @staticmethod
    def _new_columns() -> Any:
        return CtfColumns()

    def _add(self, columns: Any, events: list[Any]) -> None:  # type: ignore[override]
        for event in events:
            if not isinstance(event, dict):
                where = f"goldsky {self.entity} {str(event)[:60]!r}"
                columns.rejects.append(RejectedFill(where, "(record)", "not an object"))
                continue
            raw_id = to_text(event.get("id")) or ""
            tx, _, log_hex = raw_id.partition("_")
            try:
                log_index: int | None = int(log_hex, 16)
            except ValueError:
                log_index = None
            columns.add(
                f"goldsky {self.entity} id {raw_id}",
                timestamp=to_int(event.get("timestamp")),
                block_number=None,
                log_index=log_index,
                transaction_hash=tx,
                contract=None,
                event=self.event,
                source="goldsky",
                **self._fields(event),
            )

    def _fields(self, event: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class _Splits(_EntityReader):
    entity, event = "splits", "PositionSplit"
    fields = "id timestamp stakeholder condition amount"

    def _fields(self, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "stakeholder": to_text(event.get("stakeholder")),
            "condition_id": to_text(event.get("condition")),
            "amount": to_int(event.get("amount")),
        }


class _Merges(_Splits):
    entity, event = "merges", "PositionsMerge"


class _Redemptions(_EntityReader):
    entity, event = "redemptions", "PayoutRedemption"
    fields = "id timestamp redeemer condition indexSets payout"

    def _fields(self, event: dict[str, Any]) -> dict[str, Any]:
        sets = event.get("indexSets")
        index_sets = [str(to_int(s)) for s in sets] if isinstance(sets, list) else None
        return {
            "stakeholder": to_text(event.get("redeemer")),
            "condition_id": to_text(event.get("condition")),
            "index_sets": index_sets,
            "payout": to_int(event.get("payout")),
        }


class _Conversions(_EntityReader):
    entity, event = "negRiskConversions", "PositionsConverted"
    fields = "id timestamp stakeholder negRiskMarketId amount indexSet"

    def _fields(self, event: dict[str, Any]) -> dict[str, Any]:
        index_set = to_int(event.get("indexSet"))
        return {
            "stakeholder": to_text(event.get("stakeholder")),
            "neg_risk_market_id": to_text(event.get("negRiskMarketId")),
            "index_sets": [str(index_set)] if index_set is not None else None,
            "amount": to_int(event.get("amount")),
        }


class CtfGoldskySource:
    """The activity subgraph's four entities as one position source (unix seconds)."""

    name = "goldsky"
    position_unit = "second"

    @classmethod
    def from_settings(cls, settings: Settings) -> CtfGoldskySource:
        return cls(settings.goldsky_activity_url)

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy | None = None,
        page_size: int = 1000,
        now: float | None = None,
    ) -> None:
        self.readers: list[_EntityReader] = [
            cls(url, retry=retry, page_size=page_size, now=now)
            for cls in (_Splits, _Merges, _Redemptions, _Conversions)
        ]
        for reader in self.readers:
            reader.http.advice = ADVICE
        # A batch ends where the first entity stopped, so rows read past it come again in the
        # next batch: each rejected row is reported once.
        self._reported: set[tuple[str, str]] = set()

    @property
    def stats(self) -> RequestStats:
        total = RequestStats()
        for reader in self.readers:
            total.requests += reader.stats.requests
            total.retries += reader.stats.retries
        return total

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def position_at(self, when: datetime) -> int:
        return self.readers[0].position_at(when)

    def time_at(self, position: int) -> datetime:
        return self.readers[0].time_at(position)

    def head(self) -> int:
        return self.readers[0].head()  # one subgraph: one indexing head for every entity

    def fetch(self, start: int, end: int, target_rows: int) -> FillBatch:
        """Each entity from ``start``; the batch ends where the first entity stopped, and the
        rows other entities read past it are left for the next batch (read again, merged once).
        """
        share = max(1, target_rows // len(self.readers))
        batches = [reader.fetch(start, end, share) for reader in self.readers]
        stop = min(b.next_position for b in batches)
        combined = pa.concat_tables([b.table for b in batches])
        limit = pa.scalar(stop * 1_000_000, type=pa.timestamp("us", tz="UTC"))
        combined = combined.filter(pc.less(combined["timestamp"], limit))
        rejects = []
        for reject in (r for b in batches for r in b.rejects):
            if (reject.where, reject.field) not in self._reported:
                self._reported.add((reject.where, reject.field))
                rejects.append(reject)
        return FillBatch(combined, start, stop, rejects)
