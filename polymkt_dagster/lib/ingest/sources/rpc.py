"""Order fills from Polygon JSON-RPC: ``eth_getLogs`` on the four exchange contracts.

V1 and V2 ``OrderFilled`` logs are decoded by hand from their 32-byte words
(docs/architecture.md §4):
topics are [event signature, orderHash, maker, taker]; V1 data holds makerAssetId,
takerAssetId, makerAmountFilled, takerAmountFilled, fee; V2 data holds side, tokenId,
makerAmountFilled, takerAmountFilled, fee, builder, metadata, where side 0 means the maker
buys (pays USDC, asset id "0"). Positions are block numbers; blocks newer than the
confirmation depth are left for a later sync. When the node refuses a block range as too
large, the range is halved until it is accepted, and grows back after successes.

Fill ids are ``txHash_orderHash``, the subgraph's rule, so a fill seen by both sources is one
row. Should one transaction fill the same order twice, the later log gets ``_logIndex``
appended: a transaction lives in one block and a batch holds whole blocks, so the rule is
deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.http import (
    HttpClient,
    RequestStats,
    RetryPolicy,
    SourceError,
    upstream_excerpt,
)
from polymkt_dagster.lib.core.schemas import EXCHANGE_CONTRACTS
from polymkt_dagster.lib.ingest.sources.fill_source import FillBatch, FillColumns, RejectedFill

V1_ORDER_FILLED = "0xd0a08e8c493f9c94f29311604c9de1b4e8c8d4c06bd0c789af57f2d65bfec0f6"
V2_ORDER_FILLED = "0xd543adfd945773f1a62f74f0ee55a5e3b9b1a28262980ba90b1a89f2ea84d8ee"
ADVICE = (
    "Check POLYMKT_POLYGON_RPC_URL (a node that serves eth_getLogs) and re-run: the sync "
    "resumes from the block watermark saved in the lake"
)
DEFAULT_SPAN = 2_000
MAX_SPAN = 50_000
BLOCK_BATCH = 100
_TOO_LARGE_WORDS = ("range", "too large", "too many", "limit", "exceed", "10000", "response size")
_TRANSIENT_CODES = {-32603, -32000}  # internal error, server busy


class DecodeError(ValueError):
    """A log that is not a well-formed OrderFilled event."""


class RangeTooLargeError(Exception):
    pass


def _word(data: bytes, index: int) -> int:
    return int.from_bytes(data[32 * index : 32 * (index + 1)], "big")


def _topic_address(topic: str) -> str:
    text = topic.lower().removeprefix("0x")
    if len(text) != 64 or text[:24].strip("0"):
        raise DecodeError(f"topic {topic!r} is not a left-padded address")
    return "0x" + text[24:]


@dataclass(frozen=True)
class LogEnvelope:
    """The fields every ``eth_getLogs`` entry has, lower-cased and parsed."""

    topics: list[str]
    data: bytes
    address: str
    block: int
    log_index: int
    tx: str


def read_envelope(log: dict[str, Any], error: type[DecodeError] = DecodeError) -> LogEnvelope:
    """The log's envelope, or ``error`` (the decoder's own DecodeError) naming what is wrong."""
    try:
        return LogEnvelope(
            topics=[str(t).lower() for t in log["topics"]],
            data=bytes.fromhex(str(log["data"]).lower().removeprefix("0x")),
            address=str(log["address"]).lower(),
            block=int(str(log["blockNumber"]), 16),
            log_index=int(str(log["logIndex"]), 16),
            tx=str(log["transactionHash"]).lower(),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise error(f"log is missing or has a malformed field ({exc})") from exc


def decode_order_filled(log: dict[str, Any]) -> dict[str, Any]:
    """Canonical fill fields (no timestamp, no id) of one V1 or V2 OrderFilled log."""
    envelope = read_envelope(log)
    topics, data, address = envelope.topics, envelope.data, envelope.address
    block, log_index, tx = envelope.block, envelope.log_index, envelope.tx
    if len(topics) != 4:
        raise DecodeError(f"OrderFilled has 3 indexed arguments, log has {len(topics) - 1}")
    if address not in EXCHANGE_CONTRACTS:
        raise DecodeError(f"log from {address}, not one of the exchange contracts")
    common = {
        "block_number": block,
        "log_index": log_index,
        "transaction_hash": tx,
        "order_hash": topics[1],
        "maker": _topic_address(topics[2]),
        "taker": _topic_address(topics[3]),
        "exchange": EXCHANGE_CONTRACTS[address],
        "source": "rpc",
    }
    if topics[0] == V1_ORDER_FILLED:
        if len(data) != 32 * 5:
            raise DecodeError(f"V1 OrderFilled data is {len(data)} bytes, expected 160")
        return {
            **common,
            "maker_asset_id": str(_word(data, 0)),
            "taker_asset_id": str(_word(data, 1)),
            "maker_amount_filled": _word(data, 2),
            "taker_amount_filled": _word(data, 3),
            "fee": _word(data, 4),
            "contract_version": "v1",
        }
    if topics[0] == V2_ORDER_FILLED:
        if len(data) != 32 * 7:
            raise DecodeError(f"V2 OrderFilled data is {len(data)} bytes, expected 224")
        side, token = _word(data, 0), str(_word(data, 1))
        if side not in (0, 1):
            raise DecodeError(f"V2 side is {side}, expected 0 (buy) or 1 (sell)")
        return {
            **common,
            # side 0: the maker buys outcome tokens with USDC, i.e. gives asset "0".
            "maker_asset_id": "0" if side == 0 else token,
            "taker_asset_id": token if side == 0 else "0",
            "maker_amount_filled": _word(data, 2),
            "taker_amount_filled": _word(data, 3),
            "fee": _word(data, 4),
            "contract_version": "v2",
        }
    raise DecodeError(f"topic0 {topics[0]} is not an OrderFilled signature")


def _is_too_large(error: dict[str, Any]) -> bool:
    message = str(error.get("message", "")).lower()
    return error.get("code") in (-32005, -32602, -32600) and any(
        w in message for w in _TOO_LARGE_WORDS
    )


def _transient_rpc(document: Any) -> str | None:
    errors = document if isinstance(document, list) else [document]
    for item in errors:
        error = item.get("error") if isinstance(item, dict) else None
        if isinstance(error, dict) and not _is_too_large(error):
            message = str(error.get("message", "")).lower()
            if error.get("code") in _TRANSIENT_CODES or any(
                w in message for w in ("timeout", "header not found", "busy", "try again")
            ):
                return f"json-rpc error {error.get('code')}: {message[:120]}"
    return None


class RpcSource:
    name = "rpc"
    position_unit = "block"

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.polygon_rpc_url, confirmations=settings.rpc_confirmations)

    def __init__(
        self,
        url: str,
        *,
        confirmations: int = 32,
        retry: RetryPolicy | None = None,
        initial_span: int = DEFAULT_SPAN,
        max_span: int = MAX_SPAN,
        addresses: Sequence[str] = tuple(EXCHANGE_CONTRACTS),
        topics: Sequence[str] = (V1_ORDER_FILLED, V2_ORDER_FILLED),
    ) -> None:
        self.http = HttpClient(url, source="rpc", advice=ADVICE, retry=retry, secrets=[url])
        self.confirmations = max(0, confirmations)
        self.span = max(1, initial_span)
        self.max_span = max(self.span, max_span)
        self.addresses = [a.lower() for a in addresses]
        self.topics = [t.lower() for t in topics]  # topic0 values to ask eth_getLogs for
        self.range_splits = 0
        self._ceiling: int | None = None  # smallest span the node refused lately
        self._successes = 0
        self._timestamps: dict[int, int] = {}
        self._next_id = 1

    @property
    def stats(self) -> RequestStats:
        return self.http.stats

    def close(self) -> None:
        self.http.close()

    # ---- JSON-RPC --------------------------------------------------------------------
    def _payload(self, method: str, params: list[Any]) -> dict[str, Any]:
        self._next_id += 1
        return {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}

    def call(self, method: str, params: list[Any], *, cursor: str | None = None) -> Any:
        document, _ = self.http.post_json(
            "", self._payload(method, params), cursor=cursor, transient=_transient_rpc
        )
        if not isinstance(document, dict):
            raise SourceError("rpc", f"{method} answer is not a JSON-RPC object", cursor=cursor)
        error = document.get("error")
        if isinstance(error, dict):
            if _is_too_large(error):
                raise RangeTooLargeError(str(error.get("message")))
            raise SourceError(
                "rpc",
                f"{method} failed: {error.get('code')} "
                f"{upstream_excerpt(str(error.get('message')), limit=200)}",
                cursor=cursor,
                advice=ADVICE,
            )
        if "result" not in document:
            raise SourceError("rpc", f"{method} answer has no result", cursor=cursor)
        return document["result"]

    def batch(self, method: str, params_list: Sequence[list[Any]], *, cursor: str) -> list[Any]:
        """One JSON-RPC batch request; results in the order of ``params_list``."""
        payloads = [self._payload(method, p) for p in params_list]
        document, _ = self.http.post_json("", payloads, cursor=cursor, transient=_transient_rpc)
        if not isinstance(document, list):
            # Some nodes refuse batches: fall back to one call each.
            return [self.call(method, p, cursor=cursor) for p in params_list]
        by_id = {item.get("id"): item for item in document if isinstance(item, dict)}
        results = []
        for payload in payloads:
            item = by_id.get(payload["id"])
            if item is None or "result" not in item:
                detail = item.get("error") if isinstance(item, dict) else "missing"
                raise SourceError(
                    "rpc", f"{method} batch item failed: {detail}", cursor=cursor, advice=ADVICE
                )
            results.append(item["result"])
        return results

    # ---- positions -------------------------------------------------------------------
    def latest_block(self) -> int:
        return int(self.call("eth_blockNumber", [], cursor="eth_blockNumber"), 16)

    def head(self) -> int:
        return max(0, self.latest_block() - self.confirmations + 1)

    def block_timestamps(self, blocks: Iterable[int]) -> dict[int, int]:
        blocks = list(blocks)
        wanted = sorted({b for b in blocks if b not in self._timestamps})
        for i in range(0, len(wanted), BLOCK_BATCH):
            chunk = wanted[i : i + BLOCK_BATCH]
            results = self.batch(
                "eth_getBlockByNumber",
                [[hex(b), False] for b in chunk],
                cursor=f"blocks {chunk[0]}..{chunk[-1]}",
            )
            for block, result in zip(chunk, results, strict=True):
                if not isinstance(result, dict) or "timestamp" not in result:
                    raise SourceError("rpc", f"block {block} has no timestamp", advice=ADVICE)
                self._timestamps[block] = int(str(result["timestamp"]), 16)
        if len(self._timestamps) > 200_000:  # bounded cache on long syncs
            keep = set(blocks)
            self._timestamps = {b: t for b, t in self._timestamps.items() if b in keep}
        return {b: self._timestamps[b] for b in blocks}

    def timestamp_of(self, block: int) -> int:
        return self.block_timestamps([block])[block]

    def position_at(self, when: datetime) -> int:
        """First block with timestamp >= ``when`` (latest + 1 when none is yet)."""
        target = when.timestamp()
        lo, hi = 0, self.latest_block() + 1
        if self.timestamp_of(hi - 1) < target:
            return hi
        # Interpolation search guided by ~2 s blocks, falling back to bisection.
        t_lo = self.timestamp_of(lo)
        if t_lo >= target:
            return 0
        t_hi = self.timestamp_of(hi - 1)
        step = 0
        while lo + 1 < hi:
            step += 1
            if step % 2 and t_hi > t_lo:
                guess = lo + int((target - t_lo) * (hi - 1 - lo) / (t_hi - t_lo))
                mid = min(max(guess, lo + 1), hi - 1)
            else:
                mid = (lo + hi) // 2
            t_mid = self.timestamp_of(mid)
            if t_mid >= target:
                hi, t_hi = mid, t_mid
            else:
                lo, t_lo = mid, t_mid
        return hi

    def time_at(self, position: int) -> datetime:
        return datetime.fromtimestamp(self.timestamp_of(max(0, position - 1)), tz=UTC)

    # ---- fetching --------------------------------------------------------------------
    def get_logs(self, first: int, last: int) -> list[dict[str, Any]]:
        result = self.call(
            "eth_getLogs",
            [
                {
                    "fromBlock": hex(first),
                    "toBlock": hex(last),
                    "address": self.addresses,
                    "topics": [self.topics],
                }
            ],
            cursor=f"blocks {first}..{last}",
        )
        if not isinstance(result, list):
            raise SourceError("rpc", "eth_getLogs result is not a list", advice=ADVICE)
        return result

    def fetch(self, start: int, end: int, target_rows: int) -> FillBatch:
        logs: list[dict[str, Any]] = []
        position = start
        while position < end and len(logs) < target_rows:
            last = min(position + self.span, end) - 1
            try:
                found = self.get_logs(position, last)
            except RangeTooLargeError:
                if last == position:
                    raise SourceError(
                        "rpc",
                        "the node refuses eth_getLogs even for a single block",
                        cursor=f"block {position}",
                        advice=ADVICE,
                    ) from None
                refused = last - position + 1
                self._ceiling = min(self._ceiling or refused, refused)
                self.span = max(1, refused // 2)
                self.range_splits += 1
                self._successes = 0
                continue
            logs.extend(x for x in found if isinstance(x, dict) and not x.get("removed"))
            position = last + 1
            self._grow()
        return self._decode(logs, start, position)

    def _grow(self) -> None:
        """Widen the range after successes, approaching a span the node refused from below.

        Doubling while nothing was refused; after a refusal, halfway to the refused span
        every 8 successes, so the range settles just under the node's limit with few
        refusals. The refusal is forgotten after 256 successes: nodes limit results as well
        as blocks, so a range refused in a busy hour may be fine in a quiet one.
        """
        self._successes += 1
        if self._ceiling is None:
            self.span = min(self.max_span, self.span * 2)
            return
        if self._successes >= 256:
            self._ceiling, self._successes = None, 0
        elif self._successes % 8 == 0:
            self.span = max(self.span, (self.span + self._ceiling) // 2)
            if self.span >= self._ceiling:
                self.span = max(1, self._ceiling - 1)

    def decode_in_chain_order(
        self,
        logs: list[dict[str, Any]],
        decode: Callable[[dict[str, Any]], dict[str, Any]],
        rejects: list[RejectedFill],
    ) -> tuple[list[dict[str, Any]], dict[int, Any]]:
        """Decoded logs in (block, log index) order with their blocks' timestamps; a log
        that does not decode is a reject naming its block and log index."""
        decoded: list[dict[str, Any]] = []
        for log in logs:
            try:
                decoded.append(decode(log))
            except DecodeError as exc:
                where = f"rpc block {log.get('blockNumber')} log {log.get('logIndex')}"
                rejects.append(RejectedFill(where, "(log)", str(exc)))
        decoded.sort(key=lambda d: (d["block_number"], d["log_index"]))
        return decoded, self.block_timestamps(d["block_number"] for d in decoded)

    def _decode(self, logs: list[dict[str, Any]], start: int, end: int) -> FillBatch:
        columns = FillColumns()
        decoded, times = self.decode_in_chain_order(logs, decode_order_filled, columns.rejects)
        seen: set[str] = set()
        for fill in decoded:
            fill_id = f"{fill['transaction_hash']}_{fill['order_hash']}"
            if fill_id in seen:
                fill_id = f"{fill_id}_{fill['log_index']}"
            seen.add(fill_id)
            columns.add(
                f"rpc block {fill['block_number']} log {fill['log_index']}",
                id=fill_id,
                timestamp=times[fill["block_number"]],
                **fill,
            )
        return FillBatch(columns.to_table(), start, end, columns.rejects)
