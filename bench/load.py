"""Benchmark: wall time and peak memory of `insiders load` at 1x, 10x and 30x the real data.

The scaled data are the real daily files copied N times with shifted ids (copy k adds
k * 1,000,000 to the invoice number, keeping its letter prefix (``C``, ``A``), and
k * 100,000 to the customer id), one file per day holding all N copies: the shape of a
store N times as big. DuckDB writes them in a few seconds. Each load runs as its own `insiders load`
process into a fresh warehouse, the way a user runs it; its peak resident memory is
read from the kernel (``RUSAGE_CHILDREN`` of a helper process that runs only it).
Usage:

    .venv/bin/python bench/load.py [--factors 1 10 30] [--workdir DIR] [--repeat N]

Targets on this 2-core, 24 GiB machine (issue 12): 30x loads under 2 GiB peak; 1x no
slower than before the streaming loader (about 1.5 to 2 s of loading for 305 files).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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


def timed_load(data: Path, warehouse: Path) -> tuple[float, float, str]:
    """Run `insiders load` in a helper process; return (wall s, peak RSS MiB, summary)."""
    probe = subprocess.run(
        [sys.executable, __file__, "--_child", str(INSIDERS), "load", "--warehouse",
         str(warehouse), str(data)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        sys.stderr.write(probe.stdout[-4000:] + probe.stderr[-4000:])
        raise SystemExit(f"insiders load {data} failed")
    wall, peak, summary = probe.stdout.strip().splitlines()[-1].split("\t")
    return float(wall), float(peak), summary


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
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="insiders-bench-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores; data under {workdir}")
    print("factor  lines       CSV MB  load s  peak RSS MiB  summary")
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
                wall, peak, summary = timed_load(data, warehouse)
                shown = f"{lines:,}" if lines else "real data"
                print(
                    f"{factor:>6}  {shown:<10}  {size:6.0f}  {wall:6.1f}  {peak:12.0f}  {summary}"
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
