from pathlib import Path

import pytest

from polymkt_dagster.lib.core.config import ConfigError, Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path("data")
    assert settings.lake_dir == Path("data/parquet")
    assert settings.parquet_partitioning_enabled is False
    assert settings.parquet_hash_bucket_count == 8
    assert settings.order_filled_source == "goldsky"
    assert settings.resolved_clickhouse_dsn.startswith("chdb:///")


def test_values_from_environment() -> None:
    settings = Settings.from_env(
        {
            "POLYMKT_DATA_DIR": "/srv/lake",
            "POLYMKT_PARQUET_PARTITIONING_ENABLED": "TRUE",
            "POLYMKT_PARQUET_HASH_BUCKET_COUNT": "16",
            "POLYMKT_ORDER_FILLED_SOURCE": "rpc",
            "POLYMKT_INGEST_MODE": "live",
        }
    )
    assert settings.data_dir == Path("/srv/lake")
    assert settings.parquet_partitioning_enabled is True
    assert settings.parquet_hash_bucket_count == 16
    assert settings.order_filled_source == "rpc"
    assert settings.ingest_mode == "live"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("POLYMKT_PARQUET_PARTITIONING_ENABLED", "maybe", "not a boolean"),
        ("POLYMKT_PARQUET_HASH_BUCKET_COUNT", "0", "at least 1"),
        ("POLYMKT_PARQUET_HASH_BUCKET_COUNT", "eight", "not an integer"),
        ("POLYMKT_ORDER_FILLED_SOURCE", "ftp://x", "not a source name"),
    ],
)
def test_bad_values_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value)


def test_secret_never_in_repr() -> None:
    settings = Settings.from_env({"POLYMKT_OPENAI_API_KEY": "sk-very-secret"})
    assert settings.openai_api_key == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)
