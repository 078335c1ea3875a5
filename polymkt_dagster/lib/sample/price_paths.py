"""Price paths: each market's token1 price over its life, drifting to the outcome.

Single markets follow a Brownian bridge in logit space from a noisy prior to +/-5 (the winner)
or to a stale last price (closed, unresolved markets); the candidates of a neg-risk election
group follow bridges in a softmax, so their prices sum to 1 and the winner ends near 1. A path
is ``GRID_POINTS`` prices over the market's life (``tau`` in [0, 1]), piecewise linear in
between; the fills and the last prices are read off it.
"""

from __future__ import annotations

import math

import numpy as np

from polymkt_dagster.lib.sample.records import Event, Market

__all__ = [
    "GRID_POINTS",
    "GRID_TAU",
    "price_at",
    "price_paths",
]

GRID_POINTS = 65  # price-path grid points per market (piecewise linear in between)
GRID_TAU = np.linspace(0.0, 1.0, GRID_POINTS)  # the grid points' positions in a market's life


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _brownian_bridges(rng: np.random.Generator, n: int) -> np.ndarray:
    """n standard Brownian bridges on the [0, 1] grid, shape (n, GRID_POINTS)."""
    steps = rng.normal(0.0, math.sqrt(1.0 / (GRID_POINTS - 1)), size=(n, GRID_POINTS - 1))
    w = np.zeros((n, GRID_POINTS))
    np.cumsum(steps, axis=1, out=w[:, 1:])
    tau = np.linspace(0.0, 1.0, GRID_POINTS)
    return w - tau[None, :] * w[:, -1:]


def price_paths(rng: np.random.Generator, markets: list[Market], events: list[Event]) -> np.ndarray:
    """(len(markets), GRID_POINTS) token1 prices; draws from ``rng`` in market order."""
    n = len(markets)
    path = np.empty((n, GRID_POINTS))
    tau = GRID_TAU
    singles = [i for i, m in enumerate(markets) if not events[m.event].neg_risk]
    if singles:
        s = np.array(singles)
        k = len(s)
        bias = np.array([markets[i].yes_bias for i in singles])
        win = np.array([markets[i].winner for i in singles])
        kinds = [markets[i].kind for i in singles]
        informed = np.where(win == 0, 0.7, np.where(win == 1, -0.7, 0.0))
        x0 = np.log(bias / (1 - bias)) + rng.normal(0.0, 1.1, k) + informed
        xt = np.where(win == 0, 5.0, -5.0)
        last = np.clip(rng.normal(0.0, 2.5, k), -5.3, 5.3)  # closed_price: the stale last price
        for j, kind in enumerate(kinds):
            if kind in ("closed_price", "closed_zero"):
                xt[j] = last[j]
        shape = rng.uniform(1.5, 5.0, k)
        sigma = rng.uniform(0.4, 1.2, k)
        x = (
            x0[:, None]
            + (xt - x0)[:, None] * tau[None, :] ** shape[:, None]
            + sigma[:, None] * _brownian_bridges(rng, k)
        )
        path[s] = _sigmoid(x)
    for ev in events:
        if not ev.neg_risk:
            continue
        idx = np.array(ev.markets)
        k = len(idx)
        win = np.array([markets[i].winner for i in ev.markets])
        z0 = rng.normal(0.0, 1.4, k) + np.where(win == 0, 0.8, 0.0)
        zt = np.where(win == 0, 6.0, 0.0)
        shape = float(rng.uniform(1.5, 4.0))
        sigma = rng.uniform(0.5, 1.0, k)
        z = z0[:, None] + (zt - z0)[:, None] * tau[None, :] ** shape
        z = z + sigma[:, None] * _brownian_bridges(rng, k)
        z = z - z.max(axis=0, keepdims=True)
        ez = np.exp(z)
        path[idx] = ez / ez.sum(axis=0, keepdims=True)
    return path


def price_at(path: np.ndarray, tau: float) -> float:
    """The price of one market's ``path`` at ``tau`` in [0, 1] of its life."""
    return float(np.interp(tau, GRID_TAU, path))
