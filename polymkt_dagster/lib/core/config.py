"""Runtime settings read from POLYMKT_* environment variables (docs/architecture.md §6)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from polymkt_dagster.lib.core.redact import register_secrets

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A POLYMKT_* variable holds a value the platform cannot use."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def _positive_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={raw!r} must be a number between 0 and 1")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from exc
    if not (value > 0 and value != float("inf")):
        raise ConfigError(f"{name}={raw!r} must be a positive, finite number of seconds")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(allowed)}")
    return value


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    """A source name; which names exist is the source registry's to say, when the source is made
    (lib/ingest/sources/registry.py), so that a new source is registered in one place."""
    value = env.get(name, default).strip().lower() or default
    if not value.isidentifier():
        raise ConfigError(f"{name}={value!r} is not a source name")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the platform reads from the environment, with documented defaults."""

    data_dir: Path = Path("data")
    parquet_partitioning_enabled: bool = False
    parquet_hash_bucket_count: int = 8
    gamma_api_url: str = "https://gamma-api.polymarket.com"
    goldsky_orderbook_url: str = (
        "https://api.goldsky.com/api/public/project_cl6mb8i9h0003e201j6li0diw/"
        "subgraphs/orderbook-subgraph/0.0.1/gn"
    )
    # RPC URLs often embed an API key (path or query): kept out of repr() like a secret.
    polygon_rpc_url: str = field(default="https://polygon-rpc.com", repr=False)
    order_filled_source: str = "goldsky"
    openai_base_url: str | None = None
    openai_embedding_model: str = "text-embedding-3-small"
    s3_enabled: bool = False
    s3_bucket: str = "polymkt"
    s3_endpoint_url: str | None = None
    s3_prefix: str = ""
    clickhouse_enabled: bool = False
    clickhouse_dsn: str | None = None
    ingest_mode: str = "off"
    analytics_mode: str = "on"
    openai_chat_model: str = "gpt-4o-mini"
    clickhouse_user: str | None = None
    watchlists_file: Path | None = None
    alerts_webhook_url: str | None = None
    # wallets/positions:oversells_reported passes while oversold proceeds are at most this
    # share of all sell proceeds (fills, merges, redemptions, conversions)
    oversell_max_share: float = 0.05
    # Secrets are kept out of repr() so a printed Settings never leaks them.
    openai_api_key: str | None = field(default=None, repr=False)
    clickhouse_password: str | None = field(default=None, repr=False)
    # Live sync (issue 3): chain confirmations, S3 region and keys (keys never printed).
    rpc_confirmations: int = 32
    # CTF position events (docs/architecture.md §3.1): chain logs, or the activity subgraph.
    ctf_events_source: str = "rpc"
    goldsky_activity_url: str = (
        "https://api.goldsky.com/api/public/project_cl6mb8i9h0003e201j6li0diw/"
        "subgraphs/activity-subgraph/0.0.4/gn"
    )
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    # Guarded SQL (polymkt sql / ask): per-query timeout and engine memory cap.
    sql_timeout_s: float = 30.0
    sql_memory_limit: str = "1GB"
    # Sensor intervals (issue 14): the fills sync's tick and the automation sensor's; tests and
    # the daemon benchmark shorten them.
    fills_sensor_interval_seconds: int = 600
    automation_interval_seconds: int = 30

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "parquet"

    @property
    def bucket_count(self) -> int | None:
        """``Lake``'s bucket count: None when trades are partitioned by day only."""
        return self.parquet_hash_bucket_count if self.parquet_partitioning_enabled else None

    @property
    def rejects_dir(self) -> Path:
        return self.data_dir / "rejects"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "polymkt.duckdb"

    @property
    def resolved_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb:///{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def resolved_watchlists_file(self) -> Path:
        return self.watchlists_file or self.data_dir / "watchlists.yaml"

    def with_data_dir(self, data_dir: Path | str) -> Settings:
        return replace(self, data_dir=Path(data_dir))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()

        def text(name: str, default: str | None) -> str | None:
            raw = env.get(f"POLYMKT_{name}")
            return raw.strip() if raw is not None and raw.strip() else default

        settings = cls(
            data_dir=Path(text("DATA_DIR", str(defaults.data_dir)) or "data"),
            parquet_partitioning_enabled=_flag(env, "POLYMKT_PARQUET_PARTITIONING_ENABLED", False),
            parquet_hash_bucket_count=_positive_int(env, "POLYMKT_PARQUET_HASH_BUCKET_COUNT", 8),
            gamma_api_url=text("GAMMA_API_URL", defaults.gamma_api_url) or "",
            goldsky_orderbook_url=text("GOLDSKY_ORDERBOOK_URL", defaults.goldsky_orderbook_url)
            or "",
            polygon_rpc_url=text("POLYGON_RPC_URL", defaults.polygon_rpc_url) or "",
            order_filled_source=_name(env, "POLYMKT_ORDER_FILLED_SOURCE", "goldsky"),
            openai_api_key=text("OPENAI_API_KEY", None),
            openai_base_url=text("OPENAI_BASE_URL", None),
            openai_embedding_model=text("OPENAI_EMBEDDING_MODEL", defaults.openai_embedding_model)
            or defaults.openai_embedding_model,
            s3_enabled=_flag(env, "POLYMKT_S3_ENABLED", False),
            s3_bucket=text("S3_BUCKET", defaults.s3_bucket) or defaults.s3_bucket,
            s3_endpoint_url=text("S3_ENDPOINT_URL", None),
            s3_prefix=(text("S3_PREFIX", "") or "").strip("/"),
            clickhouse_enabled=_flag(env, "POLYMKT_CLICKHOUSE_ENABLED", False),
            clickhouse_dsn=text("CLICKHOUSE_DSN", None),
            ingest_mode=_choice(env, "POLYMKT_INGEST_MODE", "off", ("off", "live")),
            analytics_mode=_choice(env, "POLYMKT_ANALYTICS_MODE", "on", ("off", "on")),
            openai_chat_model=text("OPENAI_CHAT_MODEL", defaults.openai_chat_model)
            or defaults.openai_chat_model,
            clickhouse_user=text("CLICKHOUSE_USER", None),
            clickhouse_password=text("CLICKHOUSE_PASSWORD", None),
            rpc_confirmations=_positive_int(env, "POLYMKT_RPC_CONFIRMATIONS", 32, minimum=0),
            ctf_events_source=_name(env, "POLYMKT_CTF_EVENTS_SOURCE", "rpc"),
            goldsky_activity_url=text("GOLDSKY_ACTIVITY_URL", defaults.goldsky_activity_url) or "",
            s3_region=text("S3_REGION", defaults.s3_region) or defaults.s3_region,
            s3_access_key_id=text("S3_ACCESS_KEY_ID", None),
            s3_secret_access_key=text("S3_SECRET_ACCESS_KEY", None),
            watchlists_file=Path(w) if (w := text("WATCHLISTS_FILE", None)) else None,
            alerts_webhook_url=text("ALERTS_WEBHOOK_URL", None),
            oversell_max_share=_fraction(env, "POLYMKT_OVERSELL_MAX_SHARE", 0.05),
            sql_timeout_s=_positive_seconds(env, "POLYMKT_SQL_TIMEOUT_S", defaults.sql_timeout_s),
            sql_memory_limit=text("SQL_MEMORY_LIMIT", defaults.sql_memory_limit)
            or defaults.sql_memory_limit,
            fills_sensor_interval_seconds=_positive_int(
                env, "POLYMKT_FILLS_SENSOR_INTERVAL_SECONDS", 600
            ),
            automation_interval_seconds=_positive_int(
                env, "POLYMKT_AUTOMATION_INTERVAL_SECONDS", 30
            ),
        )
        register_secrets(*settings.secret_values())
        return settings

    def secret_values(self) -> list[str | None]:
        """Every configured value that holds a credential (keys, URLs with keys in them)."""
        return [
            self.polygon_rpc_url,
            self.goldsky_orderbook_url,
            self.gamma_api_url,
            self.openai_base_url,
            self.openai_api_key,
            self.clickhouse_password,
            self.clickhouse_dsn,
            self.s3_access_key_id,
            self.s3_secret_access_key,
            self.alerts_webhook_url,
        ]
