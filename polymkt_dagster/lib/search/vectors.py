"""Market embeddings in the catalog (incremental by content hash) and the HNSW index file."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from polymkt_dagster.lib.core.duck import connect, sql_string

if TYPE_CHECKING:
    import numpy as np

    from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.search.common import (
    DOCUMENT_TEXT_SQL,
    HNSW_OPTIONS,
    VECTOR_REBUILD_FRACTION,
    WRITE_CHUNK_SIZE,
    Embedder,
    EmbeddingUsage,
    Log,
    _scalar,
    _stage_documents,
    _table_exists,
    _transaction,
    short_document_text_sql,
)

# ---- embeddings and the vector index -----------------------------------------------------


def vector_index_path(catalog_path: Path) -> Path:
    """The HNSW index file that sits next to the catalog."""
    return catalog_path.with_name(f"{catalog_path.stem}_search_vectors.duckdb")


@dataclass
class VectorIndexReport:
    mode: str  # "full", "incremental", "unchanged" or "empty"
    rows: int
    seconds: float


@dataclass
class EmbeddingReport:
    """What one embeddings update did."""

    model: str
    dim: int | None
    markets: int
    embedded: int
    deleted: int
    unchanged: int
    usage: EmbeddingUsage
    cost_usd: float | None
    embed_seconds: float
    write_seconds: float
    vector_index: VectorIndexReport
    embedded_sample: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _EmbeddingState:
    generation: int
    model: str
    dim: int
    rows: int


def _embedding_state(con: duckdb.DuckDBPyConnection) -> _EmbeddingState | None:
    """Generation, model and size of ``search.embeddings`` in the connection's catalog."""
    if not (
        _table_exists(con, "search", "embedding_state")
        and _table_exists(con, "search", "embeddings")
    ):
        return None
    row = con.execute(
        "SELECT generation, model, dim FROM search.embedding_state LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    rows = int(_scalar(con, "SELECT count(*) FROM search.embeddings"))
    return _EmbeddingState(int(row[0]), str(row[1]), int(row[2]), rows)


def _bump_generation(con: duckdb.DuckDBPyConnection, model: str, dim: int) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS search.embedding_state "
        "(generation BIGINT, model VARCHAR, dim INTEGER, updated_at TIMESTAMPTZ)"
    )
    if _scalar(con, "SELECT count(*) FROM search.embedding_state"):
        con.execute(
            "UPDATE search.embedding_state SET generation = generation + 1, model = ?, dim = ?, "
            "updated_at = now()",
            [model, dim],
        )
    else:
        con.execute("INSERT INTO search.embedding_state VALUES (1, ?, ?, now())", [model, dim])


def _embeddings_dim(con: duckdb.DuckDBPyConnection) -> int | None:
    if not _table_exists(con, "search", "embeddings"):
        return None
    dtype = _scalar(
        con,
        "SELECT data_type FROM duckdb_columns() WHERE schema_name = 'search' "
        "AND table_name = 'embeddings' AND column_name = 'vector'",
    )
    match = re.search(r"\[(\d+)\]$", str(dtype or ""))
    return int(match.group(1)) if match else None


def _write_embeddings(
    con: duckdb.DuckDBPyConnection,
    ids: Sequence[str],
    hashes: Sequence[str],
    vectors: np.ndarray,
    model: str,
) -> None:
    import numpy as np
    import pyarrow as pa

    dim = int(vectors.shape[1])
    chunk = pa.table(
        {
            "market_id": pa.array(list(ids), pa.string()),
            "content_hash": pa.array(list(hashes), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.astype(np.float32).ravel(), pa.float32()), dim
            ),
        }
    )
    con.register("embedding_chunk", chunk)
    try:
        with _transaction(con):
            if _embeddings_dim(con) != dim:
                # A new model or dimension: the old vectors are all stale (they are
                # re-embedded in this same run, their model differs) and the type changes.
                con.execute(
                    f"CREATE OR REPLACE TABLE search.embeddings (market_id VARCHAR, "
                    f"content_hash VARCHAR, model VARCHAR, vector FLOAT[{dim}], "
                    f"embedded_at TIMESTAMPTZ)"
                )
            con.execute(
                "DELETE FROM search.embeddings "
                "WHERE market_id IN (SELECT market_id FROM embedding_chunk)"
            )
            con.execute(
                f"INSERT INTO search.embeddings SELECT market_id, content_hash, ?, "
                f"vector::FLOAT[{dim}], now() FROM embedding_chunk",
                [model],
            )
            _bump_generation(con, model, dim)
    finally:
        con.unregister("embedding_chunk")


def update_market_embeddings(
    catalog_path: Path,
    lake: Lake,
    embedder: Embedder,
    *,
    reembed_all: bool = False,
    rebuild_vector_index: bool = False,
    write_chunk_size: int = WRITE_CHUNK_SIZE,
    lock_timeout_s: float = 60.0,
    log: Log | None = None,
) -> EmbeddingReport:
    """Embed new and changed markets, drop deleted ones, then sync the HNSW index.

    A market is re-embedded when its content hash or the model changed; nothing else
    reaches the provider, so a run over unchanged markets sends no request. The catalog
    is written in short transactions between batches of requests (readers are not locked
    out while the network works, and an interrupted run keeps what it paid for).
    """
    say = log or (lambda _msg: None)
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    model = embedder.model
    # Providers embed the whole document; the local model a short form (its own setting).
    chars = getattr(embedder, "description_chars", None)
    text_sql = DOCUMENT_TEXT_SQL if chars is None else short_document_text_sql(chars)
    with connect(catalog_path, lock_timeout_s=lock_timeout_s) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS search")
        markets = _stage_documents(con, lake)
        state = _embedding_state(con)
        base_generation = state.generation if state else 0
        has_table = _table_exists(con, "search", "embeddings")
        if has_table and not reembed_all:
            pending = con.execute(
                f"""
                SELECT i.market_id, {text_sql} AS text, i.content_hash, i.question
                FROM incoming_documents i
                LEFT JOIN search.embeddings e
                  ON e.market_id = i.market_id AND e.content_hash = i.content_hash
                 AND e.model = ?
                WHERE e.market_id IS NULL
                ORDER BY i.market_id
                """,
                [model],
            ).fetchall()
            deleted = [
                str(r[0])
                for r in con.execute(
                    "SELECT market_id FROM search.embeddings "
                    "WHERE market_id NOT IN (SELECT market_id FROM incoming_documents)"
                ).fetchall()
            ]
        else:
            pending = con.execute(
                f"SELECT market_id, {text_sql}, content_hash, question "
                f"FROM incoming_documents ORDER BY market_id"
            ).fetchall()
            deleted = []
        if deleted and state is not None:
            with _transaction(con):
                con.execute(
                    "DELETE FROM search.embeddings "
                    "WHERE market_id IN (SELECT unnest(?::VARCHAR[]))",
                    [deleted],
                )
                _bump_generation(con, state.model, state.dim)

    say(f"embeddings: {len(pending):,} to embed with {model}, {len(deleted):,} deleted")
    embed_seconds = write_seconds = 0.0
    dim = state.dim if state else None
    for start in range(0, len(pending), write_chunk_size):
        chunk = pending[start : start + write_chunk_size]
        tick = time.perf_counter()
        vectors = embedder.embed([str(r[1]) for r in chunk])
        embed_seconds += time.perf_counter() - tick
        tick = time.perf_counter()
        with connect(catalog_path, lock_timeout_s=lock_timeout_s) as con:
            _write_embeddings(con, [r[0] for r in chunk], [r[2] for r in chunk], vectors, model)
        write_seconds += time.perf_counter() - tick
        dim = int(vectors.shape[1])
        say(f"embeddings: {min(start + write_chunk_size, len(pending)):,}/{len(pending):,} written")

    touched = {str(r[0]) for r in pending} | set(deleted)
    index = sync_vector_index(
        catalog_path,
        touched_ids=touched,
        base_generation=base_generation,
        force_rebuild=rebuild_vector_index or reembed_all,
        lock_timeout_s=lock_timeout_s,
        log=say,
    )
    return EmbeddingReport(
        model=model,
        dim=dim,
        markets=markets,
        embedded=len(pending),
        deleted=len(deleted),
        unchanged=markets - len(pending),
        usage=embedder.usage,
        cost_usd=embedder.usage.cost_usd(model),
        embed_seconds=embed_seconds,
        write_seconds=write_seconds,
        vector_index=index,
        embedded_sample=[(str(r[0]), str(r[3])) for r in pending[:5]],
    )


def _attach(
    con: duckdb.DuckDBPyConnection, path: Path, alias: str, *, lock_timeout_s: float
) -> None:
    """ATTACH another database read-only, waiting while a writer holds its lock."""
    deadline = time.monotonic() + lock_timeout_s
    while True:
        try:
            con.execute(f"ATTACH {sql_string(path)} AS {alias} (READ_ONLY)")
            return
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _remove_database(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".wal")):
        with suppress(FileNotFoundError):
            candidate.unlink()


def sync_vector_index(
    catalog_path: Path,
    *,
    touched_ids: set[str] | None = None,
    base_generation: int | None = None,
    force_rebuild: bool = False,
    lock_timeout_s: float = 60.0,
    log: Log | None = None,
) -> VectorIndexReport:
    """Make the HNSW index file match ``search.embeddings`` in the catalog.

    With the file at ``base_generation`` and ``touched_ids`` known, only those markets are
    deleted and re-inserted (HNSW supports both); otherwise, or once many rows changed
    since the graph was built, the index is rebuilt from the catalog's vectors.
    """
    say = log or (lambda _msg: None)
    started = time.perf_counter()
    path = vector_index_path(catalog_path)
    try:
        return _sync_vector_index(
            catalog_path,
            path,
            touched_ids,
            base_generation,
            force_rebuild,
            lock_timeout_s,
            say,
            started,
        )
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
            raise
        # The file is a cache: an unreadable one (e.g. a crash during an experimental
        # HNSW write) is discarded and rebuilt from the catalog.
        say(f"vector index unreadable ({type(exc).__name__}); rebuilding it")
        _remove_database(path)
        return _sync_vector_index(
            catalog_path, path, None, None, True, lock_timeout_s, say, started
        )


def _sync_vector_index(
    catalog_path: Path,
    path: Path,
    touched_ids: set[str] | None,
    base_generation: int | None,
    force_rebuild: bool,
    lock_timeout_s: float,
    say: Log,
    started: float,
) -> VectorIndexReport:
    with connect(
        path, extensions=("vss",), lock_timeout_s=lock_timeout_s, memory_limit="4GB"
    ) as con:
        con.execute("SET hnsw_enable_experimental_persistence = true")
        _attach(con, catalog_path, "catalog", lock_timeout_s=lock_timeout_s)
        source = _catalog_embedding_state(con)
        local = _local_index_state(con)
        if source is None or source.rows == 0:
            con.execute("DROP TABLE IF EXISTS vectors")
            con.execute("DROP TABLE IF EXISTS index_state")
            mode, rows = "empty", 0
        elif (
            not force_rebuild
            and local is not None
            and (local.generation, local.model, local.dim)
            == (source.generation, source.model, source.dim)
        ):
            mode, rows = "unchanged", local.rows
        elif (
            not force_rebuild
            and local is not None
            and touched_ids is not None
            and base_generation is not None
            and local.generation == base_generation
            and (local.model, local.dim) == (source.model, source.dim)
            and local.changed_since_build + len(touched_ids)
            <= VECTOR_REBUILD_FRACTION * max(local.rows, 1)
        ):
            mode = "incremental"
            ids = sorted(touched_ids)
            with _transaction(con):
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE touched AS "
                    "SELECT unnest(?::VARCHAR[]) AS market_id",
                    [ids],
                )
                con.execute(
                    "DELETE FROM vectors WHERE market_id IN (SELECT market_id FROM touched)"
                )
                con.execute(
                    "INSERT INTO vectors SELECT market_id, vector FROM catalog.search.embeddings "
                    "WHERE market_id IN (SELECT market_id FROM touched)"
                )
                rows = int(_scalar(con, "SELECT count(*) FROM vectors"))
                con.execute(
                    "UPDATE index_state SET generation = ?, rows = ?, "
                    "changed_since_build = changed_since_build + ?, updated_at = now()",
                    [source.generation, rows, len(ids)],
                )
        else:
            mode = "full"
            say(f"vector index: building HNSW over {source.rows:,} vectors")
            with _transaction(con):
                con.execute("DROP TABLE IF EXISTS vectors")
                con.execute(
                    f"CREATE TABLE vectors AS SELECT market_id, "
                    f"vector::FLOAT[{source.dim}] AS vector "
                    f"FROM catalog.search.embeddings ORDER BY market_id"
                )
                con.execute(
                    f"CREATE INDEX vectors_hnsw ON vectors USING HNSW (vector) "
                    f"WITH ({HNSW_OPTIONS})"
                )
                con.execute("DROP TABLE IF EXISTS index_state")
                con.execute(
                    "CREATE TABLE index_state (generation BIGINT, model VARCHAR, dim INTEGER, "
                    "rows BIGINT, changed_since_build BIGINT, updated_at TIMESTAMPTZ)"
                )
                rows = int(_scalar(con, "SELECT count(*) FROM vectors"))
                con.execute(
                    "INSERT INTO index_state VALUES (?, ?, ?, ?, 0, now())",
                    [source.generation, source.model, source.dim, rows],
                )
        con.execute("DETACH catalog")
        # Persisted HNSW changes are only safe once checkpointed (no WAL replay for them).
        con.execute("CHECKPOINT")
    return VectorIndexReport(mode=mode, rows=rows, seconds=time.perf_counter() - started)


def _catalog_embedding_state(con: duckdb.DuckDBPyConnection) -> _EmbeddingState | None:
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'catalog' "
            "AND schema_name = 'search'"
        ).fetchall()
    }
    if not {"embeddings", "embedding_state"} <= tables:
        return None
    row = con.execute(
        "SELECT generation, model, dim FROM catalog.search.embedding_state"
    ).fetchone()
    if row is None:
        return None
    rows = int(_scalar(con, "SELECT count(*) FROM catalog.search.embeddings"))
    return _EmbeddingState(int(row[0]), str(row[1]), int(row[2]), rows)


@dataclass(frozen=True)
class _LocalIndexState:
    generation: int
    model: str
    dim: int
    rows: int
    changed_since_build: int


def _local_index_state(
    con: duckdb.DuckDBPyConnection, database: str | None = None
) -> _LocalIndexState | None:
    prefix = f"{database}." if database else ""
    present = _scalar(
        con,
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = coalesce(?, current_database()) AND schema_name = 'main' "
        "AND table_name IN ('vectors', 'index_state')",
        [database],
    )
    if present != 2:
        return None
    row = con.execute(
        f"SELECT generation, model, dim, rows, changed_since_build FROM {prefix}index_state"
    ).fetchone()
    if row is None:
        return None
    return _LocalIndexState(int(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]))
