"""The sample's wallets: noise traders, market makers, five sharp wallets and the exchanges.

Addresses come in two renderings (lowercase, and about 10% of the fill cells in a random
mixed case, as poly_data has them). Taker activity is Zipf-like, maker activity concentrates
on a few market makers; both are sampled through inverse-CDF lookup tables of
``SAMPLER_SIZE`` entries. Everything comes from its own rng stream ``[seed, 3]``, so the
wallets do not change with the markets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polymkt_dagster.lib.sample.config import SampleConfig
from polymkt_dagster.lib.sample.formats import hex_rows
from polymkt_dagster.lib.sample.layout import CTF_EXCHANGE, NEG_RISK_EXCHANGE

__all__ = [
    "SAMPLER_SIZE",
    "SHARP_WALLET_COUNT",
    "WalletPool",
    "build_wallets",
]

SHARP_WALLET_COUNT = 5
SAMPLER_SIZE = 1 << 20  # resolution of the wallet-activity samplers


@dataclass(frozen=True)
class WalletPool:
    """Address rows ``[noise..., sharp..., CTF exchange, neg-risk exchange]``, twice."""

    addresses: np.ndarray  # (2 * n_addr,) S42: lowercase rows, then mixed-case rows
    n_addr: int
    n_noise: int
    sharp_wallets: list[str]
    maker_table: np.ndarray  # inverse-CDF lookup tables: uniform int -> noise wallet index
    taker_table: np.ndarray
    converters: np.ndarray  # the busiest market makers: they make the neg-risk conversions


def build_wallets(config: SampleConfig) -> WalletPool:
    """The ``config.n_noise_wallets`` noise wallets, the sharp wallets and the exchanges."""
    n_noise = config.n_noise_wallets
    w_rng = np.random.default_rng([config.seed, 3])
    n_addr = n_noise + SHARP_WALLET_COUNT + 2
    raw = w_rng.integers(0, 256, size=(n_addr, 20), dtype=np.uint8)
    lower = hex_rows(raw)
    for row, plain in enumerate(
        (CTF_EXCHANGE, NEG_RISK_EXCHANGE), start=n_noise + SHARP_WALLET_COUNT
    ):
        lower[row] = np.frombuffer(plain.encode(), dtype=np.uint8)
    # mixed case: EIP-55-like random upper-casing of the hex letters (not a real checksum)
    is_letter = lower >= ord("a")
    is_letter[:, :2] = False
    flip = is_letter & (w_rng.random(lower.shape) < 0.5)
    mixed = np.where(flip, lower - 32, lower).astype(np.uint8)
    addresses = np.ascontiguousarray(np.concatenate([lower, mixed])).view("S42").ravel()
    sharp_wallets = [lower[n_noise + i].tobytes().decode() for i in range(SHARP_WALLET_COUNT)]
    # takers: Zipf-like activity; makers: a few market makers carry most of the book
    ranks = np.arange(1, n_noise + 1, dtype=np.float64)
    taker_w = w_rng.permutation(1.0 / (ranks + 5.0) ** 1.05)
    maker_w = w_rng.permutation(1.0 / (ranks + 1.0) ** 1.4)
    quantiles = (np.arange(SAMPLER_SIZE) + 0.5) / SAMPLER_SIZE
    taker_table = np.minimum(
        np.searchsorted(np.cumsum(taker_w) / taker_w.sum(), quantiles), n_noise - 1
    ).astype(np.int32)
    maker_table = np.minimum(
        np.searchsorted(np.cumsum(maker_w) / maker_w.sum(), quantiles), n_noise - 1
    ).astype(np.int32)
    return WalletPool(
        addresses=addresses,
        n_addr=n_addr,
        n_noise=n_noise,
        sharp_wallets=sharp_wallets,
        maker_table=maker_table,
        taker_table=taker_table,
        converters=np.argsort(-maker_w, kind="stable")[:20],
    )
