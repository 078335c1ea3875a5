"""PNG charts for materialization metadata, sized to be read in the Dagster UI.

Each function returns PNG bytes (matplotlib, Agg backend, 900 px wide); ``png_markdown``
wraps them in a Markdown image with a base64 data URI, which the UI renders inline.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

WIDTH_IN, DPI = 9.0, 100  # 900 px: the width of the UI's metadata panel


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Any) -> bytes:
    plt = _pyplot()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def price_volume_png(
    days: Sequence[datetime], closes: Sequence[float], volumes: Sequence[float], title: str
) -> bytes:
    """Daily close (line, 0-1) over daily USDC volume (bars) of one outcome."""
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(WIDTH_IN, 4.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot(days, closes, color="#1f77b4", linewidth=1.6)
    top.set_ylim(0, 1)
    top.set_ylabel("close (price)", fontsize=10)
    top.set_title(title, fontsize=11)
    top.grid(alpha=0.3)
    bottom.bar(days, volumes, color="#7f7f7f", width=0.9)
    bottom.set_ylabel("volume (USDC)", fontsize=10)
    bottom.grid(alpha=0.3)
    figure.autofmt_xdate()
    return _png(figure)


def calibration_png(curves: Mapping[int, Sequence[tuple[float, float, int]]]) -> bytes:
    """Favorite win rate against its implied probability, one line per horizon (days).

    ``curves[horizon]`` holds (mean implied probability, win rate, groups) per price bucket;
    the diagonal is perfect calibration.
    """
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(WIDTH_IN, 5.0))
    axis.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="calibrated")
    for horizon, points in sorted(curves.items()):
        if not points:
            continue
        implied = [p[0] for p in points]
        won = [p[1] for p in points]
        sizes = [20 + 6 * p[2] for p in points]
        axis.plot(implied, won, marker="o", linewidth=1.2, label=f"{horizon} d before")
        axis.scatter(implied, won, s=sizes, alpha=0.25)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("favorite's implied probability (price)", fontsize=10)
    axis.set_ylabel("favorite win rate", fontsize=10)
    axis.set_title("Calibration of favorites by horizon (marker size: groups)", fontsize=11)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=9, ncol=2)
    return _png(figure)


def freshness_png(rows: Sequence[tuple[str, float | None, float]]) -> bytes:
    """Minutes since each source's last sync against its target (bars; red when late)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(WIDTH_IN, 0.6 * max(len(rows), 2) + 1.2))
    names = [r[0] for r in rows]
    lags = [r[1] if r[1] is not None else 0.0 for r in rows]
    colors = [
        "#bbbbbb" if r[1] is None else ("#d62728" if r[1] > r[2] else "#2ca02c") for r in rows
    ]
    axis.barh(names, lags, color=colors)
    for i, (_, lag, target) in enumerate(rows):
        axis.plot([target, target], [i - 0.4, i + 0.4], color="black", linewidth=1.5)
        axis.text(lag or 0, i, " never" if lag is None else f" {lag:,.1f} min", va="center")
    axis.set_xlabel("minutes since the last sync (black tick: target)", fontsize=10)
    axis.set_title("Data freshness per source", fontsize=11)
    axis.grid(alpha=0.3, axis="x")
    return _png(figure)


def pnl_png(series: Mapping[str, tuple[Sequence[datetime], Sequence[float]]], title: str) -> bytes:
    """Total P&L (USDC) over time, one line per wallet (labelled by its short address)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(WIDTH_IN, 4.5))
    for wallet, (times, totals) in series.items():
        axis.plot(times, totals, linewidth=1.4, label=f"{wallet[:6]}…{wallet[-4:]}")
    axis.axhline(0, color="#999999", linewidth=1)
    axis.set_ylabel("total P&L (USDC)", fontsize=10)
    axis.set_title(title, fontsize=11)
    axis.grid(alpha=0.3)
    if series:
        axis.legend(fontsize=9)
    figure.autofmt_xdate()
    return _png(figure)


def calibration_points(
    prices: Sequence[float], won: Sequence[bool], *, buckets: int = 10
) -> list[tuple[float, float, int]]:
    """(mean price, win rate, count) per equal-width price bucket with at least one group."""
    sums: dict[int, list[float]] = {}
    for price, outcome in zip(prices, won, strict=True):
        bucket = min(int(price * buckets), buckets - 1)
        entry = sums.setdefault(bucket, [0.0, 0.0, 0])
        entry[0] += price
        entry[1] += 1.0 if outcome else 0.0
        entry[2] += 1
    return [
        (round(s[0] / s[2], 4), round(s[1] / s[2], 3), int(s[2])) for _, s in sorted(sums.items())
    ]
