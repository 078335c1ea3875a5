"""The poly_data CSV layout the sample is written in: file columns, Arrow schemas, exchanges.

These are the contracts the rest of the project reads the sample with (``markets.csv``,
``orderFilled.csv``, ``trades.csv``; ``ctfEvents.csv``'s columns live with its planner in
``sample.ctf``). They are separate from the generator so a reader of the files can import them
without the generation code.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "CTF_EXCHANGE",
    "MARKETS_CSV_COLUMNS",
    "NEG_RISK_EXCHANGE",
    "ORDER_FILLED_COLUMNS",
    "ORDER_FILLED_SCHEMA",
    "TRADES_COLUMNS",
    "TRADES_SCHEMA",
]

#: V1 exchange contracts: the ``taker`` of every taker-order row.
CTF_EXCHANGE = "0x4bfb41d5b3570defd03c39a9a4d8de6bd8b8982e"
NEG_RISK_EXCHANGE = "0xc5d563a36ae78145c45a50134d48a1215220f80a"

MARKETS_CSV_COLUMNS: tuple[str, ...] = (
    "createdAt",
    "id",
    "question",
    "answer1",
    "answer2",
    "neg_risk",
    "market_slug",
    "token1",
    "token2",
    "condition_id",
    "volume",
    "ticker",
    "closedTime",
)
ORDER_FILLED_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "maker",
    "makerAssetId",
    "makerAmountFilled",
    "taker",
    "takerAssetId",
    "takerAmountFilled",
    "transactionHash",
)
TRADES_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "market_id",
    "maker",
    "taker",
    "nonusdc_side",
    "maker_direction",
    "taker_direction",
    "price",
    "usd_amount",
    "token_amount",
    "transactionHash",
)
ORDER_FILLED_SCHEMA = pa.schema(
    [
        ("timestamp", pa.int64()),
        ("maker", pa.string()),
        ("makerAssetId", pa.string()),
        ("makerAmountFilled", pa.int64()),
        ("taker", pa.string()),
        ("takerAssetId", pa.string()),
        ("takerAmountFilled", pa.int64()),
        ("transactionHash", pa.string()),
    ]
)
TRADES_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("s")),
        ("market_id", pa.string()),
        ("maker", pa.string()),
        ("taker", pa.string()),
        ("nonusdc_side", pa.string()),
        ("maker_direction", pa.string()),
        ("taker_direction", pa.string()),
        ("price", pa.float64()),
        ("usd_amount", pa.float64()),
        ("token_amount", pa.float64()),
        ("transactionHash", pa.string()),
    ]
)
