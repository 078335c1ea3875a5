"""The whole code location against a committed snapshot: what moving wiring around must not change.

Loads ``polymkt_dagster.definitions`` (the module `dagster dev` and the daemon load) and
describes every asset (group, partitions, automation condition, parents), asset check,
sensor, schedule, job, resource and the executor, then compares that with
``defs_snapshot.json`` beside this file. A difference fails with both versions shown.

Several definitions depend on the environment the location loads in (sensor intervals and
default statuses, analytics automation on or off), so the location is loaded in a fresh
interpreter per scenario of :data:`SCENARIOS`, with no other ``POLYMKT_*`` variable: the
defaults, and every load-time setting turned the other way. The developer's shell never leaks
into the snapshot.

When a change to the definitions is intended, regenerate the snapshot and commit it with the
change, so the review shows exactly what moved:

    POLYMKT_UPDATE_SNAPSHOT=1 python -m pytest -q polymkt_dagster_tests/defs/test_defs.py
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

# The domains of defs/ from upstream to downstream: a domain imports defs/shared and the
# domains before it (their asset keys), never one after it (docs/architecture.md §7).
DOMAIN_ORDER = ["ingest", "analytics", "wallets", "search", "research", "serving"]
# The one module allowed a @dg.definitions function (it holds resources only).
RESOURCES_MODULE = "polymkt_dagster.defs.shared.resources"
SNAPSHOT = Path(__file__).with_name("defs_snapshot.json")
UPDATE_ENV = "POLYMKT_UPDATE_SNAPSHOT"
LOCATION_MODULE = "polymkt_dagster.definitions"
# The environments the location is described in (every load-time setting changed in the second).
SCENARIOS: dict[str, dict[str, str]] = {
    "defaults": {},
    "analytics_off_ingest_live": {
        "POLYMKT_ANALYTICS_MODE": "off",
        "POLYMKT_INGEST_MODE": "live",
        "POLYMKT_FILLS_SENSOR_INTERVAL_SECONDS": "120",
        "POLYMKT_AUTOMATION_INTERVAL_SECONDS": "45",
    },
}


def _key(key: dg.AssetKey) -> str:
    return key.to_user_string()


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> str | None:
    return None if partitions_def is None else str(partitions_def)


def _condition(condition: dg.AutomationCondition | None) -> str | None:
    """The condition's label (the gap-tolerant ones are labelled), or its type without one."""
    if condition is None:
        return None
    return condition.get_label() or type(condition).__name__


def _targets(selection: Any, graph: Any) -> list[str] | None:
    if not isinstance(selection, dg.AssetSelection):
        return None
    return sorted(_key(k) for k in selection.resolve(graph))


def describe_location(defs: dg.Definitions) -> dict[str, Any]:
    """A readable, sorted, stable description of a code location."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets[_key(key)] = {
            "group": node.group_name,
            "partitions": _partitions(node.partitions_def),
            "automation_condition": _condition(node.automation_condition),
            "parents": sorted(_key(p) for p in node.parent_keys),
        }
    checks = {}
    for assets_def in graph.assets_defs:
        for spec in assets_def.check_specs:
            checks[f"{_key(spec.asset_key)}:{spec.name}"] = {"blocking": spec.blocking}
    sensors = {
        sensor.name: {
            "type": type(sensor).__name__,
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "targets": _targets(getattr(sensor, "asset_selection", None), graph),
        }
        for sensor in defs.sensors or []
    }
    schedules = {
        schedule.name: {
            "cron_schedule": schedule.cron_schedule,
            "default_status": schedule.default_status.value,
        }
        for schedule in defs.schedules or []
    }
    jobs = {
        job.name: {
            "partitions": _partitions(job.partitions_def),
            # An asset job's selection; None for a job built from ops.
            "assets": _targets(getattr(job, "selection", None), graph),
        }
        for job in defs.jobs or []
    }
    resources = {name: type(value).__name__ for name, value in (defs.resources or {}).items()}
    return {
        "assets": assets,
        "asset_checks": dict(sorted(checks.items())),
        "sensors": dict(sorted(sensors.items())),
        "schedules": dict(sorted(schedules.items())),
        "jobs": dict(sorted(jobs.items())),
        "resources": dict(sorted(resources.items())),
        "executor": defs.executor.name if defs.executor else None,
    }


def _render(description: dict[str, Any]) -> str:
    return json.dumps(description, indent=2, sort_keys=False) + "\n"


def _describe_in_clean_process(settings: dict[str, str]) -> dict[str, Any]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("POLYMKT_")}
    env.update(settings)
    script = (
        "import json, sys\n"
        f"from {LOCATION_MODULE} import defs\n"
        "from polymkt_dagster_tests.defs.test_defs import describe_location\n"
        "json.dump(describe_location(defs), sys.stdout)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def test_the_code_location_matches_its_snapshot() -> None:
    rendered = _render(
        {
            name: {"environment": settings, **_describe_in_clean_process(settings)}
            for name, settings in SCENARIOS.items()
        }
    )
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.write_text(rendered)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with {UPDATE_ENV}=1 to create {SNAPSHOT}"
    assert rendered == SNAPSHOT.read_text(), (
        f"the code location differs from {SNAPSHOT.name}; if the change is intended, "
        f"regenerate it with {UPDATE_ENV}=1 and commit it"
    )


def _defs_modules() -> list[Any]:
    import polymkt_dagster.defs as package

    names = [m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    return [importlib.import_module(name) for name in sorted(names)]


def test_every_definition_under_defs_is_loaded_by_discovery() -> None:
    """One loading style: no module hides its objects behind a @dg.definitions function, and
    every asset, check and sensor a module defines is in the code location."""
    from polymkt_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    check_keys = graph.asset_check_keys
    sensors = {sensor.name for sensor in defs.sensors or []}
    modules = _defs_modules()
    assert len(modules) > 10, [m.__name__ for m in modules]
    seen_assets = 0
    for module in modules:
        for name, value in vars(module).items():
            where = f"{module.__name__}.{name}"
            # The lazy object @dg.definitions returns (Dagster does not export its type).
            if type(value).__name__ == "LazyDefinitions":
                assert module.__name__ == RESOURCES_MODULE, f"{where} is a @dg.definitions"
            elif isinstance(value, dg.AssetsDefinition):
                seen_assets += 1
                assert set(value.keys) <= keys, where
                assert set(value.check_keys) <= check_keys, where
            elif isinstance(value, dg.SensorDefinition):
                assert value.name in sensors, where
    assert seen_assets >= 15


def test_the_partition_range_tags_are_the_ones_dagster_reads() -> None:
    """defs/shared/tags.py spells Dagster's range tags itself (no private import): a run
    request carrying them is read back as that partition range."""
    from polymkt_dagster.defs.shared.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    request = dg.RunRequest(
        tags={
            ASSET_PARTITION_RANGE_START_TAG: "2024-03-01",
            ASSET_PARTITION_RANGE_END_TAG: "2024-03-04",
        }
    )
    assert request.partition_key_range == dg.PartitionKeyRange("2024-03-01", "2024-03-04")


def _defs_imports(path: Path) -> set[str]:
    """The polymkt_dagster.defs.* modules a file imports (at any depth of the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("polymkt_dagster.defs.")}


def test_domains_import_only_shared_pieces_and_upstream_domains() -> None:
    import polymkt_dagster.defs as package

    root = Path(next(iter(package.__path__)))
    domains = sorted(d.name for d in root.iterdir() if (d / "__init__.py").exists())
    assert sorted([*DOMAIN_ORDER, "shared"]) == domains, "a new domain needs its place here"
    for path in sorted(root.rglob("*.py")):
        owner = path.relative_to(root).parts[0]
        for imported in _defs_imports(path):
            target = imported.split(".")[2]
            where = f"{path.relative_to(root)} imports {imported}"
            if owner == "shared":
                assert target == "shared", where
            elif owner in DOMAIN_ORDER and target in DOMAIN_ORDER:
                assert DOMAIN_ORDER.index(target) <= DOMAIN_ORDER.index(owner), where


# Every run worker and code server imports the definitions before its first step, so what
# they import is paid by each run, however small: modules that only a few runs need
# (decoding chain logs, reading fills with pyarrow.dataset, which brings pandas) are
# imported where they are used.
ONLY_WHERE_USED = ("eth_abi", "pandas", "pyarrow.dataset")


def test_loading_the_definitions_leaves_out_what_few_runs_need() -> None:
    script = (
        "import sys\n"
        f"import {LOCATION_MODULE}\n"
        f"print(' '.join(m for m in {ONLY_WHERE_USED!r} if m in sys.modules))\n"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("POLYMKT_")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.split() == []
