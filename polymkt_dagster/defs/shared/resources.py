"""Every resource of the code location, built in one place from the POLYMKT_* environment.

``resources()`` is the project's single ``@dg.definitions`` function (the form the Dagster
docs give for resources in a ``dg`` project): it holds no asset, so nothing else can be
silently dropped from the module. Secrets (ClickHouse password, S3 keys, OpenAI key) are
passed as ``dg.EnvVar`` references, so their values never show in the UI or run config.
"""

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_openai import OpenAIResource

from polymkt_dagster.defs.shared.settings import settings_at_load
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.duck import configure_scratch
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.serving import clickhouse as ch

OPENAI_API_KEY_ENV = "POLYMKT_OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "POLYMKT_OPENAI_BASE_URL"
# OpenAIResource needs a key and builds its client when a run starts; without a configured
# key it gets this placeholder, which the embeddings asset recognises before any request.
SEMANTIC_SEARCH_DISABLED_KEY = "polymkt-semantic-search-disabled"


class PolymktResource(dg.ConfigurableResource):
    """Where the lake lives and how it is laid out (non-secret settings only)."""

    data_dir: str = "data"
    parquet_partitioning_enabled: bool = False
    parquet_hash_bucket_count: int = 8

    @classmethod
    def from_settings(cls, settings: Settings) -> "PolymktResource":
        return cls(
            data_dir=str(settings.data_dir),
            parquet_partitioning_enabled=settings.parquet_partitioning_enabled,
            parquet_hash_bucket_count=settings.parquet_hash_bucket_count,
        )

    def as_run_config(self) -> dict[str, Any]:
        """This lake as a run's config: a run (and its re-execution from the UI) reads it
        instead of the data dir the code location loaded with."""
        config = {name: getattr(self, name) for name in type(self).model_fields}
        return {"resources": {"polymkt": {"config": config}}}

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # DuckDB spills under the data dir (<data dir>/.polymkt-tmp), not a shared /tmp
        configure_scratch(self.data_dir)

    def settings(self) -> Settings:
        """The run's settings: the environment at run time, with this resource's lake layout."""
        return replace(
            Settings.from_env(),
            data_dir=Path(self.data_dir),
            parquet_partitioning_enabled=self.parquet_partitioning_enabled,
            parquet_hash_bucket_count=self.parquet_hash_bucket_count,
        )

    def lake(self) -> Lake:
        bucket_count = self.parquet_hash_bucket_count if self.parquet_partitioning_enabled else None
        return Lake(Path(self.data_dir) / "parquet", bucket_count=bucket_count)


class ClickHouseResource(dg.ConfigurableResource):
    """clickhouse-connect client for a server (http://host:8123) or embedded chdb:///path.

    chdb opens one data path per process: clients are shared per DSN (lib/clickhouse), so
    every asset and test in a process that names the same DSN uses one session; tests keep
    apart with their own ``database``.
    """

    enabled: bool = False
    dsn: str = ""
    user: str | None = None
    password: str | None = None
    database: str = "default"

    @classmethod
    def from_settings(cls, settings: Settings) -> "ClickHouseResource":
        password = (
            dg.EnvVar("POLYMKT_CLICKHOUSE_PASSWORD")
            if os.environ.get("POLYMKT_CLICKHOUSE_PASSWORD")
            else None
        )
        return cls(
            enabled=settings.clickhouse_enabled,
            dsn=settings.resolved_clickhouse_dsn,
            user=settings.clickhouse_user,
            password=password,  # type: ignore[arg-type]
        )

    def client(self) -> Any:
        return ch.get_client(self.dsn, user=self.user, password=self.password)


def openai_resource_from_env(env: Mapping[str, str] | None = None) -> OpenAIResource:
    """The "openai" resource: configured through EnvVar when POLYMKT_OPENAI_API_KEY is set."""
    env = os.environ if env is None else env
    if not (env.get(OPENAI_API_KEY_ENV) or "").strip():
        return OpenAIResource(api_key=SEMANTIC_SEARCH_DISABLED_KEY)
    base_url = (
        dg.EnvVar(OPENAI_BASE_URL_ENV) if (env.get(OPENAI_BASE_URL_ENV) or "").strip() else None
    )
    return OpenAIResource(api_key=dg.EnvVar(OPENAI_API_KEY_ENV), base_url=base_url)


def semantic_search_enabled(openai: OpenAIResource) -> bool:
    """Whether the "openai" resource carries a configured key (not the placeholder)."""
    return bool(openai.api_key) and openai.api_key != SEMANTIC_SEARCH_DISABLED_KEY


def s3_resource_from_settings(settings: Settings) -> S3Resource:
    """dagster-aws ``S3Resource`` from POLYMKT_S3_*; without keys boto3's own chain applies
    (AWS_* variables, a profile, an instance role)."""
    has_keys = bool(os.environ.get("POLYMKT_S3_ACCESS_KEY_ID"))
    return S3Resource(
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=dg.EnvVar("POLYMKT_S3_ACCESS_KEY_ID") if has_keys else None,
        aws_secret_access_key=dg.EnvVar("POLYMKT_S3_SECRET_ACCESS_KEY") if has_keys else None,
    )


@dg.definitions
def resources() -> dg.Definitions:
    settings = settings_at_load()
    return dg.Definitions(
        resources={
            "polymkt": PolymktResource.from_settings(settings),
            "clickhouse": ClickHouseResource.from_settings(settings),
            "s3": s3_resource_from_settings(settings),
            "openai": openai_resource_from_env(),
        }
    )
