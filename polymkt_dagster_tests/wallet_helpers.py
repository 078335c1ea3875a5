"""Helpers for the wallet/serving tests: a writable lake copy, chdb, a webhook receiver."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.sample.config import SampleConfig
from polymkt_dagster.lib.sample.universe import build_universe
from polymkt_local.local_http import LocalHTTPServer

_CHDB_DIR: list[Path] = []


def chdb_dsn() -> str:
    """One embedded ClickHouse path for the whole test process (chdb allows one per process);
    tests keep apart by using their own database (``fresh_database``)."""
    if not _CHDB_DIR:
        _CHDB_DIR.append(Path(tempfile.mkdtemp(prefix="issue6_chdb_")))
    return f"chdb://{_CHDB_DIR[0]}"


def fresh_database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def sharp_wallets() -> set[str]:
    """The bundled sample's five sharp wallets (it is generated with the default config)."""
    return set(build_universe(SampleConfig()).wallets.sharp_wallets)


@pytest.fixture(scope="module")
def wallet_lake(sample_lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A private copy of the session's sample lake that tests may write analytics into."""
    data_dir = tmp_path_factory.mktemp("wallet_lake")
    shutil.copytree(sample_lake.root, data_dir / "parquet")
    return Lake(data_dir / "parquet")


class WebhookReceiver(LocalHTTPServer):
    """A real local HTTP server that records JSON POSTs; can fail the next requests."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._fail: deque[int] = deque()
        self._lock = threading.Lock()
        self.start()

    def handle(self, request: BaseHTTPRequestHandler, body: bytes | None) -> None:
        document = json.loads(body or b"{}")
        with self._lock:
            status = self._fail.popleft() if self._fail else 200
            self.statuses.append(status)
            if status == 200:
                self.received.append(document)
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    @property
    def url(self) -> str:
        return f"{self.origin}/hooks/secret-token-123?key=abc"

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self._fail.extend(statuses)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


# ---- a hand-made lake with CTF position events (docs/architecture.md §3.1) -------------

WALLET = "0x" + "a1" * 20
OTHER = "0x" + "b2" * 20
EXCHANGE = "0x4bfb41d5b3570defd03c39a9a4d8de6bd8b8982e"  # V1 CTF exchange: not a user
ADAPTER = "0xd91e80cf2e7be2e162c6513ced06f1dd0da35296"  # NegRiskAdapter: not a user
NEG_RISK_MARKET = "0x" + "e0" * 32
BINARY_CONDITION = "0x" + "c0" * 32


def condition(question: int) -> str:
    return "0x" + f"{question + 1:02x}" * 32


def token(question: int, outcome: int) -> str:
    """Realistic length (77 digits) and distinct per (question, outcome)."""
    return f"{question + 1}{outcome}" + "7" * 75


BINARY_YES, BINARY_NO = token(9, 0), token(9, 1)


def _micro(value: float) -> int:
    return round(value * 1_000_000)


def _at(day: int, second: int = 0) -> datetime:
    return datetime(2024, 5, day, 12, 0, second, tzinfo=UTC)


def _ctf(
    when: datetime,
    log_index: int,
    contract: str,
    event: str,
    stakeholder: str,
    *,
    condition_id: str | None = None,
    index_sets: list[str] | None = None,
    amount: float | None = None,
    amounts: list[float] | None = None,
    payout_numerators: list[int] | None = None,
    neg_risk_market_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": f"0x{log_index:064x}_{log_index}",
        "timestamp": when,
        "block_number": 1_000 + log_index,
        "log_index": log_index,
        "transaction_hash": f"0x{log_index:064x}",
        "contract": contract,
        "event": event,
        "stakeholder": stakeholder,
        "condition_id": condition_id,
        "neg_risk_market_id": neg_risk_market_id,
        "index_sets": index_sets,
        "amount": _micro(amount) if amount is not None else None,
        "amounts": [_micro(a) for a in amounts] if amounts is not None else None,
        "payout_numerators": payout_numerators,
        "outcome_slot_count": len(payout_numerators) if payout_numerators else None,
        "source": "csv",
    }


def build_event_lake(
    root: Path, *, binary_payouts: tuple[int, int] = (0, 1), redeem_binary: bool = False
) -> Lake:
    """Markets, fills and CTF position events whose ledger is worked out by hand in
    polymkt_dagster_tests/lib/test_positions_ledger.py (test_lake_ledger_by_hand);
    ``binary_payouts`` the binary market's resolution, ``redeem_binary`` adds the wallet's
    Conditional Tokens redemption of it on day 6."""
    import duckdb
    import pyarrow as pa

    from polymkt_dagster.lib.core.schemas import CTF_EVENTS, MARKETS, TRADES

    lake = Lake(root)
    markets = [
        {
            "market_id": str(100 + q), "condition_id": condition(q),
            # the NegRiskAdapter's question ids: the market id with the index as last byte
            "question_id": NEG_RISK_MARKET[:-2] + f"{q:02x}", "question": f"Candidate {q}?",
            "neg_risk": True, "neg_risk_market_id": NEG_RISK_MARKET,
            "outcomes": ["Yes", "No"], "token_ids": [token(q, 0), token(q, 1)],
            "closed": False, "resolved": False,
        }
        for q in range(3)
    ] + [
        {
            "market_id": "200", "condition_id": BINARY_CONDITION, "question_id": "0x" + "d0" * 32,
            "question": "Binary?", "neg_risk": False, "neg_risk_market_id": None,
            "outcomes": ["Yes", "No"], "token_ids": [BINARY_YES, BINARY_NO],
            "closed": False, "resolved": False,
        }
    ]  # fmt: skip
    fills = [
        # (day, second, maker, token, side, shares, price)
        (1, 0, WALLET, token(0, 1), "BUY", 100.0, 0.80),
        (1, 1, WALLET, token(1, 1), "BUY", 100.0, 0.60),
        (2, 5, WALLET, BINARY_YES, "SELL", 120.0, 0.70),
        (2, 6, OTHER, BINARY_YES, "BUY", 10.0, 0.65),  # the last trade: YES's mark
        (3, 0, OTHER, token(0, 1), "BUY", 5.0, 0.75),
        (3, 0, OTHER, token(1, 1), "BUY", 5.0, 0.55),
    ]
    events = [
        _ctf(_at(2), 1, "conditional_tokens", "PositionSplit", WALLET,
             condition_id=BINARY_CONDITION, index_sets=["1", "2"], amount=100),
        _ctf(_at(2), 2, "conditional_tokens", "PositionSplit", EXCHANGE,
             condition_id=BINARY_CONDITION, index_sets=["1", "2"], amount=1000),
        _ctf(_at(2, 5), 3, "conditional_tokens", "PositionsMerge", WALLET,
             condition_id=BINARY_CONDITION, index_sets=["1", "2"], amount=30),
        _ctf(_at(2), 4, "neg_risk_adapter", "PositionSplit", WALLET,
             condition_id=condition(2), index_sets=["1", "2"], amount=50),
        _ctf(_at(2), 5, "conditional_tokens", "PositionSplit", ADAPTER,
             condition_id=condition(2), index_sets=["1", "2"], amount=50),
        _ctf(_at(3, 30), 6, "neg_risk_adapter", "PositionsConverted", WALLET,
             neg_risk_market_id=NEG_RISK_MARKET, index_sets=["3"], amount=100),
        _ctf(_at(4), 7, "conditional_tokens", "ConditionResolution", ADAPTER,
             condition_id=condition(2), payout_numerators=[1, 0]),
        _ctf(_at(4), 8, "conditional_tokens", "ConditionResolution", "0x" + "0e" * 20,
             condition_id=BINARY_CONDITION, payout_numerators=list(binary_payouts)),
        _ctf(_at(5), 9, "neg_risk_adapter", "PayoutRedemption", WALLET,
             condition_id=condition(2), amounts=[150, 50]),
        _ctf(_at(5), 10, "conditional_tokens", "PayoutRedemption", ADAPTER,
             condition_id=condition(2), index_sets=["1", "2"]),
    ]  # fmt: skip
    if redeem_binary:
        events.append(
            _ctf(_at(6), 11, "conditional_tokens", "PayoutRedemption", WALLET,
                 condition_id=BINARY_CONDITION, index_sets=["1", "2"])
        )  # fmt: skip
    con = duckdb.connect()
    try:
        con.register("m", pa.Table.from_pylist(markets))
        target = lake.single_file(MARKETS.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = f"(SELECT * FROM m UNION ALL BY NAME ({MARKETS.typed_empty_select()}))"
        con.execute(f"COPY ({MARKETS.canonical_select(source)}) TO '{target}' (FORMAT parquet)")
        rows = [
            {
                "timestamp": _at(d, s), "market_id": None, "token_id": t, "maker": maker,
                "taker": EXCHANGE, "maker_direction": side,
                "taker_direction": "SELL" if side == "BUY" else "BUY", "price": p,
                "usd_amount": q * p, "token_amount": q, "fee": 0.0,
                "order_fill_id": f"f{i}", "is_taker_side": False,
            }
            for i, (d, s, maker, t, side, q, p) in enumerate(fills)
        ]  # fmt: skip
        _write_days(con, lake, TRADES, rows)
        _write_days(con, lake, CTF_EVENTS, events)
    finally:
        con.close()
    return lake


def _write_days(con: Any, lake: Lake, table: Any, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa

    by_day: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        by_day.setdefault(row["timestamp"].date(), []).append(row)
    for day, day_rows in by_day.items():
        target = lake.day_dir(table.name, day) / "part-0.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        con.register("d", pa.Table.from_pylist(day_rows))
        source = f"(SELECT * FROM d UNION ALL BY NAME ({table.typed_empty_select()}))"
        con.execute(f"COPY ({table.canonical_select(source)}) TO '{target}' (FORMAT parquet)")
        con.unregister("d")
