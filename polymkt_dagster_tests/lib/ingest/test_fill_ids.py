"""Fill ids: the compiled XXH64 digest agrees with the reference xxhash package."""

import numpy as np
import pyarrow as pa
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from polymkt_dagster.lib.ingest.fill_ids import content_digests, fill_ids

# Cells of every length around the XXH64 stripe (32 bytes) and lane (8, 4) boundaries.
cells = st.text(alphabet="0123456789abcdefx", max_size=90)
fills = st.lists(st.tuples(*[cells] * 6), min_size=1, max_size=40)


def _reference(content: tuple[str, ...]) -> str:
    return xxhash.xxh64_hexdigest("|".join(content).encode())


@settings(max_examples=60, deadline=None)
@given(fills)
def test_digest_is_xxh64_of_the_joined_content(rows: list[tuple[str, ...]]) -> None:
    columns = [pa.array([row[k] for row in rows]) for k in range(6)]
    digests = content_digests(*columns)
    assert [f"{int(d):016x}" for d in digests] == [_reference(row) for row in rows]


def test_fill_id_is_the_hash_plus_the_digest_of_the_canonical_content() -> None:
    tx = ["0x" + "ab" * 32, "0x" + "cd" * 32, "0xshort"]
    maker = ["0x" + "11" * 20] * 3
    taker = ["0x" + "22" * 20] * 3
    assets = ["0", "7" * 77, "0"]
    other_assets = ["7" * 77, "0", "7" * 77]
    amounts = [500_000, 2_000_000, 1]
    shares = [1_000_000, 900_000, 10**18]
    ids = fill_ids(
        pa.array(tx),
        pa.array(maker),
        pa.array(taker),
        pa.array(assets),
        pa.array(other_assets),
        pa.array(amounts, pa.int64()),  # integers are digested as their decimal text
        pa.array(shares, pa.int64()),
    ).to_pylist()
    expected = [
        f"{tx[i]}_"
        + _reference(
            (maker[i], taker[i], assets[i], other_assets[i], str(amounts[i]), str(shares[i]))
        )
        for i in range(3)
    ]
    assert ids == expected
    assert len(set(ids)) == 3  # the first two share content apart from side and amounts


def test_a_subset_of_rows_is_digested_alone() -> None:
    columns = [pa.array([f"{k}{i}" for i in range(5)]) for k in range(6)]
    some = content_digests(*columns, rows=np.array([4, 1]))
    every = content_digests(*columns)
    assert list(some) == [every[4], every[1]]
