"""`dagster-daemon run` and the web UI's server over the project's code location in a scratch
DAGSTER_HOME.

Used by the daemon and UI tests, bench/daemon.py and bench/run_page.py. Each serves the code
location from a long-running `dagster code-server start` of its own, as `dagster dev` and the
README's deployment do: a daemon given the `python_module` workspace replaces its code server
every minute, and each new one imports the definitions again (seconds of CPU) and answers the
next sensor tick late. The code server and the process it fronts each run in their own
process group (the run workers are the code server's children), so stopping them ends every
process they started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from polymkt_local.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
T = TypeVar("T")

# Quick dequeues for tests; the rest is the project's dagster.yaml.
TEST_INSTANCE_EXTRA = """
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
    dequeue_use_threads: true
"""


def prepare_home(home: Path, extra: str = TEST_INSTANCE_EXTRA) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    config = (REPO_ROOT / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(config + extra)
    return home


LOCATION_NAME = "polymkt"  # workspace.yaml's, which runs launched from the UI carry


@contextmanager
def running_code_server(
    home: Path, env: Mapping[str, str], log: Path, *, ready_timeout_s: float = 240
) -> Iterator[Path]:
    """Start `dagster code-server start` for the code location on a free loopback port and
    wait until it has loaded the definitions; yields a workspace file that points at it.
    On exit stop it and the runs it launched."""
    port = free_port()
    command = [
        "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
        "-m", "polymkt_dagster.definitions", "-d", str(REPO_ROOT),
        "--location-name", LOCATION_NAME, "--log-level", "warning",
    ]  # fmt: skip
    workspace = home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {port}\n      location_name: {LOCATION_NAME}\n"
    )
    with _dagster_process(command, home, env, log) as process:
        wait_for("for the code server", lambda: _code_server_up(port),
                 timeout_s=ready_timeout_s, process=process, log=log)  # fmt: skip
        yield workspace


@contextmanager
def running_daemon(home: Path, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Start the daemon on the code location (served by a code server of its own); on exit
    stop it and everything it launched."""
    code_server_log = log.with_name(f"{log.stem}.code_server.log")
    with running_code_server(home, env, code_server_log) as workspace:
        command = ["dagster-daemon", "run", "-w", str(workspace)]
        with _dagster_process(command, home, env, log) as process:
            yield process


@contextmanager
def running_webserver(
    home: Path, env: Mapping[str, str], log: Path, port: int, *, ready_timeout_s: float = 240
) -> Iterator[subprocess.Popen]:
    """Start the web UI's server on 127.0.0.1:``port`` (on a code server of its own) and wait
    until it answers; on exit stop it and its code server."""
    code_server_log = log.with_name(f"{log.stem}.code_server.log")
    with running_code_server(home, env, code_server_log) as workspace:
        command = ["dagster-webserver", "--host", "127.0.0.1", "--port", str(port),
                   "-w", str(workspace)]  # fmt: skip
        with _dagster_process(command, home, env, log) as process:
            wait_for("for the web server", lambda: _webserver_up(port),
                     timeout_s=ready_timeout_s, process=process, log=log)  # fmt: skip
            yield process


def graphql(port: int, query: str, variables: Mapping[str, Any], timeout_s: float = 300) -> dict:
    """The web server's answer to a GraphQL request, as the UI sends it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": dict(variables)}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read())


def _code_server_up(port: int) -> bool:
    from dagster._grpc.client import DagsterGrpcClient

    try:
        # answered once the definitions are loaded
        DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories()
    except Exception:  # not listening yet, or still loading them
        return False
    return True


def _webserver_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def _dagster_process(
    command: list[str], home: Path, env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMKT_")}
    full_env.update(env)
    full_env["DAGSTER_HOME"] = str(home)
    full_env["PYTHONPATH"] = str(REPO_ROOT)
    executable = str(Path(sys.executable).parent / command[0])
    with log.open("w") as out:
        process = subprocess.Popen(
            [executable, *command[1:]],
            env=full_env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            yield process
        finally:
            stop_group(process)


def stop_group(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the daemon's process group, SIGKILL whatever is left after the grace."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        process.poll()
        time.sleep(0.2)
    else:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def instance_at(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
    interval_s: float = 0.5,
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail with the daemon's log tail."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"daemon exited ({process.returncode}) {what}\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s {what}\n{_tail(log)}")
        time.sleep(interval_s)


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-4000:]


def runs_with_tag(instance: dg.DagsterInstance, key: str, value: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={key: value})))


def sensor_ticks(instance: dg.DagsterInstance, name: str) -> list:
    """Every recorded tick of the sensor called ``name``, newest first."""
    for state in instance.all_instigator_state():
        if state.name == name:
            return list(instance.get_ticks(state.instigator_origin_id, state.selector_id))
    return []
