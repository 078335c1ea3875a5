"""The ledger's hot loops as plain Python functions compiled once by numba (cached on
disk, run without the GIL): the average-cost pass (``ledger.run_ledger``'s "loop" engine),
the per-position summary and last-trade passes (``position_summary.py``), and the
counting sort, gather and merge that group the fills (``fill_reader.py``).

They sit together because they share one switch: each ``compiled_*`` is None when numba
is missing, and its caller then takes the numpy path (the tests set them to None to check
both paths give the same numbers). Callers read them through this module at call time
(``ledger_kernels.compiled_summary``), never by ``from ... import``, so that switch holds.
"""

from __future__ import annotations

import numpy as np

from polymkt_dagster.lib.wallets.position_events import (
    KIND_EVENT_SELL_ALL,
    KIND_EVENT_SELL_AT_AVG,
    KIND_FILL,
)


def _ledger_loop(
    group: np.ndarray,
    is_buy: np.ndarray,
    kind: np.ndarray,
    shares: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
    micro: float,
    out: np.ndarray,
    starts: np.ndarray,
) -> None:
    """The ledger as one compiled pass over the sorted rows (numba), same rules as the
    scans. ``out`` rows: shares before/after, avg before/after, realized, tracked, oversold,
    oversold proceeds, price (shares in micro-share integers held in float64, avg in USDC
    per share)."""
    held = 0.0
    avg = 0.0
    for i in range(len(group)):
        starts[i] = i == 0 or group[i] != group[i - 1]
        if starts[i]:
            held = 0.0
            avg = 0.0
        out[0, i] = held
        out[2, i] = avg
        q = np.rint(shares[i] * micro)
        p = price[i]
        if is_buy[i]:
            after = held + q
            avg = (held * avg + q * p + fee[i] * micro) / after
            held = after
            out[4, i] = 0.0
            out[5, i] = 0.0
            out[6, i] = 0.0
            out[7, i] = 0.0
        else:
            if kind[i] == KIND_EVENT_SELL_ALL:  # a redemption of everything held
                q = held
            if kind[i] == KIND_EVENT_SELL_AT_AVG:  # a conversion's NO side: at the average
                p = avg
            sold = q if q < held else held
            over = q - sold
            fee_held = fee[i] * sold / q if q > 0 else 0.0
            out[4, i] = sold * (p - avg) / micro - fee_held
            out[5, i] = sold
            out[6, i] = over
            out[7, i] = over * p / micro - (fee[i] - fee_held)
            held -= sold
        out[1, i] = held
        out[3, i] = avg
        out[8, i] = p


def _summary_loop(
    gkey: np.ndarray,
    ts: np.ndarray,
    is_buy: np.ndarray,
    kind: np.ndarray,
    shares: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
    micro: float,
    sums: np.ndarray,
    counts: np.ndarray,
    keys: np.ndarray,
) -> int:
    """Per (wallet, token) totals in one compiled pass.

    ``sums`` rows (``position_summary._SUMS``): shares, avg, realized, bought/sold shares
    and usd of the fills, fees, oversold shares and proceeds, last fill price, bought/sold
    shares and usd of the position events; ``counts`` rows (``position_summary._COUNTS``):
    buys, sells, oversold rows, first ts, last ts, events. Returns the number of groups. The
    per-row ledger never materialises: positions need only its end state.
    """
    g = -1
    held = 0.0
    avg = 0.0
    for i in range(len(gkey)):
        if i == 0 or gkey[i] != gkey[i - 1]:
            g += 1
            held = 0.0
            avg = 0.0
            keys[g] = gkey[i]
            for r in range(sums.shape[0]):
                sums[r, g] = 0.0
            sums[10, g] = np.nan
            counts[0, g] = 0
            counts[1, g] = 0
            counts[2, g] = 0
            counts[3, g] = ts[i]
            counts[5, g] = 0
        q = np.rint(shares[i] * micro)
        p = price[i]
        is_fill = kind[i] == KIND_FILL
        if is_buy[i]:
            after = held + q
            avg = (held * avg + q * p + fee[i] * micro) / after
            held = after
            if is_fill:
                counts[0, g] += 1
                sums[3, g] += shares[i]
                sums[5, g] += shares[i] * p
            else:
                sums[11, g] += shares[i]
                sums[13, g] += shares[i] * p
        else:
            if kind[i] == KIND_EVENT_SELL_ALL:
                q = held
            if kind[i] == KIND_EVENT_SELL_AT_AVG:
                p = avg
            sold = q if q < held else held
            over = q - sold
            fee_held = fee[i] * sold / q if q > 0 else 0.0
            sums[2, g] += sold * (p - avg) / micro - fee_held
            held -= sold
            if is_fill:
                counts[1, g] += 1
                sums[4, g] += shares[i]
                sums[6, g] += shares[i] * p
            else:
                sums[12, g] += q / micro
                sums[14, g] += q / micro * p
            if over > 0:
                counts[2, g] += 1
                sums[8, g] += over / micro
                sums[9, g] += over / micro * p - (fee[i] - fee_held)
        if not is_fill:
            counts[5, g] += 1
        else:
            sums[10, g] = p
        sums[7, g] += fee[i]
        sums[0, g] = held / micro
        sums[1, g] = avg
        counts[4, g] = ts[i]
    return g + 1


def _last_trade_loop(
    gkey: np.ndarray,
    ts: np.ndarray,
    frn: np.ndarray,
    kind: np.ndarray,
    price: np.ndarray,
    mark_key: np.ndarray,
    mark_price: np.ndarray,
) -> None:
    """Each token's last trade (``mark_key``/``mark_price`` per token id, the low 32 bits of
    gkey): the latest (second, in-file row) fill seen and its price; later rows win ties.
    Position events are not trades."""
    for i in range(len(gkey)):
        if kind[i] != KIND_FILL:
            continue
        tid = gkey[i] & 0xFFFFFFFF
        key = (ts[i] // 1000000) * 10000000 + frn[i]
        if key >= mark_key[tid]:
            mark_key[tid] = key
            mark_price[tid] = price[i]


def _group_order_loop(
    wid: np.ndarray,
    tid: np.ndarray,
    keep: np.ndarray,
    wallet_count: int,
    token_count: int,
    order: np.ndarray,
    gkey: np.ndarray,
    by_token: np.ndarray,
    by_token_wallet: np.ndarray,
) -> None:
    """The kept rows ordered by (wallet id, token id), stable, into ``order`` with their
    ``gkey``: two counting-sort passes (token, then wallet) over dense ids, O(n) where a
    comparison sort is O(n log n). The wallet id travels with the first pass's output and
    the token id is its bucket, so the second pass reads sequentially (``by_token*`` are
    scratch arrays of the kept size)."""
    start = np.zeros(token_count + 1, dtype=np.int64)
    for i in range(len(wid)):
        if keep[i]:
            start[tid[i] + 1] += 1
    for k in range(token_count):
        start[k + 1] += start[k]
    fill = start.copy()
    for i in range(len(wid)):
        if keep[i]:
            t = tid[i]
            p = fill[t]
            by_token[p] = i
            by_token_wallet[p] = wid[i]
            fill[t] = p + 1
    count = np.zeros(wallet_count + 1, dtype=np.int64)
    for j in range(len(order)):
        count[by_token_wallet[j] + 1] += 1
    for k in range(wallet_count):
        count[k + 1] += count[k]
    for t in range(token_count):
        for j in range(start[t], start[t + 1]):
            w = by_token_wallet[j]
            p = count[w]
            order[p] = by_token[j]
            gkey[p] = (np.int64(w) << 32) | t
            count[w] = p + 1


def _gather_loop(
    order: np.ndarray,
    gkey: np.ndarray,
    columns: tuple[np.ndarray, ...],
    out: tuple[np.ndarray, ...],
) -> bool:
    """Rows in ``order`` into the ``out`` arrays (ts, frn, is_buy, kind, shares, price,
    fee, as ``columns``); True when every group is in (time, file row) order."""
    ts, frn, is_buy, kind, shares, price, fee = columns
    ts_out, frn_out, buy_out, kind_out, shares_out, price_out, fee_out = out
    in_order = True
    for j in range(len(order)):
        i = order[j]
        ts_out[j] = ts[i]
        frn_out[j] = frn[i]
        buy_out[j] = is_buy[i]
        kind_out[j] = kind[i]
        shares_out[j] = shares[i]
        price_out[j] = price[i]
        fee_out[j] = fee[i]
        earlier = ts_out[j] < ts_out[j - 1] or (
            ts_out[j] == ts_out[j - 1] and frn_out[j] < frn_out[j - 1]
        )
        if j > 0 and gkey[j] == gkey[j - 1] and earlier:
            in_order = False
    return in_order


def _merge_prefix_loop(
    order: np.ndarray, gkey: np.ndarray, ts: np.ndarray, frn: np.ndarray, prefix: int
) -> None:
    """Within each group of ``order`` (raw row numbers grouped by ``gkey``), merge the rows
    below ``prefix`` (opening rows and position events, in time order, first in their group
    since the grouping is stable) into the fill rows after them by (time, file row), in
    place: one linear pass, where sorting every group again would cost O(n log n)."""
    n = len(order)
    scratch = np.empty(0, dtype=order.dtype)
    j = 0
    while j < n:
        k = j + 1
        while k < n and gkey[k] == gkey[j]:
            k += 1
        m = j
        while m < k and order[m] < prefix:
            m += 1
        if j < m < k:
            if len(scratch) < k - j:
                scratch = np.empty(max(k - j, 2 * len(scratch)), dtype=order.dtype)
            a, b, o = j, m, 0
            while a < m and b < k:
                ia, ib = order[a], order[b]
                if ts[ib] < ts[ia] or (ts[ib] == ts[ia] and frn[ib] < frn[ia]):
                    scratch[o] = ib
                    b += 1
                else:
                    scratch[o] = ia
                    a += 1
                o += 1
            while a < m:
                scratch[o] = order[a]
                a += 1
                o += 1
            while b < k:
                scratch[o] = order[b]
                b += 1
                o += 1
            for r in range(k - j):
                order[j + r] = scratch[r]
        j = k


try:  # numba compiles the loop once (cached on disk); without it the prefix scans run
    import numba

    compiled_ledger = numba.njit(cache=True, nogil=True)(_ledger_loop)
    compiled_summary = numba.njit(cache=True, nogil=True)(_summary_loop)
    compiled_last_trade = numba.njit(cache=True, nogil=True)(_last_trade_loop)
    compiled_group_order = numba.njit(cache=True, nogil=True)(_group_order_loop)
    compiled_gather = numba.njit(cache=True, nogil=True)(_gather_loop)
    compiled_merge_prefix = numba.njit(cache=True, nogil=True)(_merge_prefix_loop)
except ImportError:  # pragma: no cover - numba is a pinned dependency
    compiled_ledger = None
    compiled_summary = None
    compiled_last_trade = None
    compiled_group_order = None
    compiled_gather = None
    compiled_merge_prefix = None
