"""A real PostgreSQL server for tests (Debian's `postgresql` package), on a loopback port.

initdb into a temporary directory, `postgres` in its own process group, trust auth on
127.0.0.1 only. As root (CI containers) the server runs as the `postgres` system user, since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from polymkt_local.ports import free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise RuntimeError(
            f"PostgreSQL's {name} not found: install Debian's postgresql package "
            "(apt-get install -y postgresql)"
        )
    return found


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield ``postgresql://dagster@127.0.0.1:<port>/dagster`` of a fresh server."""
    # Not under pytest's tmp_path: its 0700 parents would keep the `postgres` user out.
    root = Path(tempfile.mkdtemp(prefix="polymkt_pg_"))
    data, sockets = root / "pgdata", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_server_user([_binary("initdb"), "-D", str(data), "-U", "dagster", "--auth=trust",
                         "--encoding=UTF8", "--no-sync"]),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    port = free_port()
    log = (root / "postgres.log").open("w")
    server = subprocess.Popen(
        _as_server_user([_binary("postgres"), "-D", str(data), "-p", str(port),
                         "-k", str(sockets), "-c", "listen_addresses=127.0.0.1",
                         "-c", "fsync=off"]),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run(
                [_binary("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster"],
                capture_output=True,
            )
            if ready.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {(root / 'postgres.log').read_text()}")
            time.sleep(0.2)
        subprocess.run(
            [_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield f"postgresql://dagster@127.0.0.1:{port}/dagster"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # fast shutdown
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
