"""CTF position events (docs/architecture.md §3.1): event ABIs, log decoding, validation, RPC.

Contracts on Polygon and their events, as declared in public source:

- ConditionalTokens ``0x4d97dcd97ec945f40cf65f87097ace5ea0476045`` (address:
  Polymarket/polymarket-subgraph ``networks.json``, chain 137). Events from
  gnosis/conditional-tokens-contracts ``contracts/ConditionalTokens.sol``::

      ConditionResolution(bytes32 indexed conditionId, address indexed oracle,
                          bytes32 indexed questionId, uint outcomeSlotCount,
                          uint[] payoutNumerators)
      PositionSplit / PositionsMerge(address indexed stakeholder, IERC20 collateralToken,
                          bytes32 indexed parentCollectionId, bytes32 indexed conditionId,
                          uint[] partition, uint amount)
      PayoutRedemption(address indexed redeemer, IERC20 indexed collateralToken,
                          bytes32 indexed parentCollectionId, bytes32 conditionId,
                          uint[] indexSets, uint payout)

- NegRiskAdapter ``0xd91e80cf2e7be2e162c6513ced06f1dd0da35296`` (docs/architecture.md §3.1;
  the same address in Polymarket's neg-risk documentation). Events from
  Polymarket/neg-risk-ctf-adapter ``src/interfaces/INegRiskAdapter.sol``::

      PositionSplit(address indexed stakeholder, bytes32 indexed conditionId, uint256 amount)
      PositionsMerge(address indexed stakeholder, bytes32 indexed conditionId, uint256 amount)
      PositionsConverted(address indexed stakeholder, bytes32 indexed marketId,
                         uint256 indexed indexSet, uint256 amount)
      PayoutRedemption(address indexed redeemer, bytes32 indexed conditionId,
                       uint256[] amounts, uint256 payout)

topic0 is keccak256 of the canonical signature (``IERC20`` is ``address``), computed here with
eth-hash; all eight values equal the ones published in generated go-ethereum bindings of both
contracts (e.g. ``PositionSplit`` of ConditionalTokens is ``0x2e6bb91f…74786298``), which the
tests check. Log data and indexed topics are decoded with eth-abi (strict: a malformed word is
an error, never a guess). Values a column cannot hold (an amount past BIGINT) are rejected with
the reason, never wrapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from eth_hash.auto import keccak

from polymkt_dagster.lib.core.schemas import CTF_CONTRACTS, CTF_EVENTS
from polymkt_dagster.lib.ingest import normalize as n
from polymkt_dagster.lib.ingest.sources.fill_source import (
    EARLIEST,
    MAX_BIGINT,
    FillBatch,
    RejectedFill,
)
from polymkt_dagster.lib.ingest.sources.rpc import DecodeError as LogDecodeError
from polymkt_dagster.lib.ingest.sources.rpc import RpcSource, read_envelope

CONDITIONAL_TOKENS = "0x4d97dcd97ec945f40cf65f87097ace5ea0476045"
NEG_RISK_ADAPTER = "0xd91e80cf2e7be2e162c6513ced06f1dd0da35296"
EVENT_NAMES = (
    "PositionSplit",
    "PositionsMerge",
    "PayoutRedemption",
    "ConditionResolution",
    "PositionsConverted",
)
MAX_INT32 = 2**31 - 1
ZERO_HASH = "0x" + "0" * 64


@dataclass(frozen=True)
class EventAbi:
    """One event: who emits it, its indexed arguments (topics 1..3) and its data arguments."""

    contract: str  # `contract` column value
    event: str
    indexed: tuple[tuple[str, str], ...]  # (name, abi type)
    data: tuple[tuple[str, str], ...]
    signature: str  # canonical: argument types in declaration order

    @property
    def topic0(self) -> str:
        return "0x" + keccak(self.signature.encode()).hex()


# Arguments in declaration order (what the signature hashes), per (contract, event).
_DECLARED: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("conditional_tokens", "ConditionResolution"): (
        ("conditionId", "bytes32"), ("oracle", "address"), ("questionId", "bytes32"),
        ("outcomeSlotCount", "uint256"), ("payoutNumerators", "uint256[]"),
    ),
    ("conditional_tokens", "PositionSplit"): (
        ("stakeholder", "address"), ("collateralToken", "address"),
        ("parentCollectionId", "bytes32"), ("conditionId", "bytes32"),
        ("partition", "uint256[]"), ("amount", "uint256"),
    ),
    ("conditional_tokens", "PositionsMerge"): (
        ("stakeholder", "address"), ("collateralToken", "address"),
        ("parentCollectionId", "bytes32"), ("conditionId", "bytes32"),
        ("partition", "uint256[]"), ("amount", "uint256"),
    ),
    ("conditional_tokens", "PayoutRedemption"): (
        ("redeemer", "address"), ("collateralToken", "address"),
        ("parentCollectionId", "bytes32"), ("conditionId", "bytes32"),
        ("indexSets", "uint256[]"), ("payout", "uint256"),
    ),
    ("neg_risk_adapter", "PositionSplit"): (
        ("stakeholder", "address"), ("conditionId", "bytes32"), ("amount", "uint256"),
    ),
    ("neg_risk_adapter", "PositionsMerge"): (
        ("stakeholder", "address"), ("conditionId", "bytes32"), ("amount", "uint256"),
    ),
    ("neg_risk_adapter", "PositionsConverted"): (
        ("stakeholder", "address"), ("marketId", "bytes32"), ("indexSet", "uint256"),
        ("amount", "uint256"),
    ),
    ("neg_risk_adapter", "PayoutRedemption"): (
        ("redeemer", "address"), ("conditionId", "bytes32"), ("amounts", "uint256[]"),
        ("payout", "uint256"),
    ),
}  # fmt: skip

# Which declared arguments are indexed, per (contract, event).
_INDEXED: dict[tuple[str, str], tuple[str, ...]] = {
    ("conditional_tokens", "ConditionResolution"): ("conditionId", "oracle", "questionId"),
    ("conditional_tokens", "PositionSplit"): ("stakeholder", "parentCollectionId", "conditionId"),
    ("conditional_tokens", "PositionsMerge"): ("stakeholder", "parentCollectionId", "conditionId"),
    ("conditional_tokens", "PayoutRedemption"): (
        "redeemer", "collateralToken", "parentCollectionId",
    ),
    ("neg_risk_adapter", "PositionSplit"): ("stakeholder", "conditionId"),
    ("neg_risk_adapter", "PositionsMerge"): ("stakeholder", "conditionId"),
    ("neg_risk_adapter", "PositionsConverted"): ("stakeholder", "marketId", "indexSet"),
    ("neg_risk_adapter", "PayoutRedemption"): ("redeemer", "conditionId"),
}  # fmt: skip


def _event_abi(contract: str, event: str) -> EventAbi:
    declared = _DECLARED[(contract, event)]
    indexed_names = _INDEXED[(contract, event)]
    by_name = dict(declared)
    return EventAbi(
        contract,
        event,
        tuple((name, by_name[name]) for name in indexed_names),
        tuple((name, kind) for name, kind in declared if name not in indexed_names),
        f"{event}({','.join(kind for _, kind in declared)})",
    )


EVENT_ABIS: tuple[EventAbi, ...] = tuple(_event_abi(c, e) for c, e in _DECLARED)
CONTRACT_ADDRESS = {name: address for address, name in CTF_CONTRACTS.items()}
# (emitting address, topic0) -> event: the same event name has another topic0 per contract.
BY_TOPIC: dict[tuple[str, str], EventAbi] = {
    (CONTRACT_ADDRESS[abi.contract], abi.topic0): abi for abi in EVENT_ABIS
}
TOPICS: tuple[str, ...] = tuple(abi.topic0 for abi in EVENT_ABIS)


def topic0_of(contract: str, event: str) -> str:
    return next(a.topic0 for a in EVENT_ABIS if a.contract == contract and a.event == event)


CTF_EVENTS_ARROW = pa.schema(
    [
        ("id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("block_number", pa.int64()),
        ("log_index", pa.int32()),
        ("transaction_hash", pa.string()),
        ("contract", pa.string()),
        ("event", pa.string()),
        ("stakeholder", pa.string()),
        ("condition_id", pa.string()),
        ("neg_risk_market_id", pa.string()),
        ("question_id", pa.string()),
        ("collateral_token", pa.string()),
        ("parent_collection_id", pa.string()),
        ("index_sets", pa.list_(pa.string())),
        ("amount", pa.int64()),
        ("amounts", pa.list_(pa.int64())),
        ("payout", pa.int64()),
        ("outcome_slot_count", pa.int32()),
        ("payout_numerators", pa.list_(pa.int64())),
        ("source", pa.string()),
    ]
)
assert CTF_EVENTS_ARROW.names == CTF_EVENTS.column_names


class DecodeError(LogDecodeError):
    """A log that is not a well-formed CTF position event."""


def _hex32(value: bytes) -> str:
    return "0x" + value.hex()


def _as_column(kind: str, value: Any) -> Any:
    """An eth-abi value as the canonical column value (hex text, int, list)."""
    if kind == "bytes32":
        return _hex32(value)
    if kind == "address":
        return str(value).lower()
    if kind == "uint256[]":
        return [int(v) for v in value]
    return int(value)


def decode_ctf_log(log: dict[str, Any]) -> dict[str, Any]:
    """Canonical ctf_events fields (no timestamp) of one log of either contract."""
    envelope = read_envelope(log, DecodeError)
    topics, data, address = envelope.topics, envelope.data, envelope.address
    block, log_index, tx = envelope.block, envelope.log_index, envelope.tx
    if not topics:
        raise DecodeError("log has no topics")
    abi = BY_TOPIC.get((address, topics[0]))
    if abi is None:
        raise DecodeError(f"topic0 {topics[0]} from {address} is not a CTF position event")
    if len(topics) != 1 + len(abi.indexed):
        raise DecodeError(
            f"{abi.event} has {len(abi.indexed)} indexed arguments, log has {len(topics) - 1}"
        )
    # imported here: eth-abi costs every process that loads the definitions 0.2 s otherwise
    import eth_abi
    from eth_abi.exceptions import DecodingError

    values: dict[str, Any] = {}
    try:
        for (name, kind), topic in zip(abi.indexed, topics[1:], strict=True):
            (value,) = eth_abi.decode([kind], bytes.fromhex(topic.removeprefix("0x")))
            values[name] = _as_column(kind, value)
        decoded = eth_abi.decode([kind for _, kind in abi.data], data)
    except (DecodingError, ValueError, TypeError) as exc:
        raise DecodeError(f"{abi.event}: undecodable arguments ({exc})") from exc
    for (name, kind), value in zip(abi.data, decoded, strict=True):
        values[name] = _as_column(kind, value)
    return {
        "block_number": block,
        "log_index": log_index,
        "transaction_hash": tx,
        "contract": abi.contract,
        "event": abi.event,
        **_columns_of(abi, values),
        "source": "rpc",
    }


def _columns_of(abi: EventAbi, v: dict[str, Any]) -> dict[str, Any]:
    if abi.event == "ConditionResolution":
        return {
            "stakeholder": v["oracle"],
            "condition_id": v["conditionId"],
            "question_id": v["questionId"],
            "outcome_slot_count": v["outcomeSlotCount"],
            "payout_numerators": v["payoutNumerators"],
        }
    if abi.event == "PositionsConverted":
        return {
            "stakeholder": v["stakeholder"],
            "neg_risk_market_id": v["marketId"],
            "index_sets": [str(v["indexSet"])],
            "amount": v["amount"],
        }
    if abi.contract == "conditional_tokens" and abi.event in ("PositionSplit", "PositionsMerge"):
        return {
            "stakeholder": v["stakeholder"],
            "condition_id": v["conditionId"],
            "collateral_token": v["collateralToken"],
            "parent_collection_id": v["parentCollectionId"],
            "index_sets": [str(i) for i in v["partition"]],
            "amount": v["amount"],
        }
    if abi.contract == "conditional_tokens":  # PayoutRedemption
        return {
            "stakeholder": v["redeemer"],
            "condition_id": v["conditionId"],
            "collateral_token": v["collateralToken"],
            "parent_collection_id": v["parentCollectionId"],
            "index_sets": [str(i) for i in v["indexSets"]],
            "payout": v["payout"],
        }
    if abi.event == "PayoutRedemption":  # NegRiskAdapter
        return {
            "stakeholder": v["redeemer"],
            "condition_id": v["conditionId"],
            "amounts": v["amounts"],
            "payout": v["payout"],
        }
    return {  # NegRiskAdapter split / merge
        "stakeholder": v["stakeholder"],
        "condition_id": v["conditionId"],
        "amount": v["amount"],
    }


def encode_ctf_log(
    row: dict[str, Any], *, block_hash: str | None = None, transaction_index: int = 0
) -> dict[str, Any]:
    """The ``eth_getLogs`` item of a canonical row (the inverse of ``decode_ctf_log``).

    For the local test node and fixtures: topics and data ABI-encoded with eth-abi.
    """
    import eth_abi  # see decode_ctf_log

    contract, event = row["contract"], row["event"]
    abi = next(a for a in EVENT_ABIS if a.contract == contract and a.event == event)
    values = _abi_values(abi, row)
    topics = [abi.topic0]
    for name, kind in abi.indexed:
        topics.append(_hex32(eth_abi.encode([kind], [values[name]])))
    data = eth_abi.encode([k for _, k in abi.data], [values[name] for name, _ in abi.data])
    block = int(row["block_number"])
    return {
        "address": CONTRACT_ADDRESS[contract],
        "topics": topics,
        "data": "0x" + data.hex(),
        "blockNumber": hex(block),
        "blockHash": block_hash or "0x" + f"{block:064x}",
        "transactionHash": row["transaction_hash"],
        "transactionIndex": hex(transaction_index),
        "logIndex": hex(int(row["log_index"])),
        "removed": False,
    }


def _abi_values(abi: EventAbi, row: dict[str, Any]) -> dict[str, Any]:
    def b32(value: str | None) -> bytes:
        return bytes.fromhex((value or ZERO_HASH).removeprefix("0x"))

    sets = [int(s) for s in row.get("index_sets") or []]
    if abi.event == "ConditionResolution":
        return {
            "conditionId": b32(row["condition_id"]),
            "oracle": row["stakeholder"],
            "questionId": b32(row["question_id"]),
            "outcomeSlotCount": int(row["outcome_slot_count"]),
            "payoutNumerators": list(row["payout_numerators"]),
        }
    if abi.event == "PositionsConverted":
        return {
            "stakeholder": row["stakeholder"],
            "marketId": b32(row["neg_risk_market_id"]),
            "indexSet": sets[0] if sets else 0,
            "amount": int(row["amount"]),
        }
    if abi.contract == "conditional_tokens":
        return {
            "stakeholder": row["stakeholder"],
            "redeemer": row["stakeholder"],
            "collateralToken": row["collateral_token"],
            "parentCollectionId": b32(row.get("parent_collection_id")),
            "conditionId": b32(row["condition_id"]),
            "partition": sets,
            "indexSets": sets,
            "amount": int(row.get("amount") or 0),
            "payout": int(row.get("payout") or 0),
        }
    return {
        "stakeholder": row["stakeholder"],
        "redeemer": row["stakeholder"],
        "conditionId": b32(row["condition_id"]),
        "amounts": list(row.get("amounts") or []),
        "amount": int(row.get("amount") or 0),
        "payout": int(row.get("payout") or 0),
    }


# ---------------------------------------------------------------------------------------
# Validation: one set of rules for the chain, the subgraph and the CSV file
# ---------------------------------------------------------------------------------------

_AMOUNT_FIELDS = {
    "PositionSplit": ("amount",),
    "PositionsMerge": ("amount",),
    "PositionsConverted": ("amount",),
    "PayoutRedemption": ("payout",),
    "ConditionResolution": ("outcome_slot_count",),
}


def problem(row: dict[str, Any]) -> tuple[str, str] | None:
    """(field, reason) of the first rule a canonical row breaks, or None."""
    ts = row.get("timestamp")
    if not isinstance(ts, int) or ts < EARLIEST or ts > 4_102_444_800:
        return "timestamp", f"timestamp {ts!r} is not a plausible unix time"
    block = row.get("block_number")
    if block is not None and (not _is_int(block) or not 0 <= block <= MAX_BIGINT):
        return "block_number", f"block number {block!r} is not a non-negative 64-bit integer"
    log_index = row.get("log_index")
    if not _is_int(log_index) or not 0 <= log_index <= MAX_INT32:
        return "log_index", f"log index {log_index!r} is not a non-negative 32-bit integer"
    tx = row.get("transaction_hash")
    if not isinstance(tx, str) or not n.TX_HASH_RE.fullmatch(tx):
        return "transaction_hash", f"invalid 32-byte hash {tx!r}"
    contract = row.get("contract")
    if contract is not None and contract not in CONTRACT_ADDRESS:
        return "contract", f"contract {contract!r} is not one of {', '.join(CONTRACT_ADDRESS)}"
    event = row.get("event")
    if event not in EVENT_NAMES:
        return "event", f"event {event!r} is not one of {', '.join(EVENT_NAMES)}"
    if contract is not None and (contract, event) not in _DECLARED:
        return "event", f"{contract} emits no {event} event"
    stakeholder = row.get("stakeholder")
    if not isinstance(stakeholder, str) or not n.ADDRESS_RE.fullmatch(stakeholder):
        return "stakeholder", f"invalid address {stakeholder!r}"
    for name in ("condition_id", "neg_risk_market_id", "question_id", "parent_collection_id"):
        value = row.get(name)
        if value is not None and (not isinstance(value, str) or not n.TX_HASH_RE.fullmatch(value)):
            return name, f"invalid 32-byte id {value!r}"
    collateral = row.get("collateral_token")
    if collateral is not None and (
        not isinstance(collateral, str) or not n.ADDRESS_RE.fullmatch(collateral)
    ):
        return "collateral_token", f"invalid address {collateral!r}"
    if event == "PositionsConverted":
        if row.get("neg_risk_market_id") is None:
            return "neg_risk_market_id", "PositionsConverted needs the neg-risk market id"
        if len(row.get("index_sets") or []) != 1:
            return "index_sets", "PositionsConverted has exactly one index set"
    elif row.get("condition_id") is None:
        return "condition_id", f"{event} needs a condition id"
    if event == "ConditionResolution" and row.get("question_id") is None:
        return "question_id", "ConditionResolution needs the question id"
    for name in _AMOUNT_FIELDS[str(event)]:
        if row.get(name) is None:
            return name, f"{event} needs {name}"
    for name in ("amount", "payout"):
        value = row.get(name)
        if value is not None and (not _is_int(value) or not 0 <= value <= MAX_BIGINT):
            return name, f"{name} {value!r} is not a non-negative 64-bit integer (BIGINT)"
    slots = row.get("outcome_slot_count")
    if slots is not None and (not _is_int(slots) or not 0 <= slots <= MAX_INT32):
        return "outcome_slot_count", f"outcome slot count {slots!r} is not a 32-bit integer"
    for name in ("amounts", "payout_numerators"):
        values = row.get(name)
        if values is None:
            continue
        if not isinstance(values, list | tuple) or not all(
            _is_int(v) and 0 <= v <= MAX_BIGINT for v in values
        ):
            return name, f"{name} {values!r} are not all non-negative 64-bit integers (BIGINT)"
    if event == "ConditionResolution":
        numerators = row.get("payout_numerators")
        if not numerators or len(numerators) != slots:
            return "payout_numerators", (
                f"{len(numerators or [])} payout numerators for {slots} outcome slots"
            )
    sets = row.get("index_sets")
    if sets is not None and (
        not isinstance(sets, list | tuple)
        or not all(isinstance(s, str) and n.TOKEN_ID_RE.fullmatch(s) for s in sets)
    ):
        return "index_sets", f"index sets {sets!r} are not decimal integers"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CtfColumns:
    """Column buffers for canonical CTF events; ``add`` validates a row, keeps or rejects it."""

    def __init__(self) -> None:
        self.columns: dict[str, list[object]] = {name: [] for name in CTF_EVENTS_ARROW.names}
        self.rejects: list[RejectedFill] = []

    def __len__(self) -> int:
        return len(self.columns["id"])

    def add(self, where: str, **row: Any) -> bool:
        found = problem(row)
        if found:
            self.rejects.append(RejectedFill(where, *found))
            return False
        row["id"] = f"{row['transaction_hash']}_{row['log_index']}"
        for name, values in self.columns.items():
            values.append(row.get(name))
        return True

    def to_table(self) -> pa.Table:
        arrays = []
        for fld in CTF_EVENTS_ARROW:
            values = self.columns[fld.name]
            if fld.name == "timestamp":
                arrays.append(pa.array(values, type=pa.int64()).cast(pa.timestamp("s", tz="UTC")))
            else:
                arrays.append(pa.array(values, type=fld.type))
        return pa.Table.from_arrays(arrays, names=CTF_EVENTS_ARROW.names).cast(CTF_EVENTS_ARROW)


# ---------------------------------------------------------------------------------------
# JSON-RPC source
# ---------------------------------------------------------------------------------------


class CtfRpcSource(RpcSource):
    """``eth_getLogs`` on ConditionalTokens and the NegRiskAdapter for the eight topics.

    Block ranges, range halving on refusal, retries, confirmations and block timestamps are
    the order-fill source's (``rpc.RpcSource``); only the topics and the decoding differ.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        kwargs.setdefault("addresses", tuple(CTF_CONTRACTS))
        kwargs.setdefault("topics", TOPICS)
        super().__init__(url, **kwargs)

    def _decode(self, logs: list[dict[str, Any]], start: int, end: int) -> FillBatch:
        columns = CtfColumns()
        decoded, times = self.decode_in_chain_order(logs, decode_ctf_log, columns.rejects)
        for event in decoded:
            columns.add(
                f"rpc block {event['block_number']} log {event['log_index']}",
                timestamp=times[event["block_number"]],
                **event,
            )
        return FillBatch(columns.to_table(), start, end, columns.rejects)


def rows_by_event(table: pa.Table) -> dict[str, int]:
    """Rows per event name (for metadata and reports)."""
    if table.num_rows == 0:
        return {}
    counts = table.group_by("event").aggregate([("id", "count")])
    return dict(zip(counts["event"].to_pylist(), counts["id_count"].to_pylist(), strict=True))
