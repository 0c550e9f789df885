"""The PostgreSQL target: the connection, and the one-line errors a user gets from it.

The connection comes from libpq's standard variables only (``PGHOST``, ``PGPORT``,
``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``, ``PGSSLMODE``, and any other ``PG*`` libpq
reads), the same ones dbt's ``postgres`` output reads (``profiles/profiles.yml``): no
connection string is assembled here, so the password never passes through our code,
our messages, logs or Dagster metadata. :meth:`PgWarehouse.describe` names the
database as ``user@host:port/database``, never with the password.

Errors at connection time (server unreachable, wrong password, missing database) and
privilege errors become :class:`WarehouseError`: one line naming the database and the
problem, libpq's own words, without its hints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.warehouse import WarehouseError

if TYPE_CHECKING:
    import psycopg

APPLICATION_NAME = "insiders"
CONNECT_TIMEOUT_SECONDS = 10
# Where the local files of a PostgreSQL warehouse go (models, reports, the BI snapshot,
# dbt's target folder, the run lock): <folder of --warehouse>/postgres/<database>/.
LOCAL_FOLDER = "postgres"


@dataclass(frozen=True)
class PgWarehouse:
    """A PostgreSQL database as a warehouse: the ``PG*`` variables name the server and
    database; ``local`` is the folder of its local files (see :data:`LOCAL_FOLDER`)."""

    local: Path

    @property
    def database(self) -> str:
        return database_name()

    @property
    def parent(self) -> Path:
        """The folder that holds models/, reports/, bi/ and .dbt/, as a DuckDB
        warehouse file's folder does."""
        return self.local

    def describe(self) -> str:
        return describe()

    def connect(self, autocommit: bool = False, application: str = "") -> psycopg.Connection:
        return connect(autocommit=autocommit, application=application)


def database_name() -> str:
    """The database libpq connects to: ``PGDATABASE``, else the user name."""
    return os.environ.get("PGDATABASE") or os.environ.get("PGUSER") or _os_user()


def _os_user() -> str:
    import getpass

    return getpass.getuser()


def describe() -> str:
    """``user@host:port/database`` from the environment, without the password."""
    host = os.environ.get("PGHOST") or "localhost"
    port = os.environ.get("PGPORT") or "5432"
    user = os.environ.get("PGUSER") or _os_user()
    return f"postgresql://{user}@{host}:{port}/{database_name()}"


def local_folder(warehouse: Path) -> Path:
    """The local files' folder of the PostgreSQL database the environment names, under
    the folder of the (DuckDB) warehouse path ``warehouse``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", database_name())
    return warehouse.parent / LOCAL_FOLDER / name


def connect(autocommit: bool = False, application: str = "") -> psycopg.Connection:
    """A psycopg connection to the database the ``PG*`` variables name; numeric values
    come back as floats (as DuckDB's doubles do in pandas) and every failure to connect
    is one :class:`WarehouseError` line."""
    import psycopg
    from psycopg.types.numeric import FloatLoader

    try:
        con = psycopg.connect(
            "",
            autocommit=autocommit,
            connect_timeout=int(os.environ.get("PGCONNECT_TIMEOUT") or CONNECT_TIMEOUT_SECONDS),
            application_name=f"{APPLICATION_NAME} {application}".strip(),
        )
    except psycopg.Error as exc:
        raise WarehouseError(one_line(exc)) from None
    con.adapters.register_loader("numeric", FloatLoader)
    return con


@contextmanager
def errors_in_one_line() -> Iterator[None]:
    """Turn a psycopg error raised inside into a one-line :class:`WarehouseError`."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        raise WarehouseError(one_line(exc)) from None


_PREFIXES = ("connection failed: ", "connection to server at ")


def one_line(exc: BaseException) -> str:
    """The database and the problem, in libpq's or the server's words, in one line."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq: 'connection failed: connection to server at "h" (h), port p failed: FATAL:
    # password authentication failed for user "u"' + hint lines ("Is the server
    # running ...?"): keep the reason after the last "failed: ".
    first = lines[0] if lines else type(exc).__name__
    if first.startswith(_PREFIXES) and "failed: " in first:
        first = first.rsplit("failed: ", 1)[1]
    first = first.removeprefix("FATAL:").strip()
    if "failed to resolve host" in first:
        first = f"cannot resolve the host {os.environ.get('PGHOST') or 'localhost'}"
    what = _KNOWN.get(_kind(first), "")
    return f"{describe()}: {first}{what}"


def _kind(message: str) -> str:
    lowered = message.lower()
    if "connection refused" in lowered or "resolve the host" in lowered:
        return "unreachable"
    if "timeout expired" in lowered:
        return "unreachable"
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return "password"
    if re.search(r'database ".*" does not exist', lowered):
        return "database"
    if "permission denied" in lowered or "must be owner" in lowered:
        return "privilege"
    return ""


_KNOWN: dict[str, str] = {
    "unreachable": " (is the server running? check PGHOST and PGPORT)",
    "password": " (check PGUSER and PGPASSWORD)",
    "database": " (create it, or set PGDATABASE)",
    "privilege": " (the role in PGUSER needs more privileges: see the README, 'PostgreSQL')",
}


def run_sql(con: Any, sql: str, params: Any = None) -> None:
    """Execute one statement with bound parameters, errors as one line."""
    with errors_in_one_line():
        con.execute(sql, params)


# The advisory lock every writer of an Insiders database holds (a run, a load): two
# machines writing one database wait for each other as two processes do for the file
# lock on DuckDB. One 64-bit key per database (advisory locks are per database).
_LOCK_KEY = 0x1A5D_E125


class PgWriterLock:
    """The writer lock of the PostgreSQL database, held on a connection of its own for
    as long as the writer runs (the server releases it if the process dies). Its
    connection's ``application_name`` names the holder for whoever waits."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._con: Any = None

    def acquire(self, wait: bool = True, notify: Any = None) -> None:
        from orchestration.run_control import WarehouseBusy

        con = connect(autocommit=True, application=f"lock: {self.owner} (pid {os.getpid()})")
        try:
            with errors_in_one_line():
                got = con.execute("select pg_try_advisory_lock(%s)", [_LOCK_KEY]).fetchone()[0]
                if not got:
                    holder = self.holder(con)
                    if not wait:
                        raise WarehouseBusy(
                            f"{describe()} is busy: {holder} is writing it; "
                            "try again when it has finished"
                        )
                    if notify is not None:
                        notify(f"waiting for {holder} to finish with {describe()}")
                    con.execute("select pg_advisory_lock(%s)", [_LOCK_KEY])
        except BaseException:
            con.close()
            raise
        self._con = con

    @staticmethod
    def holder(con: Any) -> str:
        """Who holds the lock, as its connection's application_name says."""
        row = con.execute(
            """
            select a.application_name, a.client_addr::text from pg_locks as l
            join pg_stat_activity as a on a.pid = l.pid
            where l.locktype = 'advisory' and l.granted and l.database = (
                select oid from pg_database where datname = current_database()
            ) and l.objid = %s
            """,
            [_LOCK_KEY & 0xFFFFFFFF],
        ).fetchone()
        if row is None:
            return "another writer"
        name = (row[0] or "another writer").removeprefix(f"{APPLICATION_NAME} lock: ")
        return name + (f" from {row[1]}" if row[1] else "")

    def release(self) -> None:
        if self._con is not None:
            try:
                self._con.close()  # closing the session releases its advisory lock
            finally:
                self._con = None

    def __enter__(self) -> PgWriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
