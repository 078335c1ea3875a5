"""The import rules of docs/architecture.md §7 hold: `lint-imports` keeps every contract."""

from __future__ import annotations

import ast
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
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def _imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from X import name` in a file, and (X, "") of `import X`."""
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


def test_benchmarks_use_no_test_module_and_no_private_name_of_the_package() -> None:
    # A benchmark measures the product as a user runs it; the local servers it needs live in
    # polymkt_local/, not in the test suite.
    def forbidden(module: str, name: str) -> bool:
        if module.startswith("polymkt_dagster_tests"):
            return True
        private = name.startswith("_") or any(p.startswith("_") for p in module.split("."))
        return module.startswith("polymkt_dagster") and private

    offending = [
        f"{script.name}: {module} {name}".strip()
        for script in sorted((REPO_ROOT / "bench").glob("*.py"))
        for module, name in _imported_names(script)
        if forbidden(module, name)
    ]
    assert not offending, offending
