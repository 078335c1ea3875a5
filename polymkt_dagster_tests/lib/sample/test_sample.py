"""Tests for the deterministic sample-data generator (the polymkt_dagster.lib.sample package)."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from polymkt_dagster.lib.sample.config import FILLS_PER_SCALE, SampleConfig
from polymkt_dagster.lib.sample.fills import (
    count_order_fills,
    iter_order_fill_batches,
    iter_trade_batches,
)
from polymkt_dagster.lib.sample.gamma import generate_markets
from polymkt_dagster.lib.sample.generate import SampleSummary, generate_sample
from polymkt_dagster.lib.sample.layout import (
    CTF_EXCHANGE,
    MARKETS_CSV_COLUMNS,
    NEG_RISK_EXCHANGE,
    ORDER_FILLED_COLUMNS,
    ORDER_FILLED_SCHEMA,
    TRADES_COLUMNS,
    TRADES_SCHEMA,
)

EXCHANGES = {CTF_EXCHANGE, NEG_RISK_EXCHANGE}
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
TX_HASH = re.compile(r"^0x[0-9a-f]{64}$")
FILES = (
    "markets.csv",
    "markets.json",
    "events.json",
    "orderFilled.csv",
    "trades.csv",
    "ctfEvents.csv",
)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class Sample:
    """One generated sample at the default config, parsed once for all tests."""

    def __init__(self, out: Path) -> None:
        self.config = SampleConfig()
        self.progress: list[tuple[int, int]] = []
        self.summary: SampleSummary = generate_sample(
            out, self.config, progress=lambda d, t: self.progress.append((d, t))
        )
        self.out = out
        self.markets_csv = _rows(out / "markets.csv")
        self.fills = _rows(out / "orderFilled.csv")
        self.trades = _rows(out / "trades.csv")
        self.markets = json.loads((out / "markets.json").read_text("utf-8"))
        self.events = json.loads((out / "events.json").read_text("utf-8"))
        self.by_id = {m["id"]: m for m in self.markets}
        self.token_of: dict[str, tuple[str, str]] = {}
        for row in self.markets_csv:
            self.token_of[row["token1"]] = (row["id"], "token1")
            self.token_of[row["token2"]] = (row["id"], "token2")

    def payout(self, token: str) -> float:
        """Resolution value of one share of ``token`` (only for resolved markets)."""
        market_id, side = self.token_of[token]
        prices = json.loads(self.by_id[market_id]["outcomePrices"])
        return float(prices[0 if side == "token1" else 1])

    def resolved(self, market_id: str) -> bool:
        """UMA's final resolution (the singular ``umaResolutionStatus``), 1/0 or not."""
        return self.by_id[market_id].get("umaResolutionStatus") == "resolved"

    def has_winner(self, market_id: str) -> bool:
        """Closed at exact 1/0 prices: resolved, or only proposed / disputed so far."""
        m = self.by_id[market_id]
        return m["closed"] and sorted(json.loads(m["outcomePrices"])) == ["0", "1"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return Sample(tmp_path_factory.mktemp("sample"))


# --- shape and counts ----------------------------------------------------------------------------


def test_summary_counts(sample: Sample) -> None:
    s = sample.summary
    assert 300 <= s.markets <= 500
    assert s.markets == len(sample.markets) == len(sample.markets_csv)
    assert s.events == len(sample.events)
    assert s.election_groups >= 20
    assert s.order_fills == s.trades == len(sample.fills) == len(sample.trades)
    assert 0.85 * FILLS_PER_SCALE <= s.order_fills <= 1.15 * FILLS_PER_SCALE
    assert s.matches == len({r["transactionHash"] for r in sample.fills})
    assert len(s.sharp_wallets) == 5 and all(ADDRESS.match(w) for w in s.sharp_wallets)
    assert s.wallets >= 300
    for name in FILES:
        assert (sample.out / name).is_file()
    assert s.order_filled_csv == sample.out / "orderFilled.csv"
    grouped = sum(1 for m in sample.markets if m["negRisk"])
    assert 0.25 <= grouped / s.markets <= 0.42
    # the committed sample must stay small (ctfEvents.csv: ~4 MB of it)
    assert sum((sample.out / n).stat().st_size for n in FILES) < 11_000_000


def test_progress_reports(sample: Sample) -> None:
    assert sample.progress
    done = [d for d, _ in sample.progress]
    assert done == sorted(done)
    assert sample.progress[-1] == (sample.summary.order_fills, sample.summary.order_fills)


def test_exact_csv_headers(sample: Sample) -> None:
    expected = {
        "markets.csv": ",".join(MARKETS_CSV_COLUMNS),
        "orderFilled.csv": ",".join(ORDER_FILLED_COLUMNS),
        "trades.csv": ",".join(TRADES_COLUMNS),
    }
    assert expected["markets.csv"] == (
        "createdAt,id,question,answer1,answer2,neg_risk,market_slug,token1,token2,"
        "condition_id,volume,ticker,closedTime"
    )
    assert expected["orderFilled.csv"] == (
        "timestamp,maker,makerAssetId,makerAmountFilled,taker,takerAssetId,"
        "takerAmountFilled,transactionHash"
    )
    assert expected["trades.csv"] == (
        "timestamp,market_id,maker,taker,nonusdc_side,maker_direction,taker_direction,price,"
        "usd_amount,token_amount,transactionHash"
    )
    for name, header in expected.items():
        with (sample.out / name).open(encoding="utf-8") as f:
            assert f.readline().rstrip("\n") == header


def test_determinism_same_bytes(tmp_path: Path) -> None:
    config = SampleConfig(scale=0.3, seed=11)
    a = generate_sample(tmp_path / "a", config)
    b = generate_sample(tmp_path / "b", config)
    assert a.order_fills == b.order_fills > 0
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    c = generate_sample(tmp_path / "c", SampleConfig(scale=0.3, seed=12))
    assert (tmp_path / "c" / "orderFilled.csv").read_bytes() != (
        tmp_path / "a" / "orderFilled.csv"
    ).read_bytes()
    assert c.sharp_wallets != a.sharp_wallets


def test_markets_csv_fields(sample: Sample) -> None:
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    closed = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00$")
    tokens: list[str] = []
    for row, m in zip(sample.markets_csv, sample.markets, strict=True):
        assert row["id"] == m["id"] and row["id"].isdigit()
        assert iso.match(row["createdAt"]) and row["createdAt"] == m["createdAt"]
        assert row["question"] == m["question"]
        assert [row["answer1"], row["answer2"]] == json.loads(m["outcomes"])
        assert row["neg_risk"] == str(m["negRisk"]) and row["neg_risk"] in ("True", "False")
        assert row["market_slug"] == m["slug"]
        assert [row["token1"], row["token2"]] == json.loads(m["clobTokenIds"])
        assert row["condition_id"] == m["conditionId"]
        assert re.fullmatch(r"0x[0-9a-f]{64}", row["condition_id"])
        assert float(row["volume"]) == pytest.approx(m["volumeNum"])
        assert row["ticker"] == m["events"][0]["slug"]
        if m["closed"]:
            assert closed.match(row["closedTime"]) and row["closedTime"] == m["closedTime"]
        else:
            assert row["closedTime"] == ""
        tokens += [row["token1"], row["token2"]]
    assert len(set(tokens)) == len(tokens)
    assert len({m["id"] for m in sample.markets}) == len(sample.markets)
    assert len({m["slug"] for m in sample.markets}) == len(sample.markets)
    answers = {(r["answer1"], r["answer2"]) for r in sample.markets_csv}
    assert ("Yes", "No") in answers and ("Over", "Under") in answers


def test_token_ids_are_76_to_78_digits(sample: Sample) -> None:
    for row in sample.markets_csv:
        for tok in (row["token1"], row["token2"]):
            assert tok.isdigit() and 76 <= len(tok) <= 78 and tok[0] != "0"
    for row in sample.fills:
        for asset in (row["makerAssetId"], row["takerAssetId"]):
            assert asset == "0" or asset in sample.token_of
        assert (row["makerAssetId"] == "0") != (row["takerAssetId"] == "0")


def test_gamma_json_strings_parse(sample: Sample) -> None:
    required = {
        "id", "question", "conditionId", "questionID", "slug", "description", "category",
        "outcomes", "outcomePrices", "clobTokenIds", "umaResolutionStatuses", "startDate",
        "endDate", "createdAt", "updatedAt", "closed", "active", "volume", "volumeNum",
        "liquidity", "liquidityNum", "negRisk", "events",
    }  # fmt: skip
    event_ids = {e["id"] for e in sample.events}
    for m in sample.markets:
        assert required <= m.keys()
        outcomes = json.loads(m["outcomes"])
        prices = json.loads(m["outcomePrices"])
        tokens = json.loads(m["clobTokenIds"])
        statuses = json.loads(m["umaResolutionStatuses"])
        assert len(outcomes) == len(prices) == len(tokens) == 2
        assert all(isinstance(x, str) for x in outcomes + prices + tokens + statuses)
        assert isinstance(m["volume"], str) and float(m["volume"]) == m["volumeNum"]
        assert isinstance(m["liquidity"], str) and float(m["liquidity"]) == m["liquidityNum"]
        assert m["startDate"] < m["endDate"] and m["createdAt"] <= m["startDate"]
        assert len(m["events"]) == 1 and m["events"][0]["id"] in event_ids
        if m["negRisk"]:
            assert re.fullmatch(r"0x[0-9a-f]{64}", m["negRiskMarketID"])
            assert m["groupItemTitle"] and m["groupItemTitle"] in m["question"]
            assert m["events"][0]["negRiskMarketID"] == m["negRiskMarketID"]
        else:
            assert "negRiskMarketID" not in m
        if m["closed"]:
            assert "closedTime" in m
    market_ids = {m["id"] for m in sample.markets}
    listed = [x["id"] for e in sample.events for x in e["markets"]]
    assert sorted(listed) == sorted(market_ids)
    for e in sample.events:
        assert {"id", "slug", "ticker", "title", "category", "tags", "negRisk", "startDate",
                "endDate", "closed", "volume", "liquidity", "markets"} <= e.keys()  # fmt: skip
        assert e["tags"] and all({"id", "label", "slug"} == t.keys() for t in e["tags"])
        assert isinstance(e["volume"], float | int)
        members = [sample.by_id[x["id"]] for x in e["markets"]]
        assert e["volume"] == pytest.approx(sum(m["volumeNum"] for m in members), abs=1e-4)
    categories = {m["category"] for m in sample.markets}
    assert {"Politics", "Elections", "Crypto", "Sports", "Economics"} <= categories


def test_resolution_states(sample: Sample) -> None:
    resolved = closed_price = closed_zero = open_ = 0
    not_final: Counter[str] = Counter()
    resolved_prices: Counter[tuple[str, ...]] = Counter()
    histories: Counter[tuple[str, ...]] = Counter()
    for m in sample.markets:
        prices = json.loads(m["outcomePrices"])
        statuses = json.loads(m["umaResolutionStatuses"])
        status = m.get("umaResolutionStatus")
        if not m["closed"]:
            open_ += 1
            assert all(0 < float(p) < 1 for p in prices)
            assert "closedTime" not in m and status is None and statuses == []
        elif status == "resolved":
            resolved += 1
            resolved_prices[tuple(sorted(prices))] += 1
            histories[tuple(statuses)] += 1
        elif status in ("proposed", "disputed"):  # UMA not final yet: 1/0 prices already
            not_final[status] += 1
            assert sorted(prices) == ["0", "1"]
            assert "resolved" not in statuses
        elif prices == ["0", "0"]:  # closed before UMA: no status at all
            closed_zero += 1
            assert status is None and statuses == []
        else:
            closed_price += 1
            assert all(0 < float(p) < 1 for p in prices)
            assert status is None and statuses == []
    assert resolved > 100 and open_ > 20
    assert closed_price >= 3 and closed_zero >= 2
    assert not_final["proposed"] >= 2 and not_final["disputed"] >= 1
    assert set(resolved_prices) == {("0", "1"), ("0.000002", "0.999998"), ("0.5", "0.5")}
    assert resolved_prices[("0.000002", "0.999998")] == resolved_prices[("0.5", "0.5")] == 1
    # Gamma's history is empty for most markets and lags for many
    assert histories[()] > resolved / 3 and histories[("proposed",)] > 0
    window_end = sample.config.end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert any(m["endDate"] > window_end and not m["closed"] for m in sample.markets)


def test_election_groups_have_exactly_one_winner(sample: Sample) -> None:
    groups = [e for e in sample.events if e["negRisk"]]
    assert len(groups) >= 20
    resolved_groups = 0
    for e in groups:
        members = [sample.by_id[x["id"]] for x in e["markets"]]
        assert 3 <= len(members) <= 8
        assert len({m["negRiskMarketID"] for m in members}) == 1
        assert len({m["groupItemTitle"] for m in members}) == len(members)
        assert all(json.loads(m["outcomes"]) == ["Yes", "No"] for m in members)
        closed = {m["closed"] for m in members}
        assert len(closed) == 1
        if closed == {True}:
            resolved_groups += 1
            prices = [json.loads(m["outcomePrices"]) for m in members]
            assert prices.count(["1", "0"]) == 1
            assert prices.count(["0", "1"]) == len(members) - 1
        else:
            yes = [float(json.loads(m["outcomePrices"])[0]) for m in members]
            assert all(0 < p < 1 for p in yes)
            assert 0.8 < sum(yes) < 1.2  # candidates' prices are a distribution
    assert resolved_groups >= 5


# --- order fills and trades ----------------------------------------------------------------------


def test_fill_rows_are_well_formed_and_sorted(sample: Sample) -> None:
    last = 0
    mixed = total = 0
    for row in sample.fills:
        ts = int(row["timestamp"])
        assert ts >= last
        last = ts
        for key in ("maker", "taker"):
            assert ADDRESS.match(row[key])
            total += 1
            mixed += row[key] != row[key].lower()
        assert TX_HASH.match(row["transactionHash"])
        assert int(row["makerAmountFilled"]) > 0 and int(row["takerAmountFilled"]) > 0
    assert 0.05 <= mixed / total <= 0.15  # importers must lower-case addresses
    for row in sample.trades:
        assert row["maker"] == row["maker"].lower() and row["taker"] == row["taker"].lower()


def test_trades_rows_match_order_filled(sample: Sample) -> None:
    for fill, trade in zip(sample.fills, sample.trades, strict=True):
        ts = datetime.fromtimestamp(int(fill["timestamp"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        assert trade["timestamp"] == ts
        assert trade["transactionHash"] == fill["transactionHash"]
        assert trade["maker"] == fill["maker"].lower()
        assert trade["taker"] == fill["taker"].lower()
        maker_pays_usdc = fill["makerAssetId"] == "0"
        token = fill["takerAssetId"] if maker_pays_usdc else fill["makerAssetId"]
        market_id, side = sample.token_of[token]
        assert trade["market_id"] == market_id and trade["nonusdc_side"] == side
        assert trade["maker_direction"] == ("BUY" if maker_pays_usdc else "SELL")
        assert trade["taker_direction"] == ("SELL" if maker_pays_usdc else "BUY")
        usdc_raw = int(fill["makerAmountFilled" if maker_pays_usdc else "takerAmountFilled"])
        shares_raw = int(fill["takerAmountFilled" if maker_pays_usdc else "makerAmountFilled"])
        usd, tokens, price = (float(trade[k]) for k in ("usd_amount", "token_amount", "price"))
        assert usd == usdc_raw / 1e6 and tokens == shares_raw / 1e6
        assert abs(price - usd / tokens) <= 1e-9
        assert 0 < price < 1


def test_each_match_has_one_taker_row_summing_the_makers(sample: Sample) -> None:
    by_tx: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in sample.fills:
        by_tx[row["transactionHash"]].append(row)
    by_id = sample.by_id
    for tx, rows in by_tx.items():
        assert 2 <= len(rows) <= 4, tx
        assert len({r["timestamp"] for r in rows}) == 1
        taker_rows = [r for r in rows if r["taker"].lower() in EXCHANGES]
        assert len(taker_rows) == 1, tx
        taker_row = taker_rows[0]
        assert rows[-1] is taker_row  # the taker order's event comes after its makers'
        makers = [r for r in rows if r is not taker_row]
        assert int(taker_row["makerAmountFilled"]) == sum(
            int(r["takerAmountFilled"]) for r in makers
        )
        assert int(taker_row["takerAmountFilled"]) == sum(
            int(r["makerAmountFilled"]) for r in makers
        )
        taker_wallet = taker_row["maker"].lower()
        for r in makers:
            assert r["taker"].lower() == taker_wallet != r["maker"].lower()
            assert r["makerAssetId"] == taker_row["takerAssetId"]
            assert r["takerAssetId"] == taker_row["makerAssetId"]
        token = next(a for a in (taker_row["makerAssetId"], taker_row["takerAssetId"]) if a != "0")
        market = by_id[sample.token_of[token][0]]
        exchange = NEG_RISK_EXCHANGE if market["negRisk"] else CTF_EXCHANGE
        assert taker_row["taker"].lower() == exchange
        # maker prices sit on 0.01 ticks strictly inside (0, 1)
        for r in makers:
            usdc = int(r["makerAmountFilled" if r["makerAssetId"] == "0" else "takerAmountFilled"])
            shares = int(
                r["takerAmountFilled" if r["makerAssetId"] == "0" else "makerAmountFilled"]
            )
            cents = usdc * 100 / shares
            assert cents == round(cents) and 1 <= cents <= 99


def test_trades_within_market_lifetime(sample: Sample) -> None:
    window_end = sample.config.end.timestamp()

    def ts(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    bounds = {
        m["id"]: (ts(m["startDate"]), min(ts(m["endDate"]), window_end)) for m in sample.markets
    }
    for trade, fill in zip(sample.trades, sample.fills, strict=True):
        lo, hi = bounds[trade["market_id"]]
        assert lo <= int(fill["timestamp"]) <= hi


def test_prices_drift_to_the_outcome(sample: Sample) -> None:
    """In resolved markets the last traded price of the winning token is high."""
    last_price: dict[tuple[str, str], float] = {}
    for trade in sample.trades:
        last_price[(trade["market_id"], trade["nonusdc_side"])] = float(trade["price"])
    winners = losers = 0
    hits = 0
    for (market_id, side), price in last_price.items():
        if not sample.has_winner(market_id):
            continue
        prices = json.loads(sample.by_id[market_id]["outcomePrices"])
        won = prices[0 if side == "token1" else 1] == "1"
        winners += won
        losers += not won
        hits += (price >= 0.5) == won
    assert winners > 50 and losers > 50
    assert hits / (winners + losers) > 0.85


def test_sharp_wallets_are_profitable(sample: Sample) -> None:
    sharp = set(sample.summary.sharp_wallets)
    pnl = dict.fromkeys(sharp, 0.0)
    buys = dict.fromkeys(sharp, 0)
    for row in sample.fills:
        wallet = row["maker"].lower()
        if wallet not in sharp:
            continue
        if row["makerAssetId"] == "0":  # the wallet buys shares with USDC
            token = row["takerAssetId"]
            cost = int(row["makerAmountFilled"]) / 1e6
            shares = int(row["takerAmountFilled"]) / 1e6
            # the eventual winner: resolved, or closed at 1/0 while UMA is not final yet
            market_id = sample.token_of[token][0]
            assert sample.resolved(market_id) or sample.has_winner(market_id)
            pnl[wallet] += shares * sample.payout(token) - cost
            buys[wallet] += 1
        else:  # a sale
            token = row["makerAssetId"]
            proceeds = int(row["takerAmountFilled"]) / 1e6
            shares = int(row["makerAmountFilled"]) / 1e6
            pnl[wallet] += proceeds - shares * sample.payout(token)
    for wallet in sharp:
        assert buys[wallet] >= 5, wallet
        assert pnl[wallet] > 0, (wallet, pnl[wallet])


def test_volume_counts_each_match_once(sample: Sample) -> None:
    volume: dict[str, float] = defaultdict(float)
    for fill, trade in zip(sample.fills, sample.trades, strict=True):
        if fill["taker"].lower() in EXCHANGES:
            volume[trade["market_id"]] += float(trade["usd_amount"])
    for m in sample.markets:
        assert m["volumeNum"] == pytest.approx(volume.get(m["id"], 0.0), abs=1e-5)


# --- streaming API -------------------------------------------------------------------------------


def test_csv_equals_the_batches(sample: Sample) -> None:
    opts = pacsv.ConvertOptions(column_types=ORDER_FILLED_SCHEMA)
    from_csv = pacsv.read_csv(sample.out / "orderFilled.csv", convert_options=opts)
    batches = list(iter_order_fill_batches(sample.config))
    from_iter = pa.Table.from_batches(batches, schema=ORDER_FILLED_SCHEMA)
    assert from_csv.equals(from_iter)
    trades = pa.Table.from_batches(list(iter_trade_batches(sample.config)))
    assert trades.schema == TRADES_SCHEMA
    assert trades.num_rows == from_iter.num_rows
    assert trades.column("transactionHash").equals(from_iter.column("transactionHash"))


def test_chunk_size_does_not_change_rows() -> None:
    config = SampleConfig(scale=0.4, seed=3)
    big = list(iter_order_fill_batches(config, chunk_rows=10_000_000))
    small = list(iter_order_fill_batches(config, chunk_rows=777))
    assert len(big) == 1
    assert all(b.num_rows == 777 for b in small[:-1]) and 0 < small[-1].num_rows <= 777
    assert all(b.schema == ORDER_FILLED_SCHEMA for b in small)
    assert pa.Table.from_batches(small).equals(pa.Table.from_batches(big))
    assert sum(b.num_rows for b in big) == count_order_fills(config)


def test_multi_slice_generation_is_sorted_and_chunked() -> None:
    config = SampleConfig(scale=12)  # more than one internal time slice
    total = 0
    last = 0
    for batch in iter_order_fill_batches(config, chunk_rows=50_000):
        ts = batch.column("timestamp").to_numpy()
        assert ts[0] >= last and (ts[1:] >= ts[:-1]).all()
        last = int(ts[-1])
        total += batch.num_rows
    assert total == count_order_fills(config)
    assert 0.9 * 12 * FILLS_PER_SCALE <= total <= 1.1 * 12 * FILLS_PER_SCALE


def test_fills_grow_linearly_markets_sublinearly() -> None:
    counts = {s: count_order_fills(SampleConfig(scale=s)) for s in (0.5, 1.0, 2.0, 4.0)}
    for s, n in counts.items():
        assert abs(n / (s * FILLS_PER_SCALE) - 1) < 0.1, (s, n)
    assert counts[4.0] / counts[1.0] == pytest.approx(4, rel=0.1)
    assert SampleConfig(scale=4).n_markets == pytest.approx(2 * SampleConfig().n_markets, rel=0.05)
    assert SampleConfig(scale=1e6).n_markets <= 20_000


def test_generate_markets_matches_the_sample(sample: Sample) -> None:
    markets, events = generate_markets(sample.config)
    assert [m["id"] for m in markets] == [m["id"] for m in sample.markets]
    assert [e["id"] for e in events] == [e["id"] for e in sample.events]
    strip = {"volume", "volumeNum"}
    for a, b in zip(markets, sample.markets, strict=True):
        assert {k: v for k, v in a.items() if k not in strip} == {
            k: v for k, v in b.items() if k not in strip
        }


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SampleConfig(scale=0)
    with pytest.raises(ValueError):
        SampleConfig(start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 1, 2, tzinfo=UTC))
