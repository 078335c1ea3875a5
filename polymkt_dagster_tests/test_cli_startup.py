"""The `polymkt` command line starts light and speaks one convention.

A verb loads only the modules it uses: `polymkt --help` and `polymkt search` never import
Dagster, the OpenAI client, pandas or pyarrow (checked in a fresh interpreter, as a user
starts it). The shared helpers print NaN as null.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from polymkt_dagster.cli.common import json_text
from polymkt_dagster.cli.main import COMMANDS, main

REPO_ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("dagster", "openai", "pandas", "pyarrow")

# Runs the CLI as `python -m polymkt_dagster.cli ARGS` does, then prints the names of the
# modules it loaded as the last line of stdout.
_RUN_AND_LIST_MODULES = """
import json, sys
from polymkt_dagster.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    code = done.code
print()
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_modules(*args: str, env: dict[str, str] | None = None) -> tuple[int, set[str], str]:
    """(exit code, top-level packages loaded, stdout before the list) of a CLI run."""
    completed = subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST_MODULES, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output, _, listing = completed.stdout.rstrip("\n").rpartition("\n")
    report = json.loads(listing)
    return report["code"], {name.split(".")[0] for name in report["modules"]}, output


def test_help_loads_no_heavy_library() -> None:
    code, packages, output = loaded_modules("--help")
    assert code == 0 and "search" in output and "backtest" in output
    assert packages.isdisjoint(HEAVY), sorted(packages & set(HEAVY))


def test_importing_the_search_command_loads_no_heavy_library() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", "import sys, polymkt_dagster.cli.search, polymkt_dagster.cli.main;"
         "print(sorted({m.split('.')[0] for m in sys.modules}))"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=True,
    )  # fmt: skip
    packages = set(json.loads(completed.stdout.replace("'", '"')))
    assert "click" in packages and packages.isdisjoint(HEAVY), sorted(packages & set(HEAVY))


def test_a_search_loads_neither_dagster_nor_openai(tmp_path: Path, sample_dir: Path) -> None:
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.ingest.bootstrap import import_markets
    from polymkt_dagster.lib.search import update_bm25_index

    for name in ("markets.csv", "markets.json"):
        shutil.copyfile(sample_dir / name, tmp_path / name)
    lake = Lake(tmp_path / "parquet")
    import_markets(tmp_path, lake)
    update_bm25_index(tmp_path / "polymkt.duckdb", lake)

    args = ("--data-dir", str(tmp_path), "search", "bitcoin", "--mode", "bm25", "--json")
    code, packages, output = loaded_modules(*args, env={"POLYMKT_OPENAI_API_KEY": ""})
    assert code == 0, output
    document = json.loads(output)
    assert document["count"] > 0
    assert any("itcoin" in r["question"] for r in document["results"])
    assert packages.isdisjoint(HEAVY), sorted(packages & set(HEAVY))
    # BM25 needs no embedder: neither the model's numpy nor its tokenizer is loaded.
    assert "numpy" not in packages and "tokenizers" not in packages


def test_every_registered_command_loads_under_its_name() -> None:
    context = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(context, name)
        assert isinstance(command, click.Command) and command.name == name
    assert main.get_command(context, "no-such-verb") is None


def test_json_output_has_no_nan() -> None:
    document = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": Path("/x")}}
    assert json.loads(json_text(document)) == {"a": None, "b": [None, None, 1.5], "c": {"d": "/x"}}
