"""The PostgreSQL server the tests use, and a fresh database per test.

CI (``.ci/run``) starts a throwaway server with ``.ci/postgres start`` and exports its
``PG*`` variables; a developer does the same (see the README). Without ``PGHOST`` the
tests start that same throwaway server themselves (PostgreSQL's binaries are on the
machine, or Debian's package is installed), so ``pytest`` alone runs both targets: a
PostgreSQL test never skips.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


def server_env() -> dict[str, str]:
    """The server's PG* variables: the environment's, else a throwaway server's."""
    if os.environ.get("PGHOST"):
        return {k: os.environ[k] for k in PG_VARIABLES if k in os.environ}
    out = subprocess.run(
        [str(REPO_ROOT / ".ci" / "postgres"), "start"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        for word in shlex.split(line.removeprefix("export ")):
            key, _, value = word.partition("=")
            env[key] = value
    return env


@contextmanager
def fresh_database(server: dict[str, str], prefix: str = "insiders_test") -> Iterator[str]:
    """A new empty database on the server (dropped afterwards, with its connections)."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = {**server, "PGDATABASE": server.get("PGDATABASE", "postgres")}
    with psycopg.connect(_conninfo(admin), autocommit=True) as con:
        con.execute(f'create database "{name}"')  # name: our own hex, not outside input
    try:
        yield name
    finally:
        _drop(admin, name)


def _drop(admin: dict[str, str], name: str, seconds: float = 60.0) -> None:
    """Drop the database, waiting out an autovacuum worker: it may still be in the
    database after a large load, and ``with (force)`` may not end a superuser's process
    (``must be a member of the role whose process is being terminated``)."""
    import time

    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            with psycopg.connect(_conninfo(admin), autocommit=True) as con:
                con.execute(f'drop database if exists "{name}" with (force)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _conninfo(env: dict[str, str]) -> str:
    from psycopg.conninfo import make_conninfo

    keys = {"PGHOST": "host", "PGPORT": "port", "PGUSER": "user", "PGPASSWORD": "password"}
    return make_conninfo(
        "", dbname=env.get("PGDATABASE", "postgres"), **{keys[k]: env[k] for k in keys if k in env}
    )
