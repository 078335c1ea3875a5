"""The sample's Conditional Tokens position events (``ctfEvents.csv``), consistent with its fills.

The generated fills alone are not a consistent world: a market maker sells shares it never
bought. On chain those shares come from splitting USDC (docs/architecture.md §4-§5). This
module plans, next to the fills, the events that make every wallet's share balance hold:

- ``PositionSplit``: whenever a wallet's sells of a token (its own fills are the rows where it
  is the ``maker``) would take its balance below zero, it splits USDC shortly before. Split
  totals climb a 1-2-5 ladder of round amounts (10, 20, 50, 100, ... shares), so a market
  maker splits a few growing chunks rather than once per sale. Plain markets split through the
  ConditionalTokens contract; neg-risk markets through the NegRiskAdapter, which emits its own
  ``PositionSplit`` after the inner ConditionalTokens split whose stakeholder is the adapter
  (as on chain; the inner event is not the user's position change).
- ``PositionsConverted`` (NegRiskAdapter): a few wallets per neg-risk group convert NO shares
  of k questions into YES shares of the other questions; the NO shares they burn are funded
  like sells.
- ``PositionsMerge``: after its last activity in a market, some wallets merge complete sets
  back into USDC (before the market resolves).
- ``ConditionResolution``: every resolved market, with the payout numerators of its outcome
  (``[1,0]``, ``[0,1]``, ``[1,1]`` for a 50/50), from the UMA CTF adapter (plain markets) or
  the NegRiskAdapter (neg-risk markets), shortly before Gamma's ``closedTime``.
- ``PayoutRedemption``: after resolution most holders of a paying token (and a few holders of
  only losing tokens, for 0 USDC) redeem their whole balance; the NegRiskAdapter variant
  carries ``amounts`` ``[yes, no]``.

Ordering: a split comes at least a second before the balance change it funds; merges at least
a minute after the wallet's last change in the market; redemptions at least a minute after the
resolution. Balance changes sharing a second count credits before debits (fills carry no log
index in poly_data's layout). Timestamps sit on 2-second Polygon blocks; ids, tx hashes and
log indexes are unique. Everything comes from ``numpy.random.default_rng([seed, 6, ...])``.

The layout is the ``ctfEvents.csv`` bootstrap file of docs/architecture.md §3.1. The
NegRiskAdapter's own events have no collateral, parent collection or partition in their ABI:
those cells are empty. There is about one event per fill: the generated wallets spread their
trading over many markets, and every wallet that sells in a market needs its own inventory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CONDITIONAL_TOKENS",
    "CTF_EVENTS_CSV_COLUMNS",
    "NEG_RISK_ADAPTER",
    "UMA_CTF_ADAPTER",
    "USDC_E",
    "WRAPPED_COLLATERAL",
    "ZERO_COLLECTION",
    "CtfMarket",
    "CtfPlanner",
]

#: Polygon contracts (docs/architecture.md §3.1; USDC.e, the NegRiskAdapter's WrappedCollateral
#: and the UMA CTF adapter v2 as listed in Polymarket's contract docs).
CONDITIONAL_TOKENS = "0x4d97dcd97ec945f40cf65f87097ace5ea0476045"
NEG_RISK_ADAPTER = "0xd91e80cf2e7be2e162c6513ced06f1dd0da35296"
USDC_E = "0x2791bca1f2de4661ed88a30c99a7a9449aa84174"
WRAPPED_COLLATERAL = "0x3a3bd7bb9528e159577f7c2e685cc81a765002e2"
UMA_CTF_ADAPTER = "0x6a9d222616c90fca5754cd1333cfd9b7fb6a4f74"
ZERO_COLLECTION = "0x" + "00" * 32

CTF_EVENTS_CSV_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "block_number",
    "log_index",
    "transaction_hash",
    "contract",
    "event",
    "stakeholder",
    "condition_id",
    "neg_risk_market_id",
    "question_id",
    "collateral_token",
    "parent_collection_id",
    "index_sets",
    "amount",
    "amounts",
    "payout",
    "outcome_slot_count",
    "payout_numerators",
)

# Polygon PoS: about one block every 2 s; block 51,750,000 is placed at 2024-01-01T00:00:00Z
_REF_TS = 1_704_067_200
_REF_BLOCK = 51_750_000
_BLOCK_SECONDS = 2

_RAW = 1_000_000  # raw units per share (6 decimals)
# split totals climb a 1-2-5 ladder of round share amounts: 10, 20, 50, 100, ...
_LADDER = np.array([m * 10**e * _RAW for e in range(1, 13) for m in (1, 2, 5)], dtype=np.int64)
_MERGE_P_SPLITTER = 0.3  # P(a wallet that split merges its complete sets back)
_MERGE_P_OTHER = 0.05
_REDEEM_P_WINNER = 0.7
_REDEEM_P_LOSER = 0.08
_CONVERT_GROUP_P = 0.5  # share of neg-risk groups with conversions
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MIN_GAP = 60  # seconds between a wallet's last change and its merge / redemption


@dataclass(frozen=True)
class CtfMarket:
    """What the planner needs of one market (index = position in the sample's market list)."""

    condition_id: str
    question_id: str
    neg_risk_market_id: str | None  # None: a plain (non-neg-risk) market
    created: int
    trade_start: int
    trade_end: int
    resolved_at: int | None  # ConditionResolution time; None when not resolved on chain
    payout: tuple[int, int] | None  # payout numerators


@dataclass
class _State:
    """Per (wallet, market) running state, keys sorted (key = wallet * n_markets + market)."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fills1: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # w/o splits
    fills2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    need: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # lifetime need
    split: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # split so far
    last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # last change

    def columns(self) -> tuple[np.ndarray, ...]:
        return self.fills1, self.fills2, self.need, self.split, self.last


@dataclass
class _Actions:
    """User actions (one transaction each) of one kind, as parallel arrays."""

    t: list[np.ndarray] = field(default_factory=list)
    wallet: list[np.ndarray] = field(default_factory=list)
    market: list[np.ndarray] = field(default_factory=list)
    amount: list[np.ndarray] = field(default_factory=list)

    def add(
        self, t: np.ndarray, wallet: np.ndarray, market: np.ndarray, amount: np.ndarray
    ) -> None:
        self.t.append(t.astype(np.int64))
        self.wallet.append(wallet.astype(np.int64))
        self.market.append(market.astype(np.int64))
        self.amount.append(amount.astype(np.int64))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        def cat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)

        return cat(self.t), cat(self.wallet), cat(self.market), cat(self.amount)


@dataclass(frozen=True)
class _Conversion:
    t: int
    wallet: int
    group: int  # index into the planner's groups
    index_set: int  # bit i = question i of the group
    amount: int


class CtfPlanner:
    """Plans the position events of one sample, fed its fills time slice by time slice.

    ``add_fills`` takes each slice's own-fill balance changes (wallet index, token index
    ``2 * market + outcome``, signed raw shares, unix time), slices in time order. ``finish``
    returns the events in the ``ctfEvents.csv`` layout, sorted by block and log index.
    Memory: the per (wallet, market) state, not the fills.
    """

    def __init__(
        self,
        markets: Sequence[CtfMarket],
        groups: Sequence[Sequence[int]],
        wallets: Sequence[str],
        *,
        seed: int,
        t_end: int,
        converters: np.ndarray,
    ) -> None:
        """``groups``: the neg-risk groups' market indexes in question order; ``wallets``:
        lower-case addresses by wallet index; ``converters``: wallet indexes (market makers)
        that may convert; ``t_end``: the sample's last second."""
        self.markets = list(markets)
        self.groups = [list(g) for g in groups]
        self.wallets = list(wallets)
        self.seed = seed
        self.t_end = t_end
        self.n_markets = len(self.markets)
        self.created = np.array([m.created for m in self.markets], dtype=np.int64)
        self._neg_risk = np.array([m.neg_risk_market_id is not None for m in self.markets])
        # string dictionaries of the coded event columns
        self._stakeholders = pa.array([*self.wallets, NEG_RISK_ADAPTER, UMA_CTF_ADAPTER])
        self._adapter_code, self._uma_code = len(self.wallets), len(self.wallets) + 1
        self._condition_dictionary = pa.array([m.condition_id for m in self.markets])
        self._question_ids = pa.array([m.question_id for m in self.markets])
        self._neg_risk_market_ids = pa.array([m.neg_risk_market_id or "" for m in self.markets])
        self.state = _State()
        self.splits = _Actions()
        self.conversions = self._plan_conversions(np.asarray(converters, dtype=np.int64))
        self._next_conversion = 0
        self._slice = 0

    # --- conversions --------------------------------------------------------------------------

    def _plan_conversions(self, converters: np.ndarray) -> list[_Conversion]:
        rng = np.random.default_rng([self.seed, 6, 0])
        planned: list[_Conversion] = []
        for g, members in enumerate(self.groups):
            first = self.markets[members[0]]
            lo, hi = first.trade_start + 3600, first.trade_end - 3600
            if rng.random() >= _CONVERT_GROUP_P or hi <= lo or len(members) < 2:
                continue
            for _ in range(int(rng.integers(1, 4))):
                k = int(rng.integers(1, len(members)))
                chosen = rng.choice(len(members), size=k, replace=False)
                index_set = int(sum(1 << int(i) for i in chosen))
                planned.append(
                    _Conversion(
                        t=int(rng.integers(lo, hi)),
                        wallet=int(converters[int(rng.integers(len(converters)))]),
                        group=g,
                        index_set=index_set,
                        amount=int(_LADDER[int(rng.integers(2, 9))]),
                    )
                )
        planned.sort(key=lambda c: (c.t, c.wallet, c.group))
        return planned

    def _conversion_rows(self, until: int) -> tuple[np.ndarray, ...]:
        """Balance changes of the conversions up to ``until`` (inclusive) not yet fed."""
        t: list[int] = []
        wallet: list[int] = []
        token: list[int] = []
        delta: list[int] = []
        while self._next_conversion < len(self.conversions):
            c = self.conversions[self._next_conversion]
            if c.t > until:
                break
            self._next_conversion += 1
            for i, mi in enumerate(self.groups[c.group]):
                held_no = bool(c.index_set >> i & 1)
                # NO shares of the chosen questions burn; YES shares of the others are minted
                t.append(c.t)
                wallet.append(c.wallet)
                token.append(2 * mi + (1 if held_no else 0))
                delta.append(-c.amount if held_no else c.amount)
        return tuple(np.array(x, dtype=np.int64) for x in (t, wallet, token, delta))

    # --- splits -------------------------------------------------------------------------------

    def add_fills(
        self, t: np.ndarray, wallet: np.ndarray, token: np.ndarray, delta: np.ndarray
    ) -> None:
        """One time slice of own-fill balance changes (every slice, in time order)."""
        until = int(t.max()) if len(t) else -1
        ct, cw, ck, cd = self._conversion_rows(until)
        self._add_changes(
            np.concatenate([t.astype(np.int64), ct]),
            np.concatenate([wallet.astype(np.int64), cw]),
            np.concatenate([token.astype(np.int64), ck]),
            np.concatenate([delta.astype(np.int64), cd]),
        )

    def _add_changes(
        self, t: np.ndarray, wallet: np.ndarray, token: np.ndarray, delta: np.ndarray
    ) -> None:
        self._slice += 1
        if len(t) == 0:
            return
        market = token // 2
        key = wallet * self.n_markets + market
        order = np.lexsort((delta < 0, t, key))  # by key, time, credits before debits
        t, key, token, delta, market = (a[order] for a in (t, key, token, delta, market))
        yes = token % 2 == 0
        uk, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        last_row = np.append(first[1:], len(key)) - 1

        # carried state of the slice's keys (zero for keys never seen)
        st = self.state
        pos = np.searchsorted(st.keys, uk)
        found = pos < len(st.keys)
        found[found] = st.keys[pos[found]] == uk[found]
        prev = []
        for col in st.columns():
            v = np.zeros(len(uk), np.int64)
            v[found] = col[pos[found]]
            prev.append(v)
        f1, f2, need0, split0, _ = prev

        frame = pd.DataFrame(
            {"k": inverse, "d1": np.where(yes, delta, 0), "d2": np.where(yes, 0, delta)}
        )
        cum = frame.groupby("k", sort=False)[["d1", "d2"]].cumsum().to_numpy()
        bal1 = f1[inverse] + cum[:, 0]
        bal2 = f2[inverse] + cum[:, 1]
        deficit = np.maximum(-bal1, -bal2)  # shares the wallet lacks without any split
        run = pd.Series(deficit).groupby(inverse, sort=False).cummax().to_numpy()
        need = np.maximum(need0[inverse], run)
        rung = _LADDER[np.minimum(np.searchsorted(_LADDER, need), len(_LADDER) - 1)]
        total = np.maximum(split0[inverse], np.where(need > 0, rung, 0))
        before = np.empty_like(total)
        before[1:] = total[:-1]
        before[first] = split0
        grow = total > before
        if grow.any():
            rng = np.random.default_rng([self.seed, 6, 1, self._slice])
            rows = np.flatnonzero(grow)
            when = t[rows] - rng.integers(1, 3600, len(rows))
            when = np.maximum(when, self.created[market[rows]] + _BLOCK_SECONDS)
            self.splits.add(
                when, key[rows] // self.n_markets, market[rows], total[rows] - before[rows]
            )

        new = (
            f1 + cum[last_row, 0],
            f2 + cum[last_row, 1],
            need[last_row],
            total[last_row],
            t[last_row],
        )
        for col, values in zip(st.columns(), new, strict=True):
            col[pos[found]] = values[found]
        missing = ~found
        if missing.any():
            at = pos[missing]
            st.keys = np.insert(st.keys, at, uk[missing])
            st.fills1, st.fills2, st.need, st.split, st.last = (
                np.insert(col, at, values[missing])
                for col, values in zip(st.columns(), new, strict=True)
            )

    # --- after the last slice -----------------------------------------------------------------

    def finish(self) -> pa.Table:
        """All events in the ``ctfEvents.csv`` layout (``CTF_EVENTS_CSV_COLUMNS``)."""
        # conversions after the last fill
        while self._next_conversion < len(self.conversions):
            self._add_changes(*self._conversion_rows(self.t_end))
        rng = np.random.default_rng([self.seed, 6, 2])
        st = self.state
        wallet = st.keys // self.n_markets
        market = st.keys % self.n_markets
        bal1 = st.fills1 + st.split
        bal2 = st.fills2 + st.split
        if (bal1 < 0).any() or (bal2 < 0).any():  # pragma: no cover - planner invariant
            raise AssertionError("the split plan leaves a negative share balance")
        resolved_at = np.array(
            [m.resolved_at if m.resolved_at is not None else -1 for m in self.markets],
            dtype=np.int64,
        )[market]
        payout = np.array(
            [m.payout if m.payout is not None else (0, 0) for m in self.markets], dtype=np.int64
        )[market]

        # merges: complete sets back to USDC after the wallet's last change, before resolution
        limit = np.where(resolved_at >= 0, resolved_at - _MIN_GAP, self.t_end)
        room = limit - (st.last + _MIN_GAP)
        sets = np.minimum(bal1, bal2)
        p_merge = np.where(st.split > 0, _MERGE_P_SPLITTER, _MERGE_P_OTHER)
        merging = (sets > 0) & (room > 0) & (rng.random(len(sets)) < p_merge)
        full = rng.random(len(sets)) < 0.6
        merge_amount = np.where(full, sets, sets // 2 // 10_000 * 10_000)
        merging &= merge_amount > 0
        merge_t = (
            st.last + _MIN_GAP + (rng.random(len(sets)) * np.maximum(room, 1)).astype(np.int64)
        )
        bal1 = bal1 - np.where(merging, merge_amount, 0)
        bal2 = bal2 - np.where(merging, merge_amount, 0)

        # redemptions: the whole balance, after the resolution
        paying = np.where(payout[:, 0] > 0, bal1, 0) + np.where(payout[:, 1] > 0, bal2, 0)
        earliest = np.maximum.reduce([resolved_at, st.last, np.where(merging, merge_t, 0)])
        earliest = earliest + _MIN_GAP
        p_redeem = np.where(paying > 0, _REDEEM_P_WINNER, _REDEEM_P_LOSER)
        redeeming = (
            (resolved_at >= 0)
            & (bal1 + bal2 > 0)
            & (earliest < self.t_end)
            & (rng.random(len(sets)) < p_redeem)
        )
        delay = rng.exponential(3 * 86_400, len(sets)).astype(np.int64)
        late = earliest + delay > self.t_end
        spread = (rng.random(len(sets)) * np.maximum(self.t_end - earliest, 1)).astype(np.int64)
        redeem_t = np.where(late, earliest + spread, earliest + delay)
        denominator = np.maximum(payout.sum(axis=1), 1)
        redeem_payout = (bal1 * payout[:, 0] + bal2 * payout[:, 1]) // denominator

        split_t, split_w, split_m, split_a = self.splits.arrays()
        rows = _Rows()
        self._add_split_merge(rows, _SPLIT, split_t, split_w, split_m, split_a)
        self._add_split_merge(
            rows,
            _MERGE,
            merge_t[merging],
            wallet[merging],
            market[merging],
            merge_amount[merging],
        )
        self._add_redemptions(
            rows,
            redeem_t[redeeming],
            wallet[redeeming],
            market[redeeming],
            bal1[redeeming],
            bal2[redeeming],
            redeem_payout[redeeming],
        )
        self._add_resolutions(rows)
        self._add_conversions(rows)
        return self._table(rows)

    # --- event rows ---------------------------------------------------------------------------

    def _user_and_inner(
        self, rows: _Rows, event: int, t: np.ndarray, wallet: np.ndarray, market: np.ndarray,
        **values: np.ndarray,
    ) -> None:  # fmt: skip
        """The user's event (ConditionalTokens for plain markets, the NegRiskAdapter's for
        neg-risk ones) and, for neg-risk markets, the adapter's inner ConditionalTokens event
        earlier in the same transaction."""
        neg = self._neg_risk[market]
        tx = rows.new_transactions(len(t))
        rows.add(
            t=t,
            tx=tx,
            sub=np.ones(len(t), np.int64),
            event=np.full(len(t), event),
            contract=neg.astype(np.int64),
            who=wallet,
            market=market,
            collateral=np.where(neg, -1, _USDC),
            parent=np.where(neg, -1, 0),
            index_sets=np.where(neg, -1, 0),
            **values,
        )
        inner = {k: v[neg] for k, v in values.items() if k not in ("amounts_yes", "amounts_no")}
        rows.add(
            t=t[neg],
            tx=tx[neg],
            sub=np.zeros(int(neg.sum()), np.int64),
            event=np.full(int(neg.sum()), event),
            contract=np.zeros(int(neg.sum()), np.int64),
            who=np.full(int(neg.sum()), self._adapter_code),
            market=market[neg],
            collateral=np.full(int(neg.sum()), _WCOL),
            parent=np.zeros(int(neg.sum()), np.int64),
            index_sets=np.zeros(int(neg.sum()), np.int64),
            **inner,
        )

    def _add_split_merge(
        self, rows: _Rows, event: int, t: np.ndarray, wallet: np.ndarray, market: np.ndarray,
        amount: np.ndarray,
    ) -> None:  # fmt: skip
        self._user_and_inner(rows, event, t, wallet, market, amount=amount)

    def _add_redemptions(
        self, rows: _Rows, t: np.ndarray, wallet: np.ndarray, market: np.ndarray,
        bal1: np.ndarray, bal2: np.ndarray, payout: np.ndarray,
    ) -> None:  # fmt: skip
        neg = self._neg_risk[market]
        self._user_and_inner(
            rows,
            _REDEMPTION,
            t,
            wallet,
            market,
            payout=payout,
            amounts_yes=np.where(neg, bal1, -1),
            amounts_no=np.where(neg, bal2, -1),
        )

    def _add_resolutions(self, rows: _Rows) -> None:
        resolved = [i for i, m in enumerate(self.markets) if m.resolved_at is not None and m.payout]
        market = np.array(resolved, dtype=np.int64)
        n = len(market)
        t = np.array([self.markets[i].resolved_at for i in resolved], dtype=np.int64)
        numerators = [f"{a}|{b}" for a, b in (self.markets[i].payout or () for i in resolved)]
        codes = np.array([rows.numerator_code(x) for x in numerators], dtype=np.int64)
        rows.add(
            t=t,
            tx=rows.new_transactions(n),
            sub=np.ones(n, np.int64),
            event=np.full(n, _RESOLUTION),
            contract=np.zeros(n, np.int64),
            who=np.where(self._neg_risk[market], self._adapter_code, self._uma_code),
            market=market,
            question=market,
            outcome_slot_count=np.full(n, 2),
            numerators=codes,
        )

    def _add_conversions(self, rows: _Rows) -> None:
        n = len(self.conversions)
        c = self.conversions
        rows.add(
            t=np.array([x.t for x in c], dtype=np.int64),
            tx=rows.new_transactions(n),
            sub=np.ones(n, np.int64),
            event=np.full(n, _CONVERSION),
            contract=np.ones(n, np.int64),
            who=np.array([x.wallet for x in c], dtype=np.int64),
            neg_risk_market=np.array([self.groups[x.group][0] for x in c], dtype=np.int64),
            index_sets=np.array([rows.index_set_code(str(x.index_set)) for x in c], np.int64),
            amount=np.array([x.amount for x in c], dtype=np.int64),
        )

    def _table(self, rows: _Rows) -> pa.Table:
        """Blocks, log indexes and transaction hashes; rows in (block, log index) order."""
        col = rows.columns()
        if len(col["t"]) == 0:
            return pa.table({name: pa.array([], pa.string()) for name in CTF_EVENTS_CSV_COLUMNS})
        rng = np.random.default_rng([self.seed, 6, 3])
        block = _REF_BLOCK + (col["t"] - _REF_TS) // _BLOCK_SECONDS
        codes = col["tx"]  # dense transaction numbers 0..n_tx-1
        n_tx = rows.n_tx
        tx_block = np.zeros(n_tx, np.int64)
        tx_block[codes] = block
        # transactions of a block in a random order, after other transactions of the block;
        # each spans a few logs (USDC and ERC-1155 transfers around ours)
        tx_order = np.lexsort((rng.random(n_tx), tx_block))
        rank = np.empty(n_tx, np.int64)
        rank[tx_order] = np.arange(n_tx)
        width = rng.integers(4, 12, n_tx)[tx_order]
        sorted_block = tx_block[tx_order]
        start = np.cumsum(width) - width
        block_first = np.r_[True, sorted_block[1:] != sorted_block[:-1]]
        base_at_block = np.maximum.accumulate(np.where(block_first, start, 0))
        block_start = np.maximum.accumulate(np.where(block_first, np.arange(n_tx), 0))
        offset = rng.integers(0, 200, n_tx)[block_start]
        first_log = np.empty(n_tx, np.int64)
        first_log[tx_order] = start - base_at_block + offset
        log_index = first_log[codes] + 1 + 2 * col["sub"]
        hashes = _hash_text(rng, n_tx)
        order = np.lexsort((log_index, rank[codes], block))
        col = {k: v[order] for k, v in col.items()}
        block, log_index, codes = block[order], log_index[order], codes[order]

        def coded(index: np.ndarray, dictionary: Sequence[str] | pa.Array) -> pa.Array:
            return pa.DictionaryArray.from_arrays(
                pa.array(index.astype(np.int32), mask=index < 0),
                dictionary if isinstance(dictionary, pa.Array) else pa.array(dictionary),
            )

        def optional(values: np.ndarray) -> pa.Array:
            return pa.array(values, type=pa.int64(), mask=values < 0)

        yes, no = optional(col["amounts_yes"]), optional(col["amounts_no"])
        amounts = pc.binary_join_element_wise(
            pc.cast(yes, pa.string()), pc.cast(no, pa.string()), "|"
        )
        hash_rows = hashes[codes]
        n = len(codes)
        arrays = {
            "timestamp": pa.array(_REF_TS + (block - _REF_BLOCK) * _BLOCK_SECONDS),
            "block_number": pa.array(block),
            "log_index": pa.array(log_index),
            "transaction_hash": pa.StringArray.from_buffers(
                n,
                pa.py_buffer(np.arange(n + 1, dtype=np.int32) * 66),
                pa.py_buffer(np.ascontiguousarray(hash_rows).tobytes()),
            ),
            "contract": coded(col["contract"], _CONTRACT_NAMES),
            "event": coded(col["event"], _EVENT_NAMES),
            "stakeholder": coded(col["who"], self._stakeholders),
            "condition_id": coded(col["market"], self._condition_dictionary),
            "neg_risk_market_id": coded(col["neg_risk_market"], self._neg_risk_market_ids),
            "question_id": coded(col["question"], self._question_ids),
            "collateral_token": coded(col["collateral"], _COLLATERALS),
            "parent_collection_id": coded(col["parent"], [ZERO_COLLECTION]),
            "index_sets": coded(col["index_sets"], list(rows.index_sets)),
            "amount": optional(col["amount"]),
            "amounts": amounts,
            "payout": optional(col["payout"]),
            "outcome_slot_count": optional(col["outcome_slot_count"]),
            "payout_numerators": coded(col["numerators"], list(rows.numerators) or [""]),
        }
        return pa.Table.from_arrays(
            [arrays[name] for name in CTF_EVENTS_CSV_COLUMNS], names=list(CTF_EVENTS_CSV_COLUMNS)
        )


_SPLIT, _MERGE, _REDEMPTION, _RESOLUTION, _CONVERSION = range(5)
_EVENT_NAMES = (
    "PositionSplit",
    "PositionsMerge",
    "PayoutRedemption",
    "ConditionResolution",
    "PositionsConverted",
)
_CONTRACT_NAMES = ("conditional_tokens", "neg_risk_adapter")
_USDC, _WCOL = 0, 1
_COLLATERALS = (USDC_E, WRAPPED_COLLATERAL)
# integer-coded columns of the event rows; -1 is NULL
_ROW_COLUMNS = (
    "t", "tx", "sub", "event", "contract", "who", "market", "neg_risk_market", "question",
    "collateral", "parent", "index_sets", "amount", "amounts_yes", "amounts_no", "payout",
    "outcome_slot_count", "numerators",
)  # fmt: skip


class _Rows:
    """Event rows as integer-coded columns (strings come from dictionaries at the end)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in _ROW_COLUMNS}
        self.n_tx = 0
        self.index_sets: dict[str, int] = {"1|2": 0}
        self.numerators: dict[str, int] = {}

    def new_transactions(self, n: int) -> np.ndarray:
        tx = np.arange(self.n_tx, self.n_tx + n, dtype=np.int64)
        self.n_tx += n
        return tx

    def index_set_code(self, text: str) -> int:
        return self.index_sets.setdefault(text, len(self.index_sets))

    def numerator_code(self, text: str) -> int:
        return self.numerators.setdefault(text, len(self.numerators))

    def add(self, **columns: np.ndarray) -> None:
        n = len(columns["t"])
        for name in _ROW_COLUMNS:
            values = columns.get(name)
            self.parts[name].append(
                np.full(n, -1, np.int64) if values is None else np.asarray(values, np.int64)
            )

    def columns(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}


def _hash_text(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 66) uint8: n distinct random ``0x`` + 64 lower-case hex transaction hashes."""
    raw = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    prefix = raw[:, :8].copy().view(np.uint64).ravel()
    if len(np.unique(prefix)) != n:  # pragma: no cover - about n^2 / 2^65 odds
        raise AssertionError("duplicate transaction hash")
    text = np.empty((n, 66), dtype=np.uint8)
    text[:, 0], text[:, 1] = ord("0"), ord("x")
    text[:, 2::2] = _HEX[raw >> 4]
    text[:, 3::2] = _HEX[raw & 15]
    return text
