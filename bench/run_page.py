"""Run page: the main job's event log on the bundled sample, and how long the web UI's
GraphQL API takes to serve what the run page loads.

    python bench/run_page.py

Issue 14 measured the main job's run page at 53-74 s to open (9,606 events, a 26 MB event
log, 400-market sample) and asks for one that opens in seconds. `polymkt pipeline` runs the
main job twice here, each time into a fresh data dir and Dagster home:

- **baseline**: Dagster's default for range runs, one "materialization planned" event per
  asset and day (``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=false``);
- **now**: as `polymkt pipeline` runs (one planned event per asset of the range).

For each: the run's events, its event-log file, and, from a real ``dagster-webserver``, the
time to fetch the run and then all its events through ``logsForRun`` (what the run page
loads before it shows the log), and the run page itself in headless Chromium: from opening
its address to the run's last event ("Finished execution of run") on screen. The figures are
compared in the same run (a ratio).

The browser part needs Debian's Chromium and Playwright's Python driver (``apt-get install
chromium`` and ``pip install -e '.[bench]'``); without them it is reported as not measured.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, banner, fmt_mb, print_table, verdict

PORT = 3190
PAGE = 5_000
CHROMIUM = "/usr/bin/chromium"
# flags for a closed network: without them Chromium keeps trying Google's hosts
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
BROWSER_TIMEOUT_MS = 300_000
RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { id status jobName stats { ... on RunStatsSnapshot { stepsSucceeded } } }
  }
}"""
LOGS_QUERY = """
query Logs($runId: ID!, $cursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp level stepKey }
        ... on MaterializationEvent { assetKey { path } partition
                                      metadataEntries { label description } }
      }
    }
  }
}"""


def main() -> int:
    banner("run page: the main job's event log on the sample")
    work = Path(tempfile.mkdtemp(prefix="polymkt_bench_run_page_"))
    rows = []
    figures: dict[str, dict[str, float]] = {}
    for variant, planned_subset in (("baseline", "false"), ("now", None)):
        figures[variant] = measure(work / variant, planned_subset)
        f = figures[variant]
        rows.append(
            [variant, f"{f['pipeline_s']:.0f}", int(f["events"]), int(f["planned"]),
             fmt_mb(f["event_log_bytes"]), f"{f['page_s']:.2f}", _seconds(f["header_s"]),
             _seconds(f["browser_s"])]
        )  # fmt: skip
    print_table(
        ["variant", "pipeline s", "events", "planned events", "event log", "GraphQL fetch s",
         "browser: header s", "browser: whole log s"],
        rows,
    )  # fmt: skip
    base, now = figures["baseline"], figures["now"]
    events_ratio = now["events"] / base["events"]
    page_ratio = now["page_s"] / base["page_s"]
    print(f"\nevents, now / baseline: {events_ratio:.2f}")
    print(f"run page fetch, now / baseline: {page_ratio:.2f}")
    if now["browser_s"] > 0 and base["browser_s"] > 0:
        print(f"run page in Chromium, now / baseline: {now['browser_s'] / base['browser_s']:.2f}")
    else:
        print("run page in Chromium: not measured (apt-get install chromium; "
              "pip install -e '.[bench]')")  # fmt: skip
    ok = now["planned"] < base["planned"] and now["page_s"] < 10.0
    if now["browser_s"] > 0:
        ok = ok and now["browser_s"] < 15.0
    print(f"run page of the main job opens in seconds (fetch < 10 s, Chromium < 15 s) and "
          f"fewer planned events: {verdict(ok)}")  # fmt: skip
    return 0 if ok else 1


def _seconds(value: float) -> str:
    return f"{value:.2f}" if value > 0 else "n/a"


def browser_page(port: int, run_id: str) -> tuple[float, float]:
    """Seconds from opening the run page in headless Chromium to its header (the run's
    status) and to the run's last event in the log; (0, 0) without Chromium or Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return 0.0, 0.0
    if not shutil.which(CHROMIUM):
        return 0.0, 0.0
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            started = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/runs/{run_id}")
            page.get_by_text("Run of main").first.wait_for(timeout=BROWSER_TIMEOUT_MS)
            header_s = time.perf_counter() - started
            page.get_by_text('Finished execution of run for "main"').first.wait_for(
                timeout=BROWSER_TIMEOUT_MS
            )
            return header_s, time.perf_counter() - started
        finally:
            browser.close()


def measure(root: Path, planned_subset: str | None) -> dict[str, float]:
    data, home = root / "data", root / "home"
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMKT_")}
    env.update({"DAGSTER_HOME": str(home), "POLYMKT_DATA_DIR": str(data)})
    env.pop("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", None)
    if planned_subset is not None:
        env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = planned_subset
    started = time.perf_counter()
    polymkt = Path(sys.executable).parent / "polymkt"
    subprocess.run([str(polymkt), "pipeline"], env=env, cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    pipeline_s = time.perf_counter() - started
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    instance = dg.DagsterInstance.get()
    (run,) = instance.get_runs(filters=dg.RunsFilter(job_name="main"), limit=1)
    events = instance.all_logs(run.run_id)
    planned = sum(
        1 for e in events
        if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION_PLANNED"
    )  # fmt: skip
    db = home / "history" / "runs" / f"{run.run_id}.db"
    from polymkt_local.daemon import graphql, running_webserver

    with running_webserver(home, env, root / "webserver.log", PORT):
        started = time.perf_counter()
        graphql(PORT, RUN_QUERY, {"runId": run.run_id})
        fetched, cursor = 0, None
        while True:
            answer = graphql(
                PORT, LOGS_QUERY, {"runId": run.run_id, "cursor": cursor, "limit": PAGE}
            )
            connection = answer["data"]["logsForRun"]
            fetched += len(connection["events"])
            cursor = connection["cursor"]
            if not connection["hasMore"]:
                break
        page_s = time.perf_counter() - started
        header_s, browser_s = browser_page(PORT, run.run_id)
    return {
        "pipeline_s": pipeline_s,
        "events": float(len(events)),
        "fetched": float(fetched),
        "planned": float(planned),
        "event_log_bytes": float(db.stat().st_size if db.exists() else 0),
        "page_s": page_s,
        "header_s": header_s,
        "browser_s": browser_s,
    }


if __name__ == "__main__":
    sys.exit(main())
