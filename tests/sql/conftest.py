"""Private PostgreSQL and MariaDB servers for the SQL suite (recipes: /work/shared/real-servers.md).

One server of each per session, bound to 127.0.0.1 on a free port, with a temporary data
directory; stopped at the end. Skipped, with the reason, only where the server's package or the
``sql`` extra is missing on a developer's machine; in CI (``CI`` set) a missing server fails:
``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bin() -> Path:
    """Debian's PostgreSQL binaries (/usr/lib/postgresql/<major>/bin), the newest major installed."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    found.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else -1)
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing(what: str) -> None:
    """Skip on a developer's machine, fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must have it: .ci/run installs it)")
    pytest.skip(what)


def _driver(module: str) -> None:
    try:
        __import__(module)
        __import__("sqlalchemy")
    except ImportError:
        _missing(f"the SQL servers' suite needs the 'sql' extra (sqlalchemy, {module}): pip install -e '.[sql]'")


def _wait(ready, proc: subprocess.Popen, log: Path, what: str) -> None:
    """Poll ``ready()`` until it is true; the server process's exit ends the wait at once."""
    deadline = time.monotonic() + 60
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log.read_text(errors='replace')[-2000:]}")
        try:
            proc.wait(timeout=0.2)  # not a sleep: returns at once if the server dies
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """``postgresql+psycopg://`` URL of a private PostgreSQL 15 started for this session."""
    _driver("psycopg")
    if not (PG_BIN / "postgres").exists():
        _missing("PostgreSQL 15 is not installed (apt-get install postgresql; .ci/run does)")
    d = Path(tempfile.mkdtemp(prefix="simroll-pg-"))
    shutil.chown(d, "postgres")
    port = _free_port()

    def as_postgres(cmd: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", cmd], capture_output=True, text=True, **kw)

    init = as_postgres(f"{PG_BIN}/initdb -D {d}/data -A trust -U simroll")
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
    log = d / "log"
    proc = subprocess.Popen(
        [
            "su",
            "postgres",
            "-s",
            "/bin/sh",
            "-c",
            f"exec {PG_BIN}/postgres -D {d}/data -h 127.0.0.1 -p {port} -k {d} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        ],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:

        def ready() -> bool:
            return as_postgres(f"{PG_BIN}/pg_isready -q -h 127.0.0.1 -p {port}").returncode == 0

        _wait(ready, proc, log, "postgres")
        yield f"postgresql+psycopg://simroll@127.0.0.1:{port}/postgres"
    finally:
        as_postgres(f"{PG_BIN}/pg_ctl -D {d}/data -m fast -w stop")
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """``mysql+pymysql://`` URL of a private MariaDB started for this session."""
    _driver("pymysql")
    if shutil.which("mariadbd") is None or shutil.which("mariadb-install-db") is None:
        _missing("MariaDB is not installed (apt-get install mariadb-server; .ci/run does)")
    d = Path(tempfile.mkdtemp(prefix="simroll-maria-"))
    port = _free_port()
    init = subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={d}/data",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        capture_output=True,
        text=True,
    )
    if init.returncode:
        raise RuntimeError(f"mariadb-install-db failed: {init.stderr[-2000:]}")
    log = d / "err.log"
    proc = subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={d}/data",
            "--user=root",
            "--bind-address=127.0.0.1",
            f"--port={port}",
            f"--socket={d}/sock",
            "--skip-grant-tables",
            f"--log-error={log}",
            "--innodb-flush-log-at-trx-commit=0",  # a throwaway server: no flush per autocommit
            "--skip-log-bin",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:

        def ready() -> bool:
            return (
                subprocess.run(
                    ["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "-e", "select 1"],
                    capture_output=True,
                ).returncode
                == 0
            )

        log.touch()
        _wait(ready, proc, log, "mariadbd")
        yield f"mysql+pymysql://root@127.0.0.1:{port}/mysql"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)
