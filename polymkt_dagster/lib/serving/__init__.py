"""Serving: DuckDB catalog, S3 mirror, ClickHouse, read queries and the guarded SQL."""
