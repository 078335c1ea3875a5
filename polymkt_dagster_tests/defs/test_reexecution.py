"""A run the CLI records is a run of the code location: the web UI re-executes it.

The parent run is executed in this process by ``run_job`` (what `polymkt pipeline` does); the
re-execution is asked of a real ``dagster-webserver`` over GraphQL, as the run page's
"Re-execute" button asks it, and runs in the run worker the webserver launches.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from polymkt_dagster.definitions import LOCATION_NAME, run_job
from polymkt_dagster.defs.jobs import MAIN_JOB
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_local import daemon as local_daemon
from polymkt_local.daemon import graphql, instance_at, running_webserver, wait_for
from polymkt_local.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKETS = dg.AssetKey(["raw", "markets"])
# The instance launches runs as soon as they are submitted (no daemon to dequeue them).
INSTANCE_YAML = """
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
"""
REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def test_workspace_names_the_location_runs_are_recorded_under() -> None:
    for name in ("workspace.yaml", "workspace.code_server.yaml"):
        assert f"location_name: {LOCATION_NAME}\n" in (REPO_ROOT / name).read_text(), name
    assert local_daemon.LOCATION_NAME == LOCATION_NAME  # the tests' and benches' code server


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_cli_run_is_re_executed_from_the_web_ui(tmp_path: Path, sample_dir: Path) -> None:
    data_dir, home = tmp_path / "data", tmp_path / "home"
    data_dir.mkdir()
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    for name in ("markets.csv", "markets.json"):
        shutil.copyfile(sample_dir / name, data_dir / name)

    with instance_at(home) as instance:
        parent = run_job(
            MAIN_JOB,
            instance=instance,
            polymkt=PolymktResource(data_dir=str(data_dir)),
            tags={"polymkt/test": "reexecution"},
            asset_selection=[MARKETS],
        )
        assert parent.success
        recorded = instance.get_run_by_id(parent.run_id)
        assert recorded is not None and recorded.remote_job_origin is not None
        assert recorded.remote_job_origin.location_name == LOCATION_NAME
        assert recorded.job_name == MAIN_JOB

    port = free_port()
    log = tmp_path / "webserver.log"
    # The location loads with another data dir: the run's config must carry the lake.
    env = {"POLYMKT_DATA_DIR": str(tmp_path / "elsewhere")}
    with running_webserver(home, env, log, port):
        answer = graphql(port, REEXECUTE, {"parentRunId": parent.run_id})
        launched = answer["data"]["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child_id = launched["run"]["runId"]

        with instance_at(home) as instance:

            def finished() -> dg.DagsterRun | None:
                run = instance.get_run_by_id(child_id)
                return run if run is not None and run.is_finished else None

            child = wait_for("for the re-executed run", finished, timeout_s=300, log=log)
            assert child.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
            assert child.parent_run_id == parent.run_id
            assert child.job_name == MAIN_JOB
            assert child.asset_selection == {MARKETS}
            assert child.tags["polymkt/test"] == "reexecution"
            materializations = instance.fetch_materializations(MARKETS, limit=10).records
            assert {m.run_id for m in materializations} == {parent.run_id, child_id}
    assert not (tmp_path / "elsewhere").exists()
