"""The sample's ctfEvents.csv: layout, chain plausibility, and share balances that hold.

``replay_share_balances`` recomputes every (wallet, token) share balance straight from the
CSV files, independently of the generator and of the P&L ledger: a wallet's own fills are the
orderFilled rows where it is the ``maker`` (docs/architecture.md §4), plus its splits,
conversions, merges and redemptions (§3.1, §5). Changes in the same second count credits
before debits (poly_data's fills carry no log index).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from polymkt_dagster.lib.sample.config import SampleConfig
from polymkt_dagster.lib.sample.ctf import (
    CTF_EVENTS_CSV_COLUMNS,
    NEG_RISK_ADAPTER,
    UMA_CTF_ADAPTER,
    CtfMarket,
    CtfPlanner,
)
from polymkt_dagster.lib.sample.generate import generate_ctf_events, generate_sample
from polymkt_dagster.lib.sample.layout import CTF_EXCHANGE, NEG_RISK_EXCHANGE

REPO_SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"
NOT_USERS = {NEG_RISK_ADAPTER, CTF_EXCHANGE, NEG_RISK_EXCHANGE}
HEX32 = re.compile(r"^0x[0-9a-f]{64}$")
ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
ARCHITECTURE_HEADER = (
    "timestamp,block_number,log_index,transaction_hash,contract,event,stakeholder,condition_id,"
    "neg_risk_market_id,question_id,collateral_token,parent_collection_id,index_sets,amount,"
    "amounts,payout,outcome_slot_count,payout_numerators"
)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _columns(path: Path, names: tuple[str, ...]) -> list[list[str]]:
    """Some columns of a CSV file, as strings (fast enough for ~100k rows)."""
    types = dict.fromkeys(names, pa.string())
    table = pacsv.read_csv(
        path, convert_options=pacsv.ConvertOptions(include_columns=list(names), column_types=types)
    )
    return [table.column(n).to_pylist() for n in names]


@dataclass
class BalanceReport:
    oversold: dict[tuple[str, str], int] = field(default_factory=dict)  # raw shares
    debits: int = 0  # balance-reducing changes replayed
    positions: int = 0  # (wallet, token) pairs touched
    bad_payouts: list[str] = field(default_factory=list)  # redemptions not matching balances


def replay_share_balances(
    sample_dir: Path, events: list[dict[str, str]] | None = None
) -> BalanceReport:
    """Replay fills and position events in time order; count shares sold beyond holdings."""
    markets = json.loads((sample_dir / "markets.json").read_text("utf-8"))
    tokens_of: dict[str, list[str]] = {}  # condition id -> [token of outcome 0, outcome 1]
    group: dict[str, dict[int, list[str]]] = defaultdict(dict)  # negRiskMarketID -> questions
    for m in markets:
        tokens = json.loads(m["clobTokenIds"])
        tokens_of[m["conditionId"]] = tokens
        if m.get("negRiskMarketID"):
            group[m["negRiskMarketID"]][int(m["questionID"][-2:], 16)] = tokens
    if events is None:
        events = _rows(sample_dir / "ctfEvents.csv")
    numerators = {
        e["condition_id"]: [int(x) for x in e["payout_numerators"].split("|")]
        for e in events
        if e["event"] == "ConditionResolution"
    }

    # (time, debit?, sequence, wallet, token, signed shares or None = redeem the whole balance)
    changes: list[tuple[int, bool, int, str, str, int | None, dict[str, str] | None]] = []
    fills = _columns(
        sample_dir / "orderFilled.csv",
        ("timestamp", "maker", "makerAssetId", "makerAmountFilled", "takerAssetId",
         "takerAmountFilled"),
    )  # fmt: skip
    for ts, maker, maker_asset, maker_amount, taker_asset, taker_amount in zip(*fills, strict=True):
        if maker_asset == "0":  # the maker pays USDC: it buys shares
            change = (taker_asset, int(taker_amount))
        else:
            change = (maker_asset, -int(maker_amount))
        changes.append((int(ts), change[1] < 0, len(changes), maker.lower(), *change, None))
    for e in events:
        who, kind, ts = e["stakeholder"], e["event"], int(e["timestamp"])
        if who in NOT_USERS or kind == "ConditionResolution":
            continue
        if kind in ("PositionSplit", "PositionsMerge"):
            sign = 1 if kind == "PositionSplit" else -1
            for token in tokens_of[e["condition_id"]]:
                changes.append(
                    (ts, sign < 0, len(changes), who, token, sign * int(e["amount"]), None)
                )
        elif kind == "PositionsConverted":
            questions = group[e["neg_risk_market_id"]]
            mask, amount = int(e["index_sets"]), int(e["amount"])
            for i, (yes, no) in questions.items():
                if mask >> i & 1:
                    changes.append((ts, True, len(changes), who, no, -amount, None))
                else:
                    changes.append((ts, False, len(changes), who, yes, amount, None))
        elif kind == "PayoutRedemption":
            tokens = tokens_of[e["condition_id"]]
            if e["amounts"]:  # NegRiskAdapter: the amounts redeemed per outcome
                for token, amount in zip(tokens, e["amounts"].split("|"), strict=True):
                    changes.append((ts, True, len(changes), who, token, -int(amount), e))
            else:  # ConditionalTokens: the whole balance of each index set
                for index_set in e["index_sets"].split("|"):
                    token = tokens[int(index_set).bit_length() - 1]
                    changes.append((ts, True, len(changes), who, token, None, e))
        else:
            raise AssertionError(f"unexpected event {kind}")
    changes.sort(key=lambda c: (c[0], c[1], c[2]))

    report = BalanceReport()
    balance: dict[tuple[str, str], int] = defaultdict(int)
    redeemed: dict[int, int] = defaultdict(int)  # id(event) -> payout recomputed
    redemptions: dict[int, dict[str, str]] = {}
    for _, _, _, wallet, token, delta, event in changes:
        key = (wallet, token)
        held = balance[key]
        if delta is None:
            delta = -held
        if delta < 0:
            report.debits += 1
            if held + delta < 0:
                report.oversold[key] = report.oversold.get(key, 0) - (held + delta)
                delta = -held
        balance[key] = held + delta
        if event is not None:
            nums = numerators[event["condition_id"]]
            index = tokens_of[event["condition_id"]].index(token)
            redeemed[id(event)] += -delta * nums[index]
            redemptions[id(event)] = event
    for ident, event in redemptions.items():
        nums = numerators[event["condition_id"]]
        if redeemed[ident] // sum(nums) != int(event["payout"]):
            report.bad_payouts.append(event["transaction_hash"])
    report.positions = len(balance)
    return report


@pytest.fixture(scope="module")
def bundled_events() -> list[dict[str, str]]:
    return _rows(REPO_SAMPLE / "ctfEvents.csv")


def test_the_bundled_sample_oversells_nothing(bundled_events: list[dict[str, str]]) -> None:
    report = replay_share_balances(REPO_SAMPLE, bundled_events)
    assert report.positions > 8_000 and report.debits > 4_000
    assert report.oversold == {}
    assert report.bad_payouts == []


def test_removing_one_split_oversells(bundled_events: list[dict[str, str]]) -> None:
    splits = [
        e
        for e in bundled_events
        if e["event"] == "PositionSplit" and e["stakeholder"] not in NOT_USERS
    ]
    per_pair = Counter((e["stakeholder"], e["condition_id"]) for e in splits)
    alone = next(e for e in splits if per_pair[(e["stakeholder"], e["condition_id"])] == 1)
    report = replay_share_balances(REPO_SAMPLE, [e for e in bundled_events if e is not alone])
    assert report.oversold
    assert {wallet for wallet, _ in report.oversold} == {alone["stakeholder"]}


def test_another_generated_sample_oversells_nothing(tmp_path: Path) -> None:
    summary = generate_sample(tmp_path, SampleConfig(scale=0.5, seed=4))
    report = replay_share_balances(tmp_path)
    assert report.oversold == {} and report.bad_payouts == []
    assert report.debits > 2_000
    counts = Counter(e["event"] for e in _rows(tmp_path / "ctfEvents.csv"))
    assert summary.ctf_events == sum(counts.values())
    assert counts["PositionsConverted"] > 0 and counts["PositionsMerge"] > 0


def test_planner_splits_carry_over_time_slices() -> None:
    """Hand-computed: split totals climb the 10-20-50 ladder across slices."""
    share = 1_000_000
    plain = CtfMarket(
        condition_id="0x" + "11" * 32,
        question_id="0x" + "22" * 32,
        neg_risk_market_id=None,
        created=500,
        trade_start=1_000,
        trade_end=100_000,
        resolved_at=None,
        payout=None,
    )
    wallets = ["0x" + "aa" * 20, "0x" + "bb" * 20]
    planner = CtfPlanner([plain], [], wallets, seed=1, t_end=200_000, converters=np.array([0]))

    def feed(t: list[int], wallet: list[int], token: list[int], shares: list[int]) -> None:
        planner.add_fills(np.array(t), np.array(wallet), np.array(token), np.array(shares) * share)

    # wallet 0 sells 15 YES it does not hold (split 20), buys 5, sells 3 (covered: 20-15+5-3)
    # wallet 1 buys 7 YES and sells them back in the same second (credits first: no split)
    feed([2_000, 2_500, 2_600, 3_000, 3_000], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0],
         [-15, 5, -3, -7, 7])  # fmt: skip
    # next slice: wallet 0 sells 25 NO (holds 20 from the split: need 25 -> 50, split 30)
    feed([5_000], [0], [1], [-25])
    table = planner.finish()
    splits = [r for r in table.to_pylist() if r["event"] == "PositionSplit"]
    assert [(r["stakeholder"], r["amount"]) for r in splits] == [
        (wallets[0], 20 * share),
        (wallets[0], 30 * share),
    ]
    assert 500 < splits[0]["timestamp"] < 2_000 and 2_000 < splits[1]["timestamp"] < 5_000
    assert all(r["event"] in ("PositionSplit", "PositionsMerge") for r in table.to_pylist())


def test_csv_layout_is_the_architecture_bootstrap_file(
    bundled_events: list[dict[str, str]],
) -> None:
    assert ",".join(CTF_EVENTS_CSV_COLUMNS) == ARCHITECTURE_HEADER
    with (REPO_SAMPLE / "ctfEvents.csv").open(encoding="utf-8") as f:
        assert f.readline().rstrip("\n") == ARCHITECTURE_HEADER
    counts = Counter((e["contract"], e["event"]) for e in bundled_events)
    for kind in ("PositionSplit", "PositionsMerge", "PayoutRedemption"):
        assert counts[("conditional_tokens", kind)] > 0 and counts[("neg_risk_adapter", kind)] > 0
    assert counts[("neg_risk_adapter", "PositionsConverted")] > 0
    assert counts[("conditional_tokens", "ConditionResolution")] > 100
    assert set(counts) == {
        *((c, k) for c in ("conditional_tokens", "neg_risk_adapter")
          for k in ("PositionSplit", "PositionsMerge", "PayoutRedemption")),
        ("neg_risk_adapter", "PositionsConverted"),
        ("conditional_tokens", "ConditionResolution"),
    }  # fmt: skip


def test_events_are_plausible_chain_logs(bundled_events: list[dict[str, str]]) -> None:
    ids = [f"{e['transaction_hash']}_{e['log_index']}" for e in bundled_events]
    assert len(set(ids)) == len(ids)
    per_block: dict[str, set[str]] = defaultdict(set)
    block_time: dict[str, str] = {}
    last = (0, 0)
    for e in bundled_events:
        assert HEX32.match(e["transaction_hash"]) and ADDRESS.match(e["stakeholder"])
        position = (int(e["block_number"]), int(e["log_index"]))
        assert position > last  # sorted by block and log index, no two logs share a slot
        last = position
        assert block_time.setdefault(e["block_number"], e["timestamp"]) == e["timestamp"]
        per_block[e["block_number"]].add(e["log_index"])
        if e["event"] != "PositionsConverted":
            assert HEX32.match(e["condition_id"])
        if e["contract"] == "conditional_tokens" and e["event"] != "ConditionResolution":
            assert e["parent_collection_id"] == "0x" + "00" * 32
            assert e["collateral_token"] and e["index_sets"] == "1|2"
    # the adapter's user event follows its inner ConditionalTokens event in the same tx
    by_tx: dict[str, list[dict[str, str]]] = defaultdict(list)
    for e in bundled_events:
        by_tx[e["transaction_hash"]].append(e)
    for rows in by_tx.values():
        if len(rows) == 1:
            assert rows[0]["contract"] == "conditional_tokens" or rows[0]["event"] == (
                "PositionsConverted"
            )
            continue
        inner, user = rows
        assert inner["stakeholder"] == NEG_RISK_ADAPTER and user["contract"] == "neg_risk_adapter"
        assert inner["event"] == user["event"] and inner["condition_id"] == user["condition_id"]
        assert int(inner["log_index"]) < int(user["log_index"])
        assert (inner["amount"], inner["payout"]) == (user["amount"], user["payout"])


def test_resolutions_match_gamma(bundled_events: list[dict[str, str]]) -> None:
    markets = json.loads((REPO_SAMPLE / "markets.json").read_text("utf-8"))
    resolutions = {
        e["condition_id"]: e for e in bundled_events if e["event"] == "ConditionResolution"
    }
    statuses: Counter[str | None] = Counter()
    for m in markets:
        status = m.get("umaResolutionStatus")
        statuses[status] += 1
        prices = [float(p) for p in json.loads(m["outcomePrices"])]
        e = resolutions.get(m["conditionId"])
        if status != "resolved":
            assert e is None, m["id"]
            continue
        assert m["closed"] and e is not None, m["id"]
        payout = [int(x) for x in e["payout_numerators"].split("|")]
        if prices == [0.5, 0.5]:
            assert payout == [1, 1]
        else:
            assert payout == [int(p == max(prices)) for p in prices]
        oracle = NEG_RISK_ADAPTER if m["negRisk"] else UMA_CTF_ADAPTER
        assert (e["stakeholder"], e["question_id"]) == (oracle, m["questionID"])
        assert e["outcome_slot_count"] == "2"
        closed = m["closedTime"].replace(" ", "T").replace("+00", "Z")
        resolved_at = int(e["timestamp"])
        from datetime import datetime

        closed_ts = datetime.fromisoformat(closed.replace("Z", "+00:00")).timestamp()
        assert closed_ts - 1900 <= resolved_at <= closed_ts
    assert statuses["proposed"] >= 2 and statuses["disputed"] >= 1
    for m in markets:
        if m.get("umaResolutionStatus") in ("proposed", "disputed"):
            assert m["closed"] and sorted(json.loads(m["outcomePrices"])) == ["0", "1"]
    prices = [json.loads(m["outcomePrices"]) for m in markets]
    assert ["0.5", "0.5"] in prices
    assert ["0.999998", "0.000002"] in prices or ["0.000002", "0.999998"] in prices
    histories = Counter(m["umaResolutionStatuses"] for m in markets if m.get("umaResolutionStatus"))
    assert histories["[]"] > sum(histories.values()) / 3  # often empty, as on Gamma


def test_redemptions_come_after_resolution_and_splits_before_sells(
    bundled_events: list[dict[str, str]],
) -> None:
    resolved_at = {
        e["condition_id"]: int(e["timestamp"])
        for e in bundled_events
        if e["event"] == "ConditionResolution"
    }
    for e in bundled_events:
        if e["event"] == "PayoutRedemption":
            assert int(e["timestamp"]) > resolved_at[e["condition_id"]]
        elif e["event"] in ("PositionSplit", "PositionsMerge", "PositionsConverted"):
            assert e["condition_id"] not in resolved_at or (
                int(e["timestamp"]) < resolved_at[e["condition_id"]]
            )
    lo = SampleConfig().start.timestamp()
    hi = SampleConfig().end.timestamp()
    assert all(lo <= int(e["timestamp"]) <= hi for e in bundled_events)


def test_generate_ctf_events_equals_the_csv(tmp_path: Path) -> None:
    config = SampleConfig(scale=0.5, seed=4)
    generate_sample(tmp_path, config)
    table = generate_ctf_events(config)
    rows = _rows(tmp_path / "ctfEvents.csv")
    assert table.num_rows == len(rows) > 0
    first = {k: ("" if v is None else str(v)) for k, v in table.slice(0, 1).to_pylist()[0].items()}
    assert first == rows[0]
    # without the events: no ctfEvents.csv, every other file the same bytes
    bare = generate_sample(tmp_path / "bare", config, ctf_events=False)
    assert bare.ctf_events == 0 and not bare.ctf_events_csv.exists()
    for name in ("markets.csv", "markets.json", "events.json", "orderFilled.csv", "trades.csv"):
        assert (tmp_path / "bare" / name).read_bytes() == (tmp_path / name).read_bytes(), name
