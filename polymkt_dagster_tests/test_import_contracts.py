"""The import rules of docs/architecture.md §7 hold: `lint-imports` keeps every contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_every_import_contract_is_kept() -> None:
    # The contracts live in pyproject.toml ([tool.importlinter]); the console script is run
    # beside this interpreter so the venv's installed copy of import-linter is the one used.
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--config", str(REPO_ROOT / "pyproject.toml")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
