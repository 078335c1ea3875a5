"""The S3 lake against a real SeaweedFS server: verified mirror, incremental re-runs,
DuckDB httpfs reads, the cloud bootstrap, and errors without credentials."""

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from polymkt_dagster.cli.main import main
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.serving.s3_lake import (
    S3LakeError,
    configure_duckdb_s3,
    lake_files,
    mirror_lake,
    s3_table_url,
)
from polymkt_local.seaweed import SeaweedS3

PREFIX = "lake"


@pytest.fixture
def lake_copy(tmp_path: Path, sample_lake: Lake) -> Lake:
    root = tmp_path / "data" / "parquet"
    shutil.copytree(sample_lake.root, root)
    return Lake(root)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mirror_is_verified_incremental_and_prunes(seaweedfs: SeaweedS3, lake_copy: Lake) -> None:
    client, bucket = seaweedfs.client(), seaweedfs.new_bucket()
    first = mirror_lake(client, lake_copy.root, bucket, PREFIX)
    local = dict(lake_files(lake_copy.root))
    assert len(first.uploaded) == first.verified == len(local) > 100
    assert f"{PREFIX}/raw/polymarket/markets.parquet" in first.uploaded
    day_key = next(k for k in first.uploaded if "/order_filled/year=" in k)
    assert day_key.endswith("/part-0.parquet") and "/month=" in day_key and "/day=" in day_key
    head = client.head_object(Bucket=bucket, Key=day_key)
    assert head["Metadata"]["sha256"] == _sha(local[day_key.removeprefix(f"{PREFIX}/")])

    second = mirror_lake(client, lake_copy.root, bucket, PREFIX)
    assert second.uploaded == [] and second.skipped == len(local)

    changed = lake_copy.root / day_key.removeprefix(f"{PREFIX}/")
    with connect() as con:  # rewrite one partition with one row less
        con.execute(f"COPY (SELECT * FROM read_parquet('{changed}') LIMIT 1 OFFSET 1) "
                    f"TO '{changed}.new' (FORMAT parquet)")  # fmt: skip
    os.replace(f"{changed}.new", changed)
    gone = lake_copy.root / "raw/polymarket/events.parquet"
    gone.unlink()
    (lake_copy.root / "raw/polymarket/.part-0.parquet.abc.tmp").write_bytes(b"half written")
    third = mirror_lake(client, lake_copy.root, bucket, PREFIX)
    assert third.uploaded == [day_key]
    assert third.deleted == [f"{PREFIX}/raw/polymarket/events.parquet"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=PREFIX)["Contents"]}
    assert not any(".tmp" in k for k in keys)


def test_duckdb_reads_the_lake_in_s3(seaweedfs: SeaweedS3, lake_copy: Lake) -> None:
    client, bucket = seaweedfs.client(), seaweedfs.new_bucket()
    mirror_lake(client, lake_copy.root, bucket, PREFIX)
    trades_glob = s3_table_url(bucket, PREFIX, "raw/polymarket/trades/*/*/*/*.parquet")
    with connect(extensions=("httpfs",)) as con:
        configure_duckdb_s3(con, endpoint_url=seaweedfs.endpoint_url, region=seaweedfs.region,
                            key_id=seaweedfs.access_key, secret=seaweedfs.secret_key)  # fmt: skip
        remote = con.execute(
            f"SELECT count(*), sum(usd_amount) FILTER (WHERE is_taker_side) "
            f"FROM read_parquet('{trades_glob}')"
        ).fetchone()
        local = con.execute(
            f"SELECT count(*), sum(usd_amount) FILTER (WHERE is_taker_side) "
            f"FROM {lake_copy.scan_sql(TRADES)}"
        ).fetchone()
        markets = con.execute(
            f"SELECT count(*) FROM read_parquet('"
            f"{s3_table_url(bucket, PREFIX, 'raw/polymarket/markets.parquet')}')"
        ).fetchone()
    assert remote[0] == local[0] > 1000 and remote[1] == pytest.approx(local[1])
    assert markets[0] > 100


def test_cloud_bootstrap_builds_the_local_lake_from_s3(
    seaweedfs: SeaweedS3, lake_copy: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, bucket = seaweedfs.client(), seaweedfs.new_bucket()
    mirror_lake(client, lake_copy.root, bucket, PREFIX)
    for name, value in {**seaweedfs.env(bucket), "POLYMKT_S3_PREFIX": PREFIX}.items():
        monkeypatch.setenv(name, value)
    fresh = tmp_path / "fresh"
    result = CliRunner().invoke(main, ["--data-dir", str(fresh), "bootstrap", "--from-s3"])
    assert result.exit_code == 0, result.output
    pulled = dict(lake_files(fresh / "parquet"))
    original = dict(lake_files(lake_copy.root))
    assert pulled.keys() == original.keys()
    assert all(_sha(pulled[k]) == _sha(original[k]) for k in original)
    with connect(fresh / "polymkt.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM trades").fetchone()[0] > 1000
    assert seaweedfs.secret_key not in result.output
    again = CliRunner().invoke(main, ["--data-dir", str(fresh), "bootstrap", "--from-s3"])
    assert again.exit_code == 0 and "Pulled 0 files" in again.output


def test_bad_credentials_fail_clearly_without_the_secret(
    seaweedfs: SeaweedS3, lake_copy: Lake
) -> None:
    bucket = seaweedfs.new_bucket()
    wrong = "wrong-secret-value-0123456789"
    client = seaweedfs.client(secret_key=wrong)
    with pytest.raises(S3LakeError) as caught:
        mirror_lake(client, lake_copy.root, bucket, PREFIX,
                    secrets=[seaweedfs.access_key, wrong])  # fmt: skip
    message = str(caught.value)
    assert "SignatureDoesNotMatch" in message and bucket in message
    assert wrong not in message and seaweedfs.access_key not in message
