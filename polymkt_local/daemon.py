"""`dagster-daemon run` and the web UI's server over the project's code location in a scratch
DAGSTER_HOME.

Used by the daemon and UI tests, bench/daemon.py and bench/run_page.py: each runs in its own
process group (its code server and run workers are its children), so stopping it ends every
process it started.
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


@contextmanager
def running_daemon(home: Path, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Start the daemon on the code location; on exit stop it and everything it launched."""
    with _dagster_process(["dagster-daemon", "run"], home, env, log) as process:
        yield process


@contextmanager
def running_webserver(
    home: Path, env: Mapping[str, str], log: Path, port: int, *, ready_timeout_s: float = 240
) -> Iterator[subprocess.Popen]:
    """Start the web UI's server on 127.0.0.1:``port`` and wait until it answers; on exit stop
    it and its code server."""
    command = ["dagster-webserver", "--host", "127.0.0.1", "--port", str(port)]
    with _dagster_process(command, home, env, log) as process:
        wait_for("for the web server", lambda: _webserver_up(port), timeout_s=ready_timeout_s,
                 process=process, log=log)  # fmt: skip
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
            [executable, *command[1:], "-w", str(REPO_ROOT / "workspace.yaml")],
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
