"""Child process that runs one guarded DuckDB query; the parent kills it at the deadline.

Run as a script (``python sql_worker.py``), not imported as part of the package, so it starts
in a fraction of a second and imports nothing but duckdb. It reads one pickled request on
stdin: the setup statements (views over the rollup files, then the lock-down settings) and
the query. It writes one byte (``READY``) on stdout once the setup is done, so the parent's
clock covers the query alone, then one pickled ``("ok", columns, rows)`` or
``("error", message)``. A single long function call that ignores DuckDB's interrupt still
ends at the deadline: the parent kills this process.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

READY = b"R"


def run(request: dict[str, Any]) -> tuple[Any, ...]:
    import duckdb

    con = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    try:
        for statement in request["setup"]:
            con.execute(statement)
        sys.stdout.buffer.write(READY)
        sys.stdout.buffer.flush()
        try:
            cursor = con.execute(request["sql"])
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(request["max_rows"])
        except duckdb.Error as exc:
            return ("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return ("ok", columns, rows)
    finally:
        con.close()


def main() -> int:
    request = pickle.loads(sys.stdin.buffer.read())
    cap = request.get("address_space_bytes")
    if cap:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        answer = run(request)
    except Exception as exc:  # setup failures travel back as one line, never a traceback
        answer = ("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    try:
        payload = pickle.dumps(answer)
    except Exception as exc:
        payload = pickle.dumps(("error", f"cannot return the rows: {exc}"))
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
