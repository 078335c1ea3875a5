"""Every resource of the platform, configured from POLYMKT_* environment variables."""

from dataclasses import replace
from pathlib import Path

import dagster as dg

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.duck import configure_scratch
from polymkt_dagster.lib.core.lake import Lake


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

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # DuckDB spills under the data dir (<data dir>/.polymkt-tmp), not a shared /tmp
        configure_scratch(self.data_dir)

    def settings(self) -> Settings:
        return replace(
            Settings.from_env(),
            data_dir=Path(self.data_dir),
            parquet_partitioning_enabled=self.parquet_partitioning_enabled,
            parquet_hash_bucket_count=self.parquet_hash_bucket_count,
        )

    def lake(self) -> Lake:
        bucket_count = self.parquet_hash_bucket_count if self.parquet_partitioning_enabled else None
        return Lake(Path(self.data_dir) / "parquet", bucket_count=bucket_count)


@dg.definitions
def resources() -> dg.Definitions:
    settings = Settings.from_env()
    return dg.Definitions(resources={"polymkt": PolymktResource.from_settings(settings)})
