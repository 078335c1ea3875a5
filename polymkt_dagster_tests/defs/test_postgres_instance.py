"""The optional production profile (dagster.postgres.yaml) against a real PostgreSQL."""

import shutil
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster_postgres import (
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)

from polymkt_dagster.defs.ingest.assets import raw_events, raw_markets
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_local.postgres import postgres_server

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILE = REPO_ROOT / "dagster.postgres.yaml"


def test_the_profile_is_the_default_instance_plus_postgres_storage() -> None:
    default = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    profile = yaml.safe_load(PROFILE.read_text())
    storage = profile.pop("storage")
    assert profile == default  # same concurrency, monitoring, retention, telemetry
    database = storage["postgres"]["postgres_db"]
    assert database.pop("scheme") == "postgresql+psycopg2"
    # Every connection setting, the password included, comes from the environment.
    assert all(set(value) == {"env"} for value in database.values())
    assert "storage" not in default  # SQLite stays the default


@pytest.mark.slow
def test_runs_and_events_land_in_postgres(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(PROFILE, home / "dagster.yaml")
    with postgres_server() as url:
        parsed = urlparse(url)
        for name, value in {
            "DAGSTER_PG_HOST": parsed.hostname,
            "DAGSTER_PG_PORT": str(parsed.port),
            "DAGSTER_PG_DB": parsed.path.lstrip("/"),
            "DAGSTER_PG_USER": parsed.username,
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        }.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
            assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
            result = dg.materialize(
                [raw_markets, raw_events],
                instance=instance,
                resources={"polymkt": PolymktResource(data_dir=str(data_dir))},
            )
            assert result.success
            event = instance.get_latest_materialization_event(raw_markets.key)
            assert event is not None and event.run_id == result.run_id
            assert event.asset_materialization.metadata["dagster/row_count"].value > 0
            assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
        # A second instance (another process: the daemon, the webserver) sees the same run.
        with dg.DagsterInstance.from_config(str(home)) as other:
            assert other.get_run_by_id(result.run_id) is not None
        with psycopg2.connect(url) as con, con.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,))
            assert cursor.fetchone()[0] == 1
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
                "'ASSET_MATERIALIZATION'",
                (result.run_id,),
            )
            assert cursor.fetchone()[0] == 2
