"""What every domain uses: settings, the lake, schemas, DuckDB, HTTP, secrets, UI helpers."""
