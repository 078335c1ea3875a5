"""Watchlists: static ones from YAML, CLI-managed ones in SQLite, and a suggested list.

YAML (``POLYMKT_WATCHLISTS_FILE``, default ``<data dir>/watchlists.yaml``)::

    watchlists:
      - name: sharps
        alert_min_usd: 5000        # optional, default 1000
        cooldown_minutes: 30       # optional, default 60
        wallets:
          - address: "0xabc..."
            label: whale           # optional
          - "0xdef..."             # a bare address works too

CLI-managed lists live in ``<data dir>/watchlists.sqlite`` (durable, transactional). A name
belongs to one source: the CLI refuses to change or shadow a YAML list.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.wallets.positions import compute_positions

DEFAULT_ALERT_MIN_USD = 1000.0
DEFAULT_COOLDOWN_MINUTES = 60.0
ADDRESS_RE = re.compile(r"^0x[0-9a-f]{40}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SUGGESTED = "suggested"


class WatchlistError(ValueError):
    """A watchlist file or command that cannot be applied (message names what and where)."""


@dataclass(frozen=True)
class WatchedWallet:
    address: str
    label: str | None = None


@dataclass(frozen=True)
class Watchlist:
    name: str
    wallets: tuple[WatchedWallet, ...]
    alert_min_usd: float = DEFAULT_ALERT_MIN_USD
    cooldown_minutes: float = DEFAULT_COOLDOWN_MINUTES
    source: str = "cli"  # yaml | cli | suggested

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "alert_min_usd": self.alert_min_usd,
            "cooldown_minutes": self.cooldown_minutes,
            "wallets": [{"address": w.address, "label": w.label} for w in self.wallets],
        }


def normalize_address(value: object, where: str) -> str:
    text = str(value).strip().lower() if value is not None else ""
    if not ADDRESS_RE.match(text):
        raise WatchlistError(f"{where}: {value!r} is not a wallet address (0x + 40 hex digits)")
    return text


def _check_name(name: str, where: str) -> str:
    if not NAME_RE.match(name or ""):
        raise WatchlistError(
            f"{where}: watchlist name {name!r} must be 1-64 letters, digits, '_', '.', '-'"
        )
    return name


def _number(value: object, default: float, where: str) -> float:
    if value is None:
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise WatchlistError(f"{where}: {value!r} is not a number") from exc
    if number < 0:
        raise WatchlistError(f"{where}: {value!r} must not be negative")
    return number


# ---- YAML ---------------------------------------------------------------------------------


def load_yaml_watchlists(path: Path) -> list[Watchlist]:
    """Static watchlists; a missing file means none. Errors name the file and entry."""
    if not path.exists():
        return []
    try:
        document = yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise WatchlistError(f"{path}: not valid YAML ({exc})") from exc
    if document is None:
        return []
    entries = document.get("watchlists") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise WatchlistError(f"{path}: expected a top-level 'watchlists:' list")
    lists: list[Watchlist] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{path}: watchlists[{i}]"
        if not isinstance(entry, dict):
            raise WatchlistError(f"{where}: expected a mapping with name and wallets")
        name = _check_name(str(entry.get("name") or ""), where)
        if name in seen:
            raise WatchlistError(f"{where}: duplicate watchlist name {name!r}")
        seen.add(name)
        raw_wallets = entry.get("wallets") or []
        if not isinstance(raw_wallets, list):
            raise WatchlistError(f"{where}.wallets: expected a list")
        wallets: dict[str, WatchedWallet] = {}
        for j, raw in enumerate(raw_wallets):
            w_where = f"{where}.wallets[{j}]"
            if isinstance(raw, dict):
                address = normalize_address(raw.get("address"), w_where)
                label = raw.get("label")
                wallets[address] = WatchedWallet(address, str(label) if label else None)
            else:
                address = normalize_address(raw, w_where)
                wallets[address] = WatchedWallet(address)
        lists.append(
            Watchlist(
                name=name,
                wallets=tuple(wallets.values()),
                alert_min_usd=_number(
                    entry.get("alert_min_usd"), DEFAULT_ALERT_MIN_USD, f"{where}.alert_min_usd"
                ),
                cooldown_minutes=_number(
                    entry.get("cooldown_minutes"),
                    DEFAULT_COOLDOWN_MINUTES,
                    f"{where}.cooldown_minutes",
                ),
                source="yaml",
            )
        )
    return lists


# ---- SQLite store -------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watchlists (
    name TEXT PRIMARY KEY,
    alert_min_usd REAL NOT NULL,
    cooldown_minutes REAL NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watchlist_wallets (
    name TEXT NOT NULL REFERENCES watchlists(name) ON DELETE CASCADE,
    address TEXT NOT NULL,
    label TEXT,
    added_at TEXT NOT NULL,
    PRIMARY KEY (name, address)
);
"""


class WatchlistStore:
    """CLI-managed watchlists in a SQLite file, next to the static YAML ones."""

    def __init__(self, db_path: Path, yaml_path: Path | None = None) -> None:
        self.db_path = Path(db_path)
        self.yaml_path = yaml_path

    @classmethod
    def for_data_dir(cls, data_dir: Path, yaml_path: Path | None = None) -> WatchlistStore:
        return cls(Path(data_dir) / "watchlists.sqlite", yaml_path or data_dir / "watchlists.yaml")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.db_path, timeout=10)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(_SCHEMA)
            with db:  # one transaction per operation
                yield db

    def _static(self) -> list[Watchlist]:
        return load_yaml_watchlists(self.yaml_path) if self.yaml_path else []

    def _refuse_static(self, name: str) -> None:
        if any(w.name == name for w in self._static()):
            raise WatchlistError(
                f"watchlist {name!r} is defined in {self.yaml_path}; edit that file instead"
            )

    def all(self) -> list[Watchlist]:
        """Every watchlist: YAML ones first, then the CLI-managed ones, by name."""
        lists = list(self._static())
        if not self.db_path.exists():
            return lists
        with self._db() as db:
            rows = db.execute(
                "SELECT name, alert_min_usd, cooldown_minutes FROM watchlists ORDER BY name"
            ).fetchall()
            members = db.execute(
                "SELECT name, address, label FROM watchlist_wallets "
                "ORDER BY name, added_at, address"
            ).fetchall()
        by_name: dict[str, list[WatchedWallet]] = {}
        for name, address, label in members:
            by_name.setdefault(name, []).append(WatchedWallet(address, label))
        static_names = {w.name for w in lists}
        for name, min_usd, cooldown in rows:
            if name in static_names:
                continue  # the YAML definition wins (the CLI never creates such a name)
            lists.append(
                Watchlist(name, tuple(by_name.get(name, [])), min_usd, cooldown, source="cli")
            )
        return lists

    def get(self, name: str) -> Watchlist:
        for watchlist in self.all():
            if watchlist.name == name:
                return watchlist
        raise WatchlistError(f"no watchlist named {name!r}")

    def create(
        self,
        name: str,
        *,
        alert_min_usd: float = DEFAULT_ALERT_MIN_USD,
        cooldown_minutes: float = DEFAULT_COOLDOWN_MINUTES,
        wallets: Sequence[tuple[str, str | None]] = (),
    ) -> Watchlist:
        _check_name(name, "create")
        self._refuse_static(name)
        normalized = [(normalize_address(a, "create"), label) for a, label in wallets]
        now = datetime.now(UTC).isoformat()
        with self._db() as db:
            if db.execute("SELECT 1 FROM watchlists WHERE name = ?", (name,)).fetchone():
                raise WatchlistError(f"watchlist {name!r} already exists")
            db.execute(
                "INSERT INTO watchlists VALUES (?, ?, ?, ?)",
                (
                    name,
                    _number(alert_min_usd, DEFAULT_ALERT_MIN_USD, "--alert-min-usd"),
                    _number(cooldown_minutes, DEFAULT_COOLDOWN_MINUTES, "--cooldown-minutes"),
                    now,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO watchlist_wallets VALUES (?, ?, ?, ?)",
                [(name, address, label, now) for address, label in normalized],
            )
        return self.get(name)

    def add(self, name: str, address: str, label: str | None = None) -> Watchlist:
        self._refuse_static(name)
        address = normalize_address(address, "add")
        with self._db() as db:
            if not db.execute("SELECT 1 FROM watchlists WHERE name = ?", (name,)).fetchone():
                raise WatchlistError(f"no watchlist named {name!r} (create it first)")
            db.execute(
                "INSERT INTO watchlist_wallets VALUES (?, ?, ?, ?) ON CONFLICT (name, address) "
                "DO UPDATE SET label = coalesce(excluded.label, label)",
                (name, address, label, datetime.now(UTC).isoformat()),
            )
        return self.get(name)

    def remove(self, name: str, address: str) -> Watchlist:
        self._refuse_static(name)
        address = normalize_address(address, "remove")
        with self._db() as db:
            deleted = db.execute(
                "DELETE FROM watchlist_wallets WHERE name = ? AND address = ?", (name, address)
            ).rowcount
        if not deleted:
            raise WatchlistError(f"{address} is not in watchlist {name!r}")
        return self.get(name)

    def delete(self, name: str) -> None:
        self._refuse_static(name)
        with self._db() as db:
            deleted = db.execute("DELETE FROM watchlists WHERE name = ?", (name,)).rowcount
        if not deleted:
            raise WatchlistError(f"no watchlist named {name!r}")


# ---- what the assets follow ---------------------------------------------------------------


@dataclass(frozen=True)
class WatchedSet:
    """Union of all watchlists: per wallet its label and the strictest alert rule."""

    wallets: dict[str, WatchedWallet] = field(default_factory=dict)
    alert_min_usd: dict[str, float] = field(default_factory=dict)
    cooldown_minutes: dict[str, float] = field(default_factory=dict)
    lists: tuple[str, ...] = ()

    @property
    def addresses(self) -> list[str]:
        return sorted(self.wallets)

    def rules_table(self) -> pa.Table:
        addresses = self.addresses
        return pa.table(
            {
                "wallet": pa.array(addresses, pa.string()),
                "label": pa.array([self.wallets[a].label for a in addresses], pa.string()),
                "alert_min_usd": pa.array([self.alert_min_usd[a] for a in addresses], pa.float64()),
                "cooldown_minutes": pa.array(
                    [self.cooldown_minutes[a] for a in addresses], pa.float64()
                ),
            }
        )


def watched_set(watchlists: Sequence[Watchlist]) -> WatchedSet:
    result = WatchedSet(lists=tuple(w.name for w in watchlists))
    for watchlist in watchlists:
        for wallet in watchlist.wallets:
            known = result.wallets.get(wallet.address)
            result.wallets[wallet.address] = (
                wallet if known is None or (wallet.label and not known.label) else known
            )
            # a wallet on several lists alerts at the lowest threshold and shortest cooldown
            result.alert_min_usd[wallet.address] = min(
                result.alert_min_usd.get(wallet.address, float("inf")), watchlist.alert_min_usd
            )
            result.cooldown_minutes[wallet.address] = min(
                result.cooldown_minutes.get(wallet.address, float("inf")),
                watchlist.cooldown_minutes,
            )
    return result


# ---- the suggested list -------------------------------------------------------------------


@dataclass(frozen=True)
class SuggestOptions:
    since: datetime | None = None  # None: from the first fill
    until: datetime | None = None  # None: everything in the lake
    min_trades: int = 10
    min_win_rate: float = 0.0
    top: int = 20


def suggest_wallets(
    con: duckdb.DuckDBPyConnection, lake: Lake, options: SuggestOptions = SuggestOptions()
) -> pa.Table:
    """The most profitable wallets over a window, best first.

    Realized P&L in the window is the difference of each position's realized P&L at the
    window's end and at its start (positions are path dependent, so both ends are computed
    from the full history). Realized P&L is the pnl-subgraph's (docs/architecture.md §5):
    sells, merges, redemptions and conversions on the shares held, never the proceeds of
    oversold shares (a data gap must not make a wallet look sharp); a resolved position
    not redeemed yet counts at its payout (``settlement_pnl``: the chain fixed that money
    at resolution, redeeming only collects it). Win rate is the share of positions whose
    realized P&L rose in the window. Wallets with fewer than ``min_trades`` own fills in
    the window are left out.
    """
    end = compute_positions(con, lake, as_of=options.until)
    start = compute_positions(con, lake, as_of=options.since) if options.since else None
    con.register("_suggest_end", end)
    if start is not None:
        con.register("_suggest_start", start)
    try:
        return rank_wallets(
            con, "_suggest_end", "_suggest_start" if start is not None else None, options
        )
    finally:
        con.unregister("_suggest_end")
        if start is not None:
            con.unregister("_suggest_start")


def rank_wallets(
    con: duckdb.DuckDBPyConnection,
    end: str,
    start: str | None,
    options: SuggestOptions = SuggestOptions(),
) -> pa.Table:
    """The ranking of ``suggest_wallets`` from positions (relations) at the window's end
    and start (None: from the beginning)."""
    start_sql = (
        "SELECT NULL::VARCHAR AS wallet, NULL::VARCHAR AS token_id, 0.0 AS realized_pnl, "
        "0.0 AS settlement_pnl, 0.0 AS oversold_proceeds, 0 AS buys, 0 AS sells WHERE false"
        if start is None
        else f"SELECT * FROM {start}"
    )
    return con.execute(
        f"""
            WITH delta AS (
                SELECT e.wallet, e.token_id,
                       (e.realized_pnl + e.settlement_pnl)
                         - coalesce(s.realized_pnl + s.settlement_pnl, 0) AS realized,
                       e.oversold_proceeds - coalesce(s.oversold_proceeds, 0) AS oversold,
                       (e.buys + e.sells) - coalesce(s.buys + s.sells, 0) AS fills,
                       e.unrealized_pnl - e.settlement_pnl AS unrealized
                FROM {end} e
                LEFT JOIN ({start_sql}) s USING (wallet, token_id)
            ),
            per_wallet AS (
                SELECT wallet,
                       sum(realized) AS realized_pnl,
                       sum(unrealized) AS unrealized_pnl,
                       sum(oversold) AS oversold_proceeds,
                       count(*) FILTER (WHERE abs(realized) > 1e-9) AS positions_realized,
                       count(*) FILTER (WHERE realized > 1e-9) AS positions_won,
                       sum(fills) AS fills
                FROM delta GROUP BY wallet
            )
            SELECT wallet, realized_pnl, unrealized_pnl, oversold_proceeds,
                   CASE WHEN positions_realized > 0
                        THEN positions_won / positions_realized END AS win_rate,
                   positions_realized, CAST(fills AS BIGINT) AS fills
            FROM per_wallet
            WHERE fills >= $min_trades
              AND coalesce(positions_won / nullif(positions_realized, 0), 0) >= $min_win_rate
            ORDER BY realized_pnl DESC, win_rate DESC, wallet
            LIMIT $top
            """,
        {
            "min_trades": options.min_trades,
            "min_win_rate": options.min_win_rate,
            "top": options.top,
        },
    ).to_arrow_table()


def suggested_watchlist(table: pa.Table, top: int = 10) -> Watchlist:
    wallets = tuple(
        WatchedWallet(row["wallet"], f"suggested #{i + 1}")
        for i, row in enumerate(table.slice(0, top).to_pylist())
    )
    return Watchlist(SUGGESTED, wallets, source="suggested")


def effective_watchlists(
    store: WatchlistStore,
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    current_positions: str | None = None,
    fallback_top: int = 10,
) -> list[Watchlist]:
    """The configured watchlists, or the suggested top wallets when none is configured.

    The fallback lets a fresh install (the bundled sample) show snapshots and alerts
    without setting anything up; defining any watchlist switches it off. Pass the current
    positions (a relation, e.g. the wallets/positions file) to rank from them instead of
    recomputing.
    """
    lists = [w for w in store.all() if w.wallets]
    if lists:
        return lists
    options = SuggestOptions(top=fallback_top)
    suggestion = (
        rank_wallets(con, current_positions, None, options)
        if current_positions is not None
        else suggest_wallets(con, lake, options)
    )
    return [suggested_watchlist(suggestion, fallback_top)] if suggestion.num_rows else []
