"""Order fills from the Goldsky orderbook subgraph (GraphQL ``orderFilledEvents``).

The subgraph holds the V1 exchange history (it stopped at the contract migration of
2026-04-28). Positions are unix seconds. Paging is by (timestamp, id): a page ordered by
timestamp is complete for every second before its last one; the last second is then read
by ``id_gt`` until it is exhausted, and only then does the cursor move to the next second.
Paging by ``timestamp_gt`` alone silently drops the events of a second that straddles a
page boundary, which is how public dumps of this subgraph lost fills.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.http import (
    HttpClient,
    RequestStats,
    RetryPolicy,
    SourceError,
    upstream_excerpt,
)
from polymkt_dagster.lib.ingest.sources.fill_source import (
    FillBatch,
    FillColumns,
    RejectedFill,
    to_int,
    to_text,
)

PAGE_SIZE = 1000  # The Graph's maximum `first`
FIELDS = (
    "id transactionHash timestamp orderHash maker taker makerAssetId takerAssetId "
    "makerAmountFilled takerAmountFilled fee"
)


def query_by_time(entity: str, fields: str) -> str:
    return (
        f"query Page($from: BigInt!, $to: BigInt!, $first: Int!) {{ {entity}("
        "first: $first, orderBy: timestamp, orderDirection: asc, "
        "where: {timestamp_gte: $from, timestamp_lt: $to}) { " + fields + " } }"
    )


def query_one_second(entity: str, fields: str) -> str:
    return (
        f"query Second($ts: BigInt!, $after: String!, $first: Int!) {{ {entity}("
        "first: $first, orderBy: id, orderDirection: asc, "
        "where: {timestamp: $ts, id_gt: $after}) { " + fields + " } }"
    )


QUERY_BY_TIME = query_by_time("orderFilledEvents", FIELDS)
QUERY_ONE_SECOND = query_one_second("orderFilledEvents", FIELDS)
QUERY_META = "{ _meta { block { number timestamp } hasIndexingErrors } }"
ADVICE = (
    "Check POLYMKT_GOLDSKY_ORDERBOOK_URL and the subgraph's status, then re-run: the sync "
    "resumes from the watermark saved in the lake"
)
# A subgraph whose head has not moved for this long is frozen: its newest second is final.
FROZEN_AFTER_S = 600


def _transient_graphql(document: Any) -> str | None:
    if isinstance(document, dict) and document.get("errors"):
        text = str(document["errors"])[:200]
        lowered = text.lower()
        if any(word in lowered for word in ("timeout", "indexing", "unavailable", "too busy")):
            return f"graphql error {text}"
    return None


class GoldskySource:
    name = "goldsky"
    position_unit = "second"
    # The entity paged and its fields; another entity subclasses with its own and ``_add``.
    entity = "orderFilledEvents"
    fields = FIELDS

    @classmethod
    def from_settings(cls, settings: Settings) -> GoldskySource:
        return cls(settings.goldsky_orderbook_url)

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
        now: float | None = None,
    ) -> None:
        self.http = HttpClient(url, source="goldsky", advice=ADVICE, retry=retry, secrets=[url])
        self.page_size = page_size
        self._now = now
        self._by_time = query_by_time(self.entity, self.fields)
        self._one_second = query_one_second(self.entity, self.fields)

    @property
    def stats(self) -> RequestStats:
        return self.http.stats

    def close(self) -> None:
        self.http.close()

    # ---- positions -------------------------------------------------------------------
    def position_at(self, when: datetime) -> int:
        return int(when.timestamp())

    def time_at(self, position: int) -> datetime:
        return datetime.fromtimestamp(position, tz=UTC)

    def head(self) -> int:
        document = self._query(QUERY_META, {}, cursor="_meta")
        try:
            block_time = int(document["_meta"]["block"]["timestamp"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError("goldsky", "_meta has no block timestamp", advice=ADVICE) from exc
        now = self._now if self._now is not None else time.time()
        # The newest indexed second may still receive events of the next block with the
        # same timestamp while the subgraph is live; once it is frozen it is final.
        return block_time + 1 if now - block_time > FROZEN_AFTER_S else block_time

    # ---- fetching --------------------------------------------------------------------
    @staticmethod
    def _new_columns() -> Any:
        return FillColumns()

    def fetch(self, start: int, end: int, target_rows: int) -> FillBatch:
        columns = self._new_columns()
        position = start
        while position < end and len(columns) < target_rows:
            page = self._events(
                self._by_time,
                {"from": str(position), "to": str(end), "first": self.page_size},
                cursor=f"timestamp>={position}",
            )
            full = len(page) >= self.page_size
            # Only rows inside the asked range count: a row repeated from another page (a
            # server bug seen in the wild) must not move the cursor.
            page = [e for e in page if position <= _timestamp(e) < end]
            if not full:
                self._add(columns, page)
                position = end
                break
            last_second = max(_timestamp(e) for e in page)
            # Seconds before the page's last one are complete; the last one may be cut.
            self._add(columns, [e for e in page if _timestamp(e) < last_second])
            self._read_second(columns, last_second)
            position = last_second + 1
        return FillBatch(columns.to_table(), start, position, columns.rejects)

    def _read_second(self, columns: Any, second: int) -> None:
        after = ""
        while True:
            page = self._events(
                self._one_second,
                {"ts": str(second), "after": after, "first": self.page_size},
                cursor=f"timestamp={second}, id>{after or '(start)'}",
            )
            full = len(page) >= self.page_size
            fresh = [e for e in page if _timestamp(e) == second and str(e.get("id")) > after]
            self._add(columns, fresh)
            if not full or not fresh:
                return
            # The next page starts after the last row in the server's id order. Not the
            # largest id seen: a stray row repeated from another page may carry a larger id,
            # and jumping to it would skip everything in between. Too small a cursor only
            # re-reads rows, which the merge deduplicates.
            last = str(page[-1].get("id"))
            after = last if last > after else max(str(e.get("id")) for e in fresh)

    def _events(self, query: str, variables: dict[str, Any], *, cursor: str) -> list[Any]:
        document = self._query(query, variables, cursor=cursor)
        events = document.get(self.entity) if isinstance(document, dict) else None
        if not isinstance(events, list):
            raise SourceError(
                "goldsky",
                f"answer has no {self.entity} list",
                cursor=cursor,
                advice=ADVICE,
            )
        return events

    def _query(self, query: str, variables: dict[str, Any], *, cursor: str) -> Any:
        document, _ = self.http.post_json(
            "",
            {"query": query, "variables": variables},
            cursor=cursor,
            transient=_transient_graphql,
        )
        if not isinstance(document, dict):
            raise SourceError("goldsky", "answer is not a JSON object", cursor=cursor)
        if document.get("errors"):
            raise SourceError(
                "goldsky",
                f"GraphQL errors {upstream_excerpt(str(document['errors']), limit=300)}",
                cursor=cursor,
                advice=ADVICE,
            )
        data = document.get("data")
        if not isinstance(data, dict):
            raise SourceError("goldsky", "answer has no data object", cursor=cursor)
        return data

    @staticmethod
    def _add(columns: Any, events: list[Any]) -> None:
        for event in events:
            if not isinstance(event, dict):
                columns.rejects.append(
                    RejectedFill(f"goldsky event {str(event)[:60]!r}", "(record)", "not an object")
                )
                continue
            event_id = to_text(event.get("id"))
            tx = to_text(event.get("transactionHash"))
            order_hash = to_text(event.get("orderHash"))
            columns.add(
                f"goldsky id {event_id}",
                # The subgraph's id is txHash_orderHash; rebuilt from the parts so rows from
                # the chain (same rule) deduplicate against it.
                id=f"{tx}_{order_hash}" if tx and order_hash else event_id,
                timestamp=to_int(event.get("timestamp")),
                block_number=None,
                log_index=None,
                transaction_hash=tx,
                order_hash=order_hash,
                maker=to_text(event.get("maker")),
                taker=to_text(event.get("taker")),
                maker_asset_id=_asset(event.get("makerAssetId")),
                taker_asset_id=_asset(event.get("takerAssetId")),
                maker_amount_filled=to_int(event.get("makerAmountFilled")),
                taker_amount_filled=to_int(event.get("takerAmountFilled")),
                fee=to_int(event.get("fee")) if event.get("fee") is not None else None,
                exchange=None,
                contract_version="v1",
                source="goldsky",
            )


def _asset(value: object) -> str | None:
    number = to_int(value)
    return str(number) if number is not None else None


def _timestamp(event: Any) -> int:
    value = to_int(event.get("timestamp")) if isinstance(event, dict) else None
    if value is None:
        raise SourceError("goldsky", f"event without a timestamp: {str(event)[:120]}")
    return value
