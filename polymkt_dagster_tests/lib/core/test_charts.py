"""Charts for the UI: real PNGs of a readable size, and the calibration buckets."""

import base64
import io
from datetime import UTC, datetime, timedelta

from PIL import Image

from polymkt_dagster.lib.core import charts


def _size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(png)).size


def test_charts_are_pngs_wide_enough_to_read_in_the_ui() -> None:
    days = [datetime(2024, 3, 1, tzinfo=UTC) + timedelta(days=i) for i in range(20)]
    pngs = [
        charts.price_volume_png(days, [0.4 + i / 100 for i in range(20)], [100.0] * 20, "m"),
        charts.calibration_png({7: [(0.55, 0.5, 4), (0.85, 0.9, 10)], 30: []}),
        charts.freshness_png([("markets", 12.0, 60.0), ("fills", 25.5, 10.0), ("rpc", None, 10)]),
        charts.pnl_png({"0x" + "ab" * 20: (days, [i * 3.5 - 20 for i in range(20)])}, "P&L"),
    ]
    for png in pngs:
        width, height = _size(png)
        assert width >= 900 and height >= 300


def test_markdown_embeds_the_png_as_a_data_uri() -> None:
    png = charts.freshness_png([("fills", 1.0, 10.0)])
    text = charts.png_markdown(png, "freshness")
    assert text.startswith("![freshness](data:image/png;base64,")
    assert base64.b64decode(text.split(",", 1)[1].rstrip(")")) == png


def test_calibration_points_bucket_prices_and_count_wins() -> None:
    points = charts.calibration_points(
        [0.52, 0.58, 0.91, 0.99, 1.0], [True, False, True, True, True]
    )
    assert points == [(0.55, 0.5, 2), (0.9667, 1.0, 3)]


def test_tables_round_to_meaning_and_keep_angle_brackets() -> None:
    import pyarrow as pa

    from polymkt_dagster.lib.core.report import markdown_table

    table = pa.table(
        {
            "volume_usd": [790922.9399999987],
            "margin": [0.6400000000000001],
            "path": ["analytics/backtests/<id>/"],
        }
    )
    text = markdown_table(table)
    assert "| 790,922.94 | 0.64 | analytics/backtests/&lt;id&gt;/ |" in text
