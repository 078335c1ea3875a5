"""Local Polymarket sources: Gamma keyset API, Goldsky GraphQL, Polygon JSON-RPC.

Real HTTP servers (stdlib ``http.server`` on 127.0.0.1, ephemeral ports, a thread per
request) that speak the shapes the sync meets in production, fed from the sample generator's
data and the recorded payloads vendored in ``polymkt_local/recorded``:

- ``GammaServer``: ``/markets/keyset`` (at most 100 a page, open markets only unless
  ``closed`` is given) and ``/events/keyset`` (500), opaque ``next_cursor`` followed with
  ``after_cursor`` and absent on the last page; ``cursor=`` is ignored (page 1 again, as
  upstream); ``id`` / ``clob_token_ids`` filters, at most 40 values a request.
- ``GoldskyServer``: GraphQL ``orderFilledEvents`` with ``first`` (max 1000), ``orderBy``
  timestamp|id, ``where`` on timestamp/id, and ``_meta``. Ties within a second are served in
  an order that is *not* by id, as a real store may, so paging by timestamp alone loses rows.
- ``RpcServer``: ``eth_blockNumber``, ``eth_getBlockByNumber`` (2 s blocks), ``eth_getLogs``
  over the exchange contracts with V1/V2 ``OrderFilled`` encoding, refusing ranges wider than
  ``max_block_range`` with the -32005 error real nodes send, and JSON-RPC batches; with a
  ``CtfStore`` also the ConditionalTokens / NegRiskAdapter position events (real topic0s,
  eth-abi encoded data, docs/architecture.md §3.1).
- ``ActivityServer``: the Goldsky activity subgraph's ``splits``, ``merges``,
  ``redemptions`` and ``negRiskConversions`` over the same ``CtfStore``.

Every server can be told to answer the next requests with 429 (Retry-After), 500, a stall
past the client's timeout, or a truncated body, and to repeat items across pages.
``FillStore.expected_ids()`` is the ground truth a test compares the lake with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from polymkt_dagster.lib.core.schemas import EXCHANGE_CONTRACTS
from polymkt_dagster.lib.ingest.sources.ctf_events import (
    CONDITIONAL_TOKENS,
    NEG_RISK_ADAPTER,
    encode_ctf_log,
)
from polymkt_dagster.lib.ingest.sources.rpc import V1_ORDER_FILLED, V2_ORDER_FILLED

from .local_http import LocalHTTPServer

V1_CTF, V1_NEG, V2_CTF, V2_NEG = list(EXCHANGE_CONTRACTS)
V1_TO_V2 = {V1_CTF: V2_CTF, V1_NEG: V2_NEG}
BLOCK_TIME_S = 2
BASE_BLOCK = 60_000_000

# ---------------------------------------------------------------------------------------
# Fault injection shared by the servers
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    kind: str  # "status" | "stall" | "truncate"
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0


@dataclass
class Faults:
    queue: deque[Fault] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> Fault | None:
        with self.lock:
            return self.queue.popleft() if self.queue else None


class _JsonServer(LocalHTTPServer):
    """Base: lifecycle, request log, faults, JSON answers. Subclasses implement ``answer``."""

    def __init__(self) -> None:
        super().__init__()
        self.faults = Faults()
        self.requests: list[tuple[str, int]] = []  # (path with query, status)
        self.delay_s = 0.0  # added to every answer (to make a sync slow enough to kill)
        self._lock = threading.Lock()

    # ---- controls --------------------------------------------------------------------
    def fail_next(self, *statuses: int, retry_after: str | None = None) -> None:
        for status in statuses:
            self.faults.queue.append(Fault("status", status, retry_after))

    def stall_next(self, count: int, seconds: float) -> None:
        for _ in range(count):
            self.faults.queue.append(Fault("stall", seconds=seconds))

    def truncate_next(self, count: int = 1) -> None:
        for _ in range(count):
            self.faults.queue.append(Fault("truncate"))

    @property
    def failed_requests(self) -> int:
        return sum(1 for _, status in self.requests if status != 200)

    @property
    def base_url(self) -> str:
        return self.origin

    # ---- HTTP ------------------------------------------------------------------------
    def answer(self, path: str, query: list[tuple[str, str]], body: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def handle(self, request: BaseHTTPRequestHandler, raw: bytes | None) -> None:
        parts = urlsplit(request.path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        fault = self.faults.next()
        if self.delay_s:
            time.sleep(self.delay_s)
        headers: dict[str, str] = {}
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "status":
            status, document = fault.status, {"error": f"injected {fault.status}"}
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
        else:
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                status, document = 400, {"error": "body is not JSON"}
            else:
                status, document = self.answer(parts.path.rstrip("/") or "/", query, body)
        data = json.dumps(document).encode()
        if fault is not None and fault.kind == "truncate":
            data = data[: max(1, len(data) // 2)]  # a body cut off mid-stream
        with self._lock:
            self.requests.append((request.path, status))
        self.send_json(request, status, data, headers)


# ---------------------------------------------------------------------------------------
# Fills: one ground truth for both fill servers
# ---------------------------------------------------------------------------------------


def _hex32(values: Iterable[str]) -> list[str]:
    return ["0x" + hashlib.sha256(v.encode()).hexdigest() for v in values]


class FillStore:
    """Canonical fills sorted by timestamp, with order hashes, blocks and log indexes.

    Timestamps are moved by ``shift_s`` (so a year of sample data can end "now") and rounded
    down to the 2 s block grid, so the subgraph and the chain agree on every fill's time.
    Fills at or after ``v2_from`` are emitted by the V2 contracts (V2 log encoding, V2
    exchange as the taker of the taker-order row).
    """

    def __init__(self, table: pa.Table, *, shift_s: int = 0, v2_from: int | None = None):
        ts = table.column("timestamp").to_numpy().astype(np.int64) + shift_s
        self.t0 = int(ts.min()) - int(ts.min()) % BLOCK_TIME_S - 10 * BLOCK_TIME_S
        ts = ts - (ts - self.t0) % BLOCK_TIME_S
        order = np.argsort(ts, kind="stable")
        self.timestamp = ts[order]
        cols = {name: table.column(name).take(pa.array(order)).to_pylist()
                for name in ("maker", "makerAssetId", "makerAmountFilled", "taker",
                             "takerAssetId", "takerAmountFilled", "transactionHash")}  # fmt: skip
        n = len(self.timestamp)
        self.tx = [t.lower() for t in cols["transactionHash"]]
        self.maker = [m.lower() for m in cols["maker"]]
        self.taker = [t.lower() for t in cols["taker"]]
        self.maker_asset = [str(a) for a in cols["makerAssetId"]]
        self.taker_asset = [str(a) for a in cols["takerAssetId"]]
        self.maker_amount = [int(a) for a in cols["makerAmountFilled"]]
        self.taker_amount = [int(a) for a in cols["takerAmountFilled"]]
        self.order_hash = _hex32(f"{self.tx[i]}|{i}" for i in range(n))
        self.fee = [0] * n
        self.block = ((self.timestamp - self.t0) // BLOCK_TIME_S + BASE_BLOCK).astype(np.int64)
        exchange_of_tx: dict[str, str] = {}
        for tx, taker in zip(self.tx, self.taker, strict=True):
            if taker in V1_TO_V2:
                exchange_of_tx[tx] = taker
        self.exchange = [exchange_of_tx.get(tx, V1_CTF) for tx in self.tx]
        self.v2 = np.zeros(n, dtype=bool)
        if v2_from is not None:
            self.v2 = self.timestamp >= v2_from
            for i in np.flatnonzero(self.v2):
                self.exchange[i] = V1_TO_V2[self.exchange[i]]
                if self.taker[i] in V1_TO_V2:
                    self.taker[i] = V1_TO_V2[self.taker[i]]
        self.log_index = np.zeros(n, dtype=np.int64)
        previous_block, counter = -1, 0
        for i, block in enumerate(self.block):
            counter = counter + 1 if block == previous_block else 0
            previous_block = block
            self.log_index[i] = counter
        self.ids = [f"{self.tx[i]}_{self.order_hash[i]}" for i in range(n)]
        # A storage order inside each second that is not the id order.
        salt = np.array([int(h[2:10], 16) for h in self.order_hash], dtype=np.int64)
        self.serve_order = np.lexsort((salt, self.timestamp))

    def __len__(self) -> int:
        return len(self.timestamp)

    @classmethod
    def from_csv(cls, path: Path, *, end_at: float | None = None, **kwargs: Any) -> FillStore:
        """The fills of an orderFilled.csv; ``end_at`` shifts them so the last lands there."""
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "timestamp": pa.int64(),
                    "makerAssetId": pa.string(),
                    "takerAssetId": pa.string(),
                    "makerAmountFilled": pa.int64(),
                    "takerAmountFilled": pa.int64(),
                }
            ),
        )
        if end_at is not None:
            kwargs["shift_s"] = int(end_at) - int(table.column("timestamp").to_numpy().max())
        return cls(table, **kwargs)

    @classmethod
    def from_batches(cls, batches: Iterable[pa.RecordBatch], **kwargs: Any) -> FillStore:
        return cls(pa.Table.from_batches(list(batches)), **kwargs)

    def expected_ids(self, start: int | None = None, end: int | None = None) -> set[str]:
        lo = 0 if start is None else int(np.searchsorted(self.timestamp, start, "left"))
        hi = len(self) if end is None else int(np.searchsorted(self.timestamp, end, "left"))
        return set(self.ids[lo:hi])

    def block_timestamp(self, block: int) -> int:
        return self.t0 + (block - BASE_BLOCK) * BLOCK_TIME_S

    def subgraph_event(self, i: int) -> dict[str, Any]:
        return {
            "id": self.ids[i],
            "transactionHash": self.tx[i],
            "timestamp": str(int(self.timestamp[i])),
            "orderHash": self.order_hash[i],
            "maker": self.maker[i],
            "taker": self.taker[i],
            "makerAssetId": self.maker_asset[i],
            "takerAssetId": self.taker_asset[i],
            "makerAmountFilled": str(self.maker_amount[i]),
            "takerAmountFilled": str(self.taker_amount[i]),
            "fee": str(self.fee[i]),
        }

    def log(self, i: int) -> dict[str, Any]:
        def word(value: int) -> str:
            return f"{value:064x}"

        def topic_address(address: str) -> str:
            return "0x" + "0" * 24 + address[2:]

        if self.v2[i]:
            buys = self.maker_asset[i] == "0"
            token = int(self.taker_asset[i] if buys else self.maker_asset[i])
            words = [0 if buys else 1, token, self.maker_amount[i], self.taker_amount[i],
                     self.fee[i], 0, 0]  # fmt: skip
            topic0 = V2_ORDER_FILLED
        else:
            words = [int(self.maker_asset[i]), int(self.taker_asset[i]), self.maker_amount[i],
                     self.taker_amount[i], self.fee[i]]  # fmt: skip
            topic0 = V1_ORDER_FILLED
        block = int(self.block[i])
        return {
            "address": self.exchange[i],
            "topics": [
                topic0,
                self.order_hash[i],
                topic_address(self.maker[i]),
                topic_address(self.taker[i]),
            ],
            "data": "0x" + "".join(word(w) for w in words),
            "blockNumber": hex(block),
            "blockHash": "0x" + hashlib.sha256(str(block).encode()).hexdigest(),
            "transactionHash": self.tx[i],
            "transactionIndex": "0x0",
            "logIndex": hex(int(self.log_index[i])),
            "removed": False,
        }


def burst_fills(count: int, second: int, token: str, seed: int = 3) -> pa.Table:
    """``count`` fills all in one second (a busy block), in orderFilled.csv's columns."""
    rng = random.Random(seed)

    def address() -> str:
        return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40))

    rows = []
    for i in range(count):
        tx = "0x" + hashlib.sha256(f"burst{seed}|{i // 3}".encode()).hexdigest()
        taker_side = i % 3 == 2
        rows.append(
            {
                "timestamp": second,
                "maker": address(),
                "makerAssetId": "0" if i % 2 else token,
                "makerAmountFilled": 1_000_000 + i,
                "taker": V1_CTF if taker_side else address(),
                "takerAssetId": token if i % 2 else "0",
                "takerAmountFilled": 2_000_000 + i,
                "transactionHash": tx,
            }
        )
    return pa.Table.from_pylist(rows)


# ---------------------------------------------------------------------------------------
# CTF position events (docs/architecture.md §3.1)
# ---------------------------------------------------------------------------------------

USDC_E = "0x2791bca1f2de4661ed88a30c99a7a9449aa84174"
# Which activity-subgraph entity keeps an event (None: the subgraph has no such entity).
ACTIVITY_ENTITY = {
    "PositionSplit": "splits",
    "PositionsMerge": "merges",
    "PayoutRedemption": "redemptions",
    "PositionsConverted": "negRiskConversions",
}


def ctf_event_rows(
    count: int, *, first_block: int, last_block: int, seed: int = 11
) -> list[dict[str, Any]]:
    """``count`` canonical ctf_events rows (no timestamp) spread over the block range, cycling
    through all eight (contract, event) kinds; log indexes start at 500 so they never meet the
    fills' in a block."""
    rng = random.Random(seed)

    def address() -> str:
        return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40))

    def h32(text: str) -> str:
        return "0x" + hashlib.sha256(text.encode()).hexdigest()

    kinds = [
        ("conditional_tokens", "PositionSplit"), ("conditional_tokens", "PositionsMerge"),
        ("conditional_tokens", "PayoutRedemption"), ("conditional_tokens", "ConditionResolution"),
        ("neg_risk_adapter", "PositionSplit"), ("neg_risk_adapter", "PositionsMerge"),
        ("neg_risk_adapter", "PositionsConverted"), ("neg_risk_adapter", "PayoutRedemption"),
    ]  # fmt: skip
    span = max(1, last_block - first_block)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        contract, event = kinds[i % len(kinds)]
        block = first_block + (i * span) // max(1, count)
        row: dict[str, Any] = {
            "block_number": block,
            "log_index": 500 + i % 7,
            "transaction_hash": h32(f"ctf{seed}|{i}"),
            "contract": contract,
            "event": event,
            "stakeholder": address(),
            "condition_id": h32(f"condition{i % 13}"),
        }
        amount = rng.randint(1, 5_000) * 1_000_000
        if event == "ConditionResolution":
            row.update(question_id=h32(f"question{i % 13}"), outcome_slot_count=2,
                       payout_numerators=rng.choice([[1, 0], [0, 1], [1, 1]]))  # fmt: skip
        elif event == "PositionsConverted":
            row.update(condition_id=None, neg_risk_market_id=h32(f"market{i % 5}")[:-2] + "00",
                       index_sets=[str(rng.randint(1, 7))], amount=amount)  # fmt: skip
        elif contract == "conditional_tokens":
            row.update(collateral_token=USDC_E, parent_collection_id="0x" + "0" * 64,
                       index_sets=["1", "2"])  # fmt: skip
            row["payout" if event == "PayoutRedemption" else "amount"] = amount
        elif event == "PayoutRedemption":
            row.update(amounts=[amount, 0], payout=amount)
        else:
            row["amount"] = amount
        rows.append(row)
    return rows


class CtfStore:
    """CTF position events on the FillStore's block grid, as logs and as subgraph entities."""

    def __init__(self, rows: list[dict[str, Any]], block_timestamp: Any) -> None:
        self.rows = sorted(rows, key=lambda r: (r["block_number"], r["log_index"]))
        self.block = np.array([r["block_number"] for r in self.rows], dtype=np.int64)
        self.timestamp = np.array([block_timestamp(int(b)) for b in self.block], dtype=np.int64)
        self.logs = [encode_ctf_log(r) for r in self.rows]
        self.ids = [f"{r['transaction_hash']}_{r['log_index']}" for r in self.rows]

    @classmethod
    def over(cls, store: FillStore, count: int, seed: int = 11) -> CtfStore:
        first = int(store.block.min()) if len(store) else BASE_BLOCK
        last = int(store.block.max()) if len(store) else BASE_BLOCK + 1000
        rows = ctf_event_rows(count, first_block=first, last_block=last, seed=seed)
        return cls(rows, store.block_timestamp)

    def __len__(self) -> int:
        return len(self.rows)

    def expected_ids(self, start: int | None = None, end: int | None = None) -> set[str]:
        lo = 0 if start is None else int(np.searchsorted(self.timestamp, start, "left"))
        hi = len(self) if end is None else int(np.searchsorted(self.timestamp, end, "left"))
        return set(self.ids[lo:hi])

    def logs_in(self, first: int, last: int) -> list[dict[str, Any]]:
        lo = int(np.searchsorted(self.block, first, "left"))
        hi = int(np.searchsorted(self.block, last, "right"))
        return self.logs[lo:hi]

    def entity_rows(self, entity: str) -> list[tuple[int, dict[str, Any]]]:
        """(timestamp, entity) of what the activity subgraph keeps, in a storage order."""
        found = []
        for ts, row in zip(self.timestamp, self.rows, strict=True):
            if ACTIVITY_ENTITY.get(row["event"]) != entity:
                continue
            found.append((int(ts), _activity_entity(row)))
        # stored by a salted key within each second: not the id order
        found.sort(key=lambda p: (p[0], hashlib.md5(p[1]["id"].encode()).hexdigest()))
        return found


def _activity_entity(row: dict[str, Any]) -> dict[str, Any]:
    entity: dict[str, Any] = {"id": f"{row['transaction_hash']}_{hex(row['log_index'])}"}
    event = row["event"]
    if event == "PayoutRedemption":
        entity.update(
            redeemer=row["stakeholder"],
            condition=row["condition_id"],
            indexSets=row.get("index_sets") or ["1", "2"],
            payout=str(row["payout"]),
        )
    elif event == "PositionsConverted":
        entity.update(stakeholder=row["stakeholder"], negRiskMarketId=row["neg_risk_market_id"],
                      amount=str(row["amount"]), indexSet=row["index_sets"][0])  # fmt: skip
    else:
        entity.update(stakeholder=row["stakeholder"], condition=row["condition_id"],
                      amount=str(row["amount"]))  # fmt: skip
    return entity


class _SubgraphServer(_JsonServer):
    """What every graph-node subgraph answers alike: the POST body, ``_meta`` with the
    indexing head (``head_timestamp``, which a test or bench may move) and the page size
    limit; ``events`` answers the entity query itself."""

    head_timestamp = 0

    def answer(self, path: str, query: list[tuple[str, str]], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return 400, {"errors": [{"message": "expected a GraphQL POST body"}]}
        text, variables = body["query"], body.get("variables") or {}
        if "_meta" in text:
            return 200, {"data": {"_meta": {"block": {"number": 1, "timestamp":
                         self.head_timestamp}, "hasIndexingErrors": False}}}  # fmt: skip
        first = int(variables.get("first", 100))
        if first > 1000:
            return 200, {"errors": [{"message": "The `first` argument must be between 0 and 1000"}]}
        return self.events(text, variables, first)

    def events(self, text: str, variables: dict[str, Any], first: int) -> tuple[int, Any]:
        raise NotImplementedError


class ActivityServer(_SubgraphServer):
    """The activity subgraph's splits/merges/redemptions/negRiskConversions, like graph-node:
    the two query shapes the sync sends (by timestamp; one second by id) and ``_meta``."""

    def __init__(self, ctf: CtfStore, *, head_timestamp: int | None = None) -> None:
        super().__init__()
        self.ctf = ctf
        self.entities = {e: ctf.entity_rows(e) for e in set(ACTIVITY_ENTITY.values())}
        last = int(ctf.timestamp.max()) if len(ctf) else 0
        self.head_timestamp = head_timestamp if head_timestamp is not None else last

    def events(self, text: str, variables: dict[str, Any], first: int) -> tuple[int, Any]:
        entity = next((e for e in self.entities if f"{{ {e}(" in text), None)
        if entity is None:
            return 200, {"errors": [{"message": "unknown field"}]}
        rows = self.entities[entity]
        if "orderBy: id" in text:
            second, after = int(variables["ts"]), str(variables["after"])
            chosen = sorted((e for ts, e in rows if ts == second and e["id"] > after),
                            key=lambda e: e["id"])[:first]  # fmt: skip
        else:
            start, end = int(variables["from"]), int(variables["to"])
            chosen = [e for ts, e in rows if start <= ts < end][:first]
        timestamps = {e["id"]: ts for ts, e in rows}
        return 200, {"data": {entity: [{**e, "timestamp": str(timestamps[e["id"]])}
                                       for e in chosen]}}  # fmt: skip


# ---------------------------------------------------------------------------------------
# Goldsky GraphQL
# ---------------------------------------------------------------------------------------


class GoldskyServer(_SubgraphServer):
    """Answers the two query shapes the sync sends (and ``_meta``), like graph-node."""

    def __init__(self, store: FillStore, *, duplicate_across_pages: bool = False) -> None:
        super().__init__()
        self.store = store
        self.duplicate_across_pages = duplicate_across_pages
        self.served_ts = store.timestamp[store.serve_order]
        self._last_page_tail: dict[str, Any] | None = None
        self.head_timestamp = int(store.timestamp.max()) if len(store) else 0

    def events(self, text: str, variables: dict[str, Any], first: int) -> tuple[int, Any]:
        if "orderFilledEvents" not in text:
            return 200, {"errors": [{"message": "unknown field"}]}
        if "orderBy: id" in text:
            events = self._one_second(int(variables["ts"]), str(variables["after"]), first)
        else:
            events = self._by_time(int(variables["from"]), int(variables["to"]), first)
        if self.duplicate_across_pages and self._last_page_tail and events:
            events = [self._last_page_tail, *events]  # a row the previous page also had
        if events:
            self._last_page_tail = events[-1]
        return 200, {"data": {"orderFilledEvents": events}}

    def _by_time(self, start: int, end: int, first: int) -> list[dict[str, Any]]:
        lo = int(np.searchsorted(self.served_ts, start, "left"))
        hi = int(np.searchsorted(self.served_ts, end, "left"))
        picked = self.store.serve_order[lo : min(hi, lo + first)]
        return [self.store.subgraph_event(int(i)) for i in picked]

    def _one_second(self, second: int, after: str, first: int) -> list[dict[str, Any]]:
        lo = int(np.searchsorted(self.store.timestamp, second, "left"))
        hi = int(np.searchsorted(self.store.timestamp, second, "right"))
        ids = sorted((self.store.ids[i], i) for i in range(lo, hi))
        chosen = [i for fill_id, i in ids if fill_id > after][:first]
        return [self.store.subgraph_event(i) for i in chosen]


# ---------------------------------------------------------------------------------------
# Polygon JSON-RPC
# ---------------------------------------------------------------------------------------


class RpcServer(_JsonServer):
    def __init__(
        self,
        store: FillStore,
        *,
        max_block_range: int = 5_000,
        max_results: int = 10_000,
        latest_block: int | None = None,
        ctf: CtfStore | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.ctf = ctf  # CTF position events, served to eth_getLogs on their contracts
        self.max_block_range = max_block_range
        self.max_results = max_results
        last = int(store.block.max()) if len(store) else BASE_BLOCK
        self.latest_block = latest_block if latest_block is not None else last + 100
        self.get_logs_calls = 0
        self.refused_ranges = 0
        self.extra_logs: dict[int, list[dict[str, Any]]] = {}  # block -> raw logs to add

    def answer(self, path: str, query: list[tuple[str, str]], body: Any) -> tuple[int, Any]:
        if isinstance(body, list):
            return 200, [self._one(item) for item in body]
        if not isinstance(body, dict):
            return 400, {"jsonrpc": "2.0", "id": None,
                         "error": {"code": -32700, "message": "parse error"}}  # fmt: skip
        return 200, self._one(body)

    def _one(self, call: dict[str, Any]) -> dict[str, Any]:
        method, params, call_id = call.get("method"), call.get("params") or [], call.get("id")

        def ok(result: Any) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": call_id, "result": result}

        def error(code: int, message: str) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": call_id, "error": {"code": code, "message": message}}

        if method == "eth_blockNumber":
            return ok(hex(self.latest_block))
        if method == "eth_getBlockByNumber":
            block = int(params[0], 16)
            if block > self.latest_block or block < 0:
                return ok(None)
            return ok({"number": hex(block),
                       "timestamp": hex(self.store.block_timestamp(block))})  # fmt: skip
        if method == "eth_getLogs":
            self.get_logs_calls += 1
            query = params[0]
            first, last = int(query["fromBlock"], 16), int(query["toBlock"], 16)
            if last - first + 1 > self.max_block_range:
                self.refused_ranges += 1
                return error(-32005, f"block range too large: max {self.max_block_range}")
            addresses = {a.lower() for a in query.get("address") or []}
            topics = set((query.get("topics") or [[]])[0] or [])
            lo = int(np.searchsorted(self.store.block, first, "left"))
            hi = int(np.searchsorted(self.store.block, last, "right"))
            wants_ctf = self.ctf is not None and (
                not addresses or bool(addresses & {CONDITIONAL_TOKENS, NEG_RISK_ADAPTER})
            )
            wants_fills = not addresses or bool(addresses - {CONDITIONAL_TOKENS, NEG_RISK_ADAPTER})
            ctf_logs = self.ctf.logs_in(first, last) if wants_ctf and self.ctf else []
            if (hi - lo if wants_fills else 0) + len(ctf_logs) > self.max_results:
                self.refused_ranges += 1
                return error(-32005, f"query returned more than {self.max_results} results")
            logs = [self.store.log(i) for i in range(lo, hi)] if wants_fills else []
            logs.extend(ctf_logs)
            for block in range(first, last + 1):
                logs.extend(self.extra_logs.get(block, []))
            logs = [
                x for x in logs
                if (not addresses or x["address"] in addresses)
                and (not topics or x["topics"][0] in topics)
            ]  # fmt: skip
            return ok(logs)
        return error(-32601, f"the method {method} does not exist/is not available")


# ---------------------------------------------------------------------------------------
# Gamma keyset API
# ---------------------------------------------------------------------------------------


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": index}).encode()).decode()


def _decode_cursor(text: str) -> int | None:
    try:
        return int(json.loads(base64.urlsafe_b64decode(text.encode()))["after"])
    except (ValueError, KeyError, TypeError):
        return None


class GammaServer(_JsonServer):
    """Markets and events served by keyset pages in id order."""

    LIMITS: ClassVar[dict[str, int]] = {"markets": 100, "events": 500}
    MAX_FILTER_VALUES = 40

    def __init__(
        self,
        markets: list[dict[str, Any]],
        events: list[dict[str, Any]],
        *,
        duplicate_across_pages: bool = False,
    ) -> None:
        super().__init__()
        self.data = {
            "markets": sorted(markets, key=lambda m: int(m["id"])),
            "events": sorted(events, key=lambda e: int(e["id"])),
        }
        self.duplicate_across_pages = duplicate_across_pages
        self.odd_pages: dict[str, Any] = {}  # "markets" -> a document to answer once

    def replace_market(self, market: dict[str, Any]) -> None:
        items = [m for m in self.data["markets"] if m["id"] != market["id"]] + [market]
        self.data["markets"] = sorted(items, key=lambda m: int(m["id"]))

    def answer(self, path: str, query: list[tuple[str, str]], body: Any) -> tuple[int, Any]:
        kind = path.strip("/").split("/")[0]
        if path != f"/{kind}/keyset" or kind not in self.LIMITS:
            return 404, {"error": f"no route {path}"}
        if kind in self.odd_pages:
            return 200, self.odd_pages.pop(kind)
        params: dict[str, list[str]] = {}
        for key, value in query:
            params.setdefault(key, []).append(value)
        if "offset" in params:
            return 422, {"error": "offset is not supported by keyset endpoints"}
        limit = int(params.get("limit", ["20"])[0])
        if limit > self.LIMITS[kind]:
            return 422, {"error": f"limit must be at most {self.LIMITS[kind]}"}
        for name in ("id", "clob_token_ids"):
            if len(params.get(name, [])) > self.MAX_FILTER_VALUES:
                return 422, {"error": f"at most {self.MAX_FILTER_VALUES} {name} values"}
        items = self._filtered(kind, params)
        start = 0
        if "after_cursor" in params:  # `cursor=` is ignored, as upstream
            after = _decode_cursor(params["after_cursor"][0])
            if after is None:
                return 400, {"error": "invalid after_cursor"}
            start = after
        page = items[start : start + limit]
        document: dict[str, Any] = {kind: page}
        if self.duplicate_across_pages and start > 0 and page:
            document[kind] = [items[start - 1], *page]
        if start + limit < len(items):
            document["next_cursor"] = _encode_cursor(start + limit)
        return 200, document

    def _filtered(self, kind: str, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        items = self.data[kind]
        closed = params.get("closed", [None])[0]
        if closed is None and kind == "markets":
            closed = "false"  # /markets/keyset lists open markets unless told otherwise
        if closed is not None:
            wanted = closed == "true"
            items = [x for x in items if bool(x.get("closed")) == wanted]
        if "id" in params:
            ids = set(params["id"])
            items = [x for x in items if str(x["id"]) in ids]
        if "clob_token_ids" in params:
            tokens = set(params["clob_token_ids"])
            items = [x for x in items if tokens & set(json.loads(x.get("clobTokenIds") or "[]"))]
        return items


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
RECORDED_DIR = Path(__file__).resolve().parent / "recorded"


def recorded_markets() -> list[dict[str, Any]]:
    """Every distinct market payload recorded from Gamma (see fixtures/polymarket/README.md)."""
    found: dict[str, dict[str, Any]] = {}
    for name in ("gamma_markets_list.json", "gamma_market_by_id.json",
                 "gamma_market_resolved.json",
                 "gamma_market_closed_with_a_price_not_a_resolution.json"):  # fmt: skip
        document = json.loads((RECORDED_DIR / name).read_text())
        for market in document if isinstance(document, list) else [document]:
            found.setdefault(str(market["id"]), market)
    return list(found.values())


Payloads = list[dict[str, Any]]


def sample_gamma(sample_dir: Path = SAMPLE_DIR) -> tuple[Payloads, Payloads]:
    markets = json.loads((sample_dir / "markets.json").read_text())
    events = json.loads((sample_dir / "events.json").read_text())
    return markets + recorded_markets(), events


@dataclass
class PolymarketServers:
    store: FillStore
    gamma: GammaServer
    goldsky: GoldskyServer
    rpc: RpcServer
    ctf: CtfStore
    activity: ActivityServer

    @classmethod
    def over_sample(cls, *, ctf_events: int = 2_000, ended_ago_s: float = 3600.0) -> Self:
        """Gamma, Goldsky, activity-subgraph and RPC servers over the bundled sample, moved to
        end ``ended_ago_s`` ago; the node also serves ``ctf_events`` CTF position events spread
        over the same blocks. Not started: use it as a context manager."""
        store = FillStore.from_csv(SAMPLE_DIR / "orderFilled.csv", end_at=time.time() - ended_ago_s)
        markets, events = sample_gamma()
        ctf = CtfStore.over(store, ctf_events)
        return cls(
            store,
            GammaServer(markets, events),
            GoldskyServer(store),
            RpcServer(store, ctf=ctf),
            ctf,
            ActivityServer(ctf, head_timestamp=int(store.timestamp.max())),
        )

    def __enter__(self) -> Self:
        for server in (self.gamma, self.goldsky, self.rpc, self.activity):
            server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for server in (self.gamma, self.goldsky, self.rpc, self.activity):
            server.stop()

    def env(self, source: str = "goldsky", ctf_source: str = "rpc") -> dict[str, str]:
        return {
            "POLYMKT_GAMMA_API_URL": self.gamma.base_url,
            "POLYMKT_GOLDSKY_ORDERBOOK_URL": self.goldsky.base_url,
            "POLYMKT_GOLDSKY_ACTIVITY_URL": self.activity.base_url,
            "POLYMKT_POLYGON_RPC_URL": self.rpc.base_url,
            "POLYMKT_ORDER_FILLED_SOURCE": source,
            "POLYMKT_CTF_EVENTS_SOURCE": ctf_source,
            "POLYMKT_RPC_CONFIRMATIONS": "10",
        }
