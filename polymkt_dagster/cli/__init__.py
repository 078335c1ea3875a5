"""The `polymkt` command line: the entry (main.py), shared helpers (common.py, session.py),
one module per command family, and the one module that builds in-process Dagster runs
(runs.py, with run_hygiene.py). See README: "The `polymkt` CLI" and "Layout"."""
