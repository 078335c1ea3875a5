"""Plain-Python domain code of PolyMkt, grouped by domain like defs/; no Dagster here.

Layers (import-linter, pyproject.toml): core <- ingest <- analytics <- research, wallets,
search, serving; sample stands alone. See docs/architecture.md §7.
"""
