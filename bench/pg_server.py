"""The PostgreSQL side of ``bench/scale.py --target postgres``: a fresh database per
run, and the server's memory sampled while the run uses it.

Why a database per run: a fresh DuckDB warehouse file is what the DuckDB benchmark
measures (nothing loaded, nothing built); the PostgreSQL equivalent is an empty
database, created by the ``PG*`` role (it has ``CREATEDB``) and dropped afterwards
(``drop database ... with (force)``, retried: an autovacuum worker can hold a database
for a moment after a large load).

Why the server is sampled apart from the run's process tree: on PostgreSQL the SQL
(the load's ``COPY``, every dbt model, the views the Python steps read) runs in server
processes that are not children of ``insiders run``, so the tree's RSS is only the
client's (Python, dbt, the Python steps' in-memory DuckDB). Two server figures, both
from ``/proc`` (so only for a server on this machine, readable by this user):

* **backends**: the sum of the RSS of the backends serving the run's database
  (``pg_stat_activity`` pids with ``datname`` = the database, parallel workers
  included). A backend's RSS includes the pages of shared memory (``shared_buffers``)
  it has touched, so shared memory is counted once per backend: an upper bound of what
  the run's sessions hold.
* **server PSS**: the sum of the proportional set size (``Pss`` of
  ``/proc/<pid>/smaps_rollup``) of every process of the server: the postmaster and all
  its children (the backends of every database, the checkpointer, background writer,
  WAL writer, autovacuum, ...), but not the sampler's own connection. PSS divides each
  shared page among the processes mapping it, so shared memory is counted once: the
  server's real footprint, other databases' sessions included (run on a server of its
  own for a clean figure).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

DROP_ATTEMPTS = 30
DROP_PAUSE_SECONDS = 2.0
SERVER_SAMPLE_SECONDS = 0.1
# What the server runs with: printed beside the figures (durability settings change
# what a load and every dbt table cost).
SETTINGS = (
    "server_version",
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "max_wal_size",
    "max_parallel_workers_per_gather",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
)
_SMAPS_FIELD = re.compile(rb"^(Rss|Pss):\s+(\d+) kB", re.MULTILINE)


class BenchDatabaseError(RuntimeError):
    """A one-line reason the benchmark's database could not be made or dropped."""


def admin_connect() -> psycopg.Connection:
    """An autocommit connection to the database the ``PG*`` variables name (the role's
    own), from which the benchmark creates and drops its databases; one line on failure
    (libpq's message, which never holds the password)."""
    try:
        return psycopg.connect("", autocommit=True, application_name="insiders-bench")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchDatabaseError(f"scale: cannot connect with the PG* variables: {first}") from None


def server_settings(con: psycopg.Connection) -> dict[str, str]:
    """The server's version and the settings in ``SETTINGS``, with their units."""
    rows = con.execute(
        "select name, setting, coalesce(unit, '') from pg_settings where name = any(%s)",
        [list(SETTINGS)],
    ).fetchall()
    found = {name: _with_unit(setting, unit) for name, setting, unit in rows}
    return {name: found[name] for name in SETTINGS if name in found}


def _with_unit(setting: str, unit: str) -> str:
    """``16384`` of unit ``8kB`` as ``128 MiB``; other settings as they are."""
    match = re.fullmatch(r"(\d*)([kM]B)", unit)
    if not match or not setting.isdigit():
        return f"{setting}{unit}" if unit else setting
    kib = int(setting) * int(match.group(1) or 1) * (1024 if match.group(2) == "MB" else 1)
    return f"{kib / 1024**2:g} GiB" if kib >= 1024**2 else f"{kib / 1024:g} MiB"


def create_database(con: psycopg.Connection, prefix: str) -> str:
    """A new, empty database named ``<prefix>_<random>``, owned by the connected role."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        con.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise BenchDatabaseError(f"scale: cannot create database {name}: {_line(exc)}") from None
    return name


def drop_database(
    con: psycopg.Connection,
    name: str,
    attempts: int = DROP_ATTEMPTS,
    pause: float = DROP_PAUSE_SECONDS,
) -> int:
    """Drop ``name``, retrying while the server says it is in use; the number of
    attempts it took.

    ``with (force)`` ends the sessions a run left, but refuses outright when an
    autovacuum worker is in the database (still analysing the tables of a large load):
    the worker runs as the bootstrap superuser, which our role may not signal
    (``must be a member of the role whose process is being terminated``). A plain
    ``drop database`` then does: it tells autovacuum workers to quit and waits up to 5 s
    for them, failing "in use" if a session is left, which the next attempt's force
    ends."""
    ident = sql.Identifier(name)
    forced = sql.SQL("drop database if exists {} with (force)").format(ident)
    plain = sql.SQL("drop database if exists {}").format(ident)
    for attempt in range(1, attempts + 1):
        try:
            try:
                con.execute(forced)
            except psycopg.errors.InsufficientPrivilege:
                con.execute(plain)
            return attempt
        except (psycopg.errors.ObjectInUse, psycopg.errors.InsufficientPrivilege) as exc:
            if attempt == attempts:
                raise BenchDatabaseError(
                    f"scale: database {name} still in use after {attempts} drops: {_line(exc)}"
                ) from None
            time.sleep(pause)
    return attempts


def database_exists(con: psycopg.Connection, name: str) -> bool:
    """Whether the server has a database called ``name``."""
    row = con.execute("select count(*) from pg_database where datname = %s", [name]).fetchone()
    return bool(row and row[0])


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A fresh database for the block, dropped when the block ends, however it ends.
    A database that cannot be dropped is one line on stderr, not an error: the block's
    work (a measured run) is not lost to it."""
    with admin_connect() as con:
        name = create_database(con, prefix)
    try:
        yield name
    finally:
        try:
            with admin_connect() as con:
                drop_database(con, name)
        except BenchDatabaseError as exc:
            print(f"{exc}; drop it by hand", file=sys.stderr)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def smaps_rollup(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) in bytes of process ``pid``; None when it is gone or unreadable."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_bytes()
    except OSError:
        return None
    fields = {name: int(kib) * 1024 for name, kib in _SMAPS_FIELD.findall(text)}
    if b"Rss" not in fields or b"Pss" not in fields:
        return None
    return fields[b"Rss"], fields[b"Pss"]


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid`` from /proc, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[1])


def children_of(parent: int) -> list[int]:
    """Every process whose parent is ``parent`` (a PostgreSQL server's processes are all
    children of the postmaster)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_pid(int(entry.name)) == parent:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class ServerSample:
    """One look at the server's memory (bytes), see the module docstring."""

    moment: float
    backends: int  # how many backends served the database
    backends_rss: int
    backends_pss: int
    server_pss: int


class ServerSampler:
    """Samples the server's memory every ``interval`` seconds in a thread, from a
    connection of its own to the admin database (not counted), until :meth:`stop`.

    ``available`` is False (and nothing is sampled) when the server's processes cannot
    be read here: a server on another machine, or another user's without privileges."""

    def __init__(self, database: str, interval: float = SERVER_SAMPLE_SECONDS) -> None:
        self.database = database
        self.interval = interval
        self.samples: list[ServerSample] = []
        self.error = ""
        self._con = admin_connect()
        row = self._con.execute("select pg_backend_pid()").fetchone()
        self._own = int(row[0]) if row else -1
        self.postmaster = parent_pid(self._own)
        self.available = self.postmaster is not None and smaps_rollup(self._own) is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ServerSampler:
        if self.available:
            self._thread.start()
        return self

    def stop(self) -> list[ServerSample]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._con.close()
        return self.samples

    def sample(self) -> ServerSample:
        """One sample now."""
        assert self.postmaster is not None
        backends = {
            int(pid)
            for (pid,) in self._con.execute(
                "select pid from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
                [self.database],
            ).fetchall()
        }
        moment = time.monotonic()
        backends_rss = backends_pss = server_pss = 0
        for pid in [self.postmaster, *children_of(self.postmaster)]:
            if pid == self._own:
                continue
            memory = smaps_rollup(pid)
            if memory is None:
                continue
            rss, pss = memory
            server_pss += pss
            if pid in backends:
                backends_rss += rss
                backends_pss += pss
        return ServerSample(moment, len(backends), backends_rss, backends_pss, server_pss)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # the run goes on; the figures say they are partial
                self.error = _line(exc)
                return
            self._stop.wait(self.interval)


def peaks(samples: list[ServerSample], start: float, end: float) -> dict[str, Any]:
    """The largest backends RSS and server PSS sampled in (start, end]; a stage shorter
    than the interval gets the first sample after it. None without samples."""
    inside = [s for s in samples if start < s.moment <= end]
    if not inside:
        inside = [s for s in samples if s.moment > end][:1]
    if not inside:
        return {"server_backends_peak_bytes": None, "server_pss_peak_bytes": None}
    return {
        "server_backends_peak_bytes": max(s.backends_rss for s in inside),
        "server_pss_peak_bytes": max(s.server_pss for s in inside),
    }
