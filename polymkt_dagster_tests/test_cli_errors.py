"""Every failure a user can cause: one clear line, a non-zero exit, no traceback (issue 15).

Run as a user runs them: subprocesses of `python -m polymkt_dagster.cli`.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table

from polymkt_dagster.cli.main import hoist_data_dir
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.terminal import SafeConsole, escape, printable

REPO_ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "Will [/] [bold]win[/bold]? \x1b[2J\x1b]0;pwned\x07 \x9b31m"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMKT_")}
    env.update(extra)
    return env


def _cli(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polymkt_dagster.cli", *args],
        env=_env(**env), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
    )  # fmt: skip


def _one_clear_line(completed: subprocess.CompletedProcess[str], *words: str) -> None:
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), completed.stderr
    text = " ".join(completed.stderr.split())
    for word in words:
        assert word in text, completed.stderr


def test_data_dir_before_or_after_the_subcommand(sample_lake: Lake) -> None:
    data_dir = str(sample_lake.root.parent)
    before = _cli("--data-dir", data_dir, "status", "--json")
    after = _cli("status", "--json", "--data-dir", data_dir)
    joined = _cli("status", f"--data-dir={data_dir}", "--json")
    for completed in (before, after, joined):
        assert completed.returncode == 0, completed.stderr
        assert json.loads(completed.stdout)["tables"]["trades"]["files"] > 0
    assert hoist_data_dir(["sql", "--", "--data-dir", "x"]) == ["sql", "--", "--data-dir", "x"]


@pytest.mark.parametrize(
    "args",
    [
        ["--data-dir", "/nonexistent/polymkt", "status"],
        ["status", "--json", "--data-dir", "/nonexistent/polymkt"],
        ["--data-dir", "/nonexistent/polymkt", "trades", "--market", "1"],
        ["--data-dir", "/nonexistent/polymkt", "sync", "status"],
    ],
)
def test_a_missing_data_dir_fails_read_commands(args: list[str]) -> None:
    completed = _cli(*args)
    _one_clear_line(completed, "/nonexistent/polymkt", "does not exist")
    assert completed.stdout == ""
    assert not Path("/nonexistent/polymkt").exists()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--scale", "nan"), ("--scale", "inf"), ("--scale", "-1"), ("--scale", "0"),
        ("--scale", "1e12"), ("--scale", "lots"), ("--seed", "-3"),
    ],
)  # fmt: skip
def test_sample_rejects_bad_numbers_in_one_line(tmp_path: Path, option: str, value: str) -> None:
    completed = _cli("sample", "--out", str(tmp_path / "s"), option, value)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert option in completed.stderr
    assert not (tmp_path / "s" / "orderFilled.csv").exists()


def test_markup_and_escapes_in_user_text_are_shown_not_obeyed(sample_lake: Lake) -> None:
    completed = _cli(
        "--data-dir", str(sample_lake.root.parent), "datasets", "create", "hostile",
        "--dry-run", "--query", HOSTILE, "--description", HOSTILE,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "MarkupError" not in completed.stderr and "Traceback" not in completed.stderr
    output = completed.stdout + completed.stderr
    assert "\x1b" not in output and "\x07" not in output and "\x9b" not in output
    assert "[/]" in output and "\\x1b" in output  # shown literally, escapes made visible


def test_safe_console_renders_any_string() -> None:
    buffer = io.StringIO()
    console = SafeConsole(file=buffer, force_terminal=True, width=200)
    table = Table()
    table.add_column("question")
    table.add_row(HOSTILE)
    console.print(table)
    console.print(f"[bold]error:[/] {escape(HOSTILE)}")
    console.print(HOSTILE)  # not even escaped: printed literally instead of raising
    text = buffer.getvalue()
    assert "]0;pwned" not in text.replace("\\x1b]0;pwned", "")
    assert "\x07" not in text and "\x9b" not in text
    assert printable("a\x1bb\tc\n") == "a\\x1bb\tc\n"


def test_unexpected_errors_are_one_line_with_a_hint(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "parquet" / "raw" / "polymarket").mkdir(parents=True)
    # a corrupt markets file: whatever reads it fails, the user gets a line, not a trace
    (data_dir / "parquet" / "raw" / "polymarket" / "markets.parquet").write_bytes(b"junk")
    completed = _cli("--data-dir", str(data_dir), "datasets", "create", "x", "--dry-run")
    _one_clear_line(completed)
    assert len([line for line in completed.stderr.splitlines() if line.strip()]) <= 4
    debug = _cli("--data-dir", str(data_dir), "datasets", "create", "x", "--dry-run",
                 POLYMKT_DEBUG="1")  # fmt: skip
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_bad_memory_limit_setting_is_named() -> None:
    completed = _cli("status", POLYMKT_DUCKDB_MEMORY_LIMIT="lots")
    _one_clear_line(completed, "POLYMKT_DUCKDB_MEMORY_LIMIT")
