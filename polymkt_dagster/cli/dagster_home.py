"""The Dagster instance the CLI records into: DAGSTER_HOME, or ./.dagster_home.

Apart from cli/runs.py because the research verbs only register partitions in an instance
that already exists, and must not load the code location (or Dagster at all, when there is
no instance) to do so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def prepare_dagster_home(home: Path | None = None) -> Path:
    """Resolve DAGSTER_HOME (default ./.dagster_home) and give it the project's dagster.yaml."""
    resolved = Path(home or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    resolved.mkdir(parents=True, exist_ok=True)
    config = resolved / "dagster.yaml"
    template = PROJECT_ROOT / "dagster.yaml"
    if not config.exists() and template.exists():
        shutil.copyfile(template, config)
    os.environ["DAGSTER_HOME"] = str(resolved)
    return resolved


def existing_instance() -> dg.DagsterInstance | None:
    """The instance at DAGSTER_HOME, or at ./.dagster_home once `polymkt pipeline` made it."""
    home = os.environ.get("DAGSTER_HOME")
    if not home and Path(".dagster_home").is_dir():
        home = ".dagster_home"
    if not home:
        return None
    import dagster as dg

    prepare_dagster_home(Path(home))
    return dg.DagsterInstance.get()


def instance_for_runs() -> dg.DagsterInstance:
    """The existing instance, else a new one at ./.dagster_home."""
    import dagster as dg

    instance = existing_instance()
    if instance is None:
        prepare_dagster_home(None)
        instance = dg.DagsterInstance.get()
    return instance
