"""Dagster pieces every domain under defs/ uses: partitions, automation conditions, check
results, per-day partition metadata, resources, run tags, and the settings the definitions
are built from. A domain package (ingest, analytics, wallets, research, search, serving)
imports from here and from upstream domains' asset keys, never sideways or downstream.
"""
