"""Benchmark: wall time and peak memory of `insiders load` at 1x, 10x and 30x the real data,
into DuckDB (default) or PostgreSQL (``--target postgres``).

The scaled data are the real daily files copied N times with shifted ids (copy k adds
k * 1,000,000 to the invoice number, keeping its letter prefix (``C``, ``A``), and
k * 100,000 to the customer id), one file per day holding all N copies: the shape of a
store N times as big. DuckDB writes them in a few seconds. Each load runs as its own `insiders load`
process into a fresh warehouse, the way a user runs it; its peak resident memory is
read from the kernel (``RUSAGE_CHILDREN`` of a helper process that runs only it).
Usage:

    .venv/bin/python bench/load.py [--factors 1 10 30] [--workdir DIR] [--repeat N]
    eval "$(.ci/postgres env)"; .venv/bin/python bench/load.py --target postgres --factors 1 10

With ``--target postgres`` each load goes into a new database on the server the ``PG*``
variables name (dropped afterwards), through ``load_files`` with a ``PgWarehouse`` in a
process of its own (the loading process's peak RSS, as for DuckDB). The server is other
processes: the table adds the peak RSS of the load's backend (``VmHWM``: its own memory
plus the shared buffers it touched) and the peak of the server's total proportional set
size (PSS summed over every ``postgres`` process: shared memory counted once; other
databases' work on the same server counts too), both sampled every 50 ms.

Targets on this 2-core, 24 GiB machine (issue 12): 30x loads under 2 GiB peak; 1x no
slower than before the streaming loader (about 1.5 to 2 s of loading for 305 files).
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"
INSIDERS = Path(sys.executable).parent / "insiders"
# Copy k of a line: invoice number + k * INVOICE_SHIFT, customer id + k * CUSTOMER_SHIFT
# (the real ones are 6-digit invoices and 5-digit customers, so copies never collide).
INVOICE_SHIFT = 1_000_000
CUSTOMER_SHIFT = 100_000


def write_scaled(source: Path, target: Path, factor: int, one_file: bool = False) -> int:
    """Write ``factor`` shifted copies of the daily files of ``source`` into ``target``
    (one CSV per day, as ``target/day=<file stem>/data_0.csv``, or all in
    ``target/all.csv`` with ``one_file``); return the lines written.

    Values are copied as text (``all_varchar``), so the copies keep the real files'
    formats (``17850.0``, ``2010-12-01 08:26:00``); only the ids change.
    """
    if target.exists():
        shutil.rmtree(target)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.execute("set enable_progress_bar = false")
        con.execute(
            """
            create temp table src as
            select * exclude (filename), parse_filename(filename, true) as day
            from read_csv(?, header = true, all_varchar = true, filename = true)
            """,
            [str(source / "*.csv")],
        )
        # COPY takes no parameters for its target: the path is ours, quoted here.
        if one_file:
            target.mkdir(parents=True)
        where = target / "all.csv" if one_file else target
        quoted = "'" + str(where).replace("'", "''") + "'"
        options = "format csv, header true" + ("" if one_file else ", partition_by (day)")
        con.execute(
            f"""
            copy (
                select
                    regexp_extract(InvoiceNo, '^[^0-9]*')
                        || cast(cast(regexp_extract(InvoiceNo, '[0-9]+$') as bigint)
                            + k * {INVOICE_SHIFT} as varchar) as InvoiceNo,
                    StockCode, Description, Quantity, InvoiceDate, UnitPrice,
                    case when CustomerID is null then null
                        else cast(cast(CustomerID as double) + k * {CUSTOMER_SHIFT}
                            as varchar) end as CustomerID,
                    Country{"" if one_file else ", day"}
                from src, range(?) as copies(k)
                order by day, k
            ) to {quoted} ({options})
            """,
            [factor],
        )
        return con.execute("select count(*) * ? from src", [factor]).fetchone()[0]
    finally:
        con.close()


# A load into the PostgreSQL database the PG* variables name, as a process of its own:
# argv[1] is the folder of the database's local files, the rest the paths to load. The
# last line printed is the report's summary; exit 1 if a file failed.
PG_LOAD_SCRIPT = (
    "import sys\n"
    "from pathlib import Path\n"
    "from orchestration.postgres import PgWarehouse\n"
    "from orchestration.warehouse import load_files\n"
    "report = load_files(PgWarehouse(Path(sys.argv[1])), sys.argv[2:])\n"
    "for error in report.failed:\n"
    "    print(error, file=sys.stderr)\n"
    "print(report.summary())\n"
    "sys.exit(1 if report.failed else 0)\n"
)


def pg_load_command(local: Path, paths: list[Path]) -> list[str]:
    """The command that loads ``paths`` into PostgreSQL (see :data:`PG_LOAD_SCRIPT`)."""
    return [sys.executable, "-c", PG_LOAD_SCRIPT, str(local), *map(str, paths)]


def timed_load(data: Path, warehouse: Path) -> tuple[float, float, str]:
    """Run `insiders load` in a helper process; return (wall s, peak RSS MiB, summary)."""
    command = [str(INSIDERS), "load", "--warehouse", str(warehouse), str(data)]
    return measured(command, str(data))


def measured(command: list[str], what: str) -> tuple[float, float, str]:
    """Run ``command`` under the measuring helper; (wall s, peak RSS MiB, summary)."""
    probe = subprocess.run(
        [sys.executable, __file__, "--_child", *command],
        capture_output=True, text=True, check=False, cwd=REPO_ROOT,
    )  # fmt: skip
    if probe.returncode != 0:
        sys.stderr.write(probe.stdout[-4000:] + probe.stderr[-4000:])
        raise SystemExit(f"load of {what} failed")
    wall, peak, summary = probe.stdout.strip().splitlines()[-1].split("\t")
    return float(wall), float(peak), summary


@contextmanager
def new_database(prefix: str = "insiders_bench_load") -> Iterator[str]:
    """A new empty database on the PG* variables' server, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = os.environ.get("PGDATABASE") or "postgres"  # where to connect to create it
    with psycopg.connect("", dbname=admin, autocommit=True) as con:
        con.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        drop = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        with psycopg.connect("", dbname=admin, autocommit=True) as con:
            # An autovacuum worker analysing the new tables (a superuser's process, which
            # FORCE may not end) refuses the drop for a moment after a large load.
            for attempt in range(50):
                try:
                    con.execute(drop)
                    break
                except psycopg.errors.InsufficientPrivilege:
                    if attempt == 49:
                        raise
                    time.sleep(0.2)


def timed_pg_load(data: Path, local: Path) -> tuple[float, float, str, float, float]:
    """Load ``data`` into a new PostgreSQL database in a helper process; return (wall s,
    peak RSS MiB of the loader, summary, peak RSS MiB of its backend, peak PSS MiB of
    the whole server)."""
    import threading

    import psycopg

    admin = os.environ.get("PGDATABASE")
    with new_database() as name:
        os.environ["PGDATABASE"] = name  # the loader's (and the watcher's) database
        stop = threading.Event()
        peaks = {"backend": 0.0, "server": 0.0}

        def watch() -> None:
            with psycopg.connect("", autocommit=True) as con:
                while not stop.wait(0.05):
                    pids = [
                        pid
                        for (pid,) in con.execute(
                            "select pid from pg_stat_activity where datname = %s "
                            "and application_name = %s",
                            [name, "insiders load"],
                        ).fetchall()
                    ]
                    for pid in pids:
                        peaks["backend"] = max(peaks["backend"], _status_kib(pid, "VmHWM") / 1024)
                    peaks["server"] = max(peaks["server"], _server_pss_kib() / 1024)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            wall, peak, summary = measured(pg_load_command(local, [data]), str(data))
        finally:
            stop.set()
            watcher.join()
            if admin is None:
                del os.environ["PGDATABASE"]
            else:
                os.environ["PGDATABASE"] = admin
    return wall, peak, summary, peaks["backend"], peaks["server"]


def _status_kib(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` memory field in KiB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _server_pss_kib() -> float:
    """PSS (KiB) summed over every process named ``postgres``: the server's memory,
    its shared buffers counted once."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += float(line.split()[1])
        except OSError:
            continue
    return total


def _child(args: list[str]) -> None:
    """Run one command and print its wall time, peak RSS (MiB) and last output line."""
    start = time.perf_counter()
    completed = subprocess.run(args, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise SystemExit(completed.returncode)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{wall:.2f}\t{peak:.0f}\t{completed.stdout.strip().splitlines()[-1]}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real daily files")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument(
        "--workdir", type=Path, help="where the scaled data and warehouses go (default: /tmp)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="loads per factor")
    parser.add_argument(
        "--target",
        choices=["duckdb", "postgres"],
        default="duckdb",
        help="where to load (postgres: the server the PG* variables name)",
    )
    args = parser.parse_args()
    if args.target == "postgres" and not os.environ.get("PGHOST"):
        raise SystemExit('set the PG* variables first, e.g. eval "$(.ci/postgres env)"')
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="insiders-bench-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; target {args.target}; data under {workdir}")
    server = "  backend MiB  server PSS MiB" if args.target == "postgres" else ""
    print(f"factor  lines       CSV MB  load s  peak RSS MiB{server}  summary")
    try:
        for factor in args.factors:
            data = workdir / f"x{factor}"
            start = time.perf_counter()
            lines = write_scaled(args.data, data, factor) if factor != 1 else None
            if factor == 1:
                data = args.data
            written = time.perf_counter() - start
            size = sum(p.stat().st_size for p in data.rglob("*.csv")) / 2**20
            for _ in range(args.repeat):
                warehouse = workdir / f"w{factor}" / "warehouse.duckdb"
                shutil.rmtree(warehouse.parent, ignore_errors=True)
                extra = ""
                if args.target == "postgres":
                    wall, peak, summary, backend, total = timed_pg_load(data, warehouse.parent)
                    extra = f"  {backend:11.0f}  {total:14.0f}"
                else:
                    wall, peak, summary = timed_load(data, warehouse)
                shown = f"{lines:,}" if lines else "real data"
                print(
                    f"{factor:>6}  {shown:<10}  {size:6.0f}  {wall:6.1f}  {peak:12.0f}{extra}"
                    f"  {summary}"
                )
                shutil.rmtree(warehouse.parent, ignore_errors=True)
            if factor != 1:
                shutil.rmtree(data)
                print(f"        (writing the {factor}x data took {written:.1f} s)")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
