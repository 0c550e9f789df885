"""Benchmark: `insiders load` of the same order lines in each container a store may have.

The real daily files (or N shifted copies of them, as ``bench/load.py`` writes) are
written, by plain DuckDB, as: the CSV files themselves; gzip-compressed CSV (one
``.csv.gz`` per day); typed Parquet (one file per day: timestamps, integers, doubles);
renamed-column CSV read through a custom mapping (another date format); and a table of
the warehouse (``table:shop.orders``, read in place). Each is loaded by its own
`insiders load` process into a fresh warehouse; the table shows wall time and peak
resident memory (kernel ``RUSAGE_CHILDREN``), and the rows loaded, which must be the
same for every container. Usage:

    .venv/bin/python bench/load_formats.py [--factors 1 10] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import DEFAULT_DATA, INSIDERS, measured, write_scaled

from models_py.locations import DUCKDB_CONFIG
from orchestration.warehouse import path_literal

MAPPING = """\
name: renamed
columns:
  order_id: order_ref
  product_id: sku
  description: product_name
  quantity: qty
  ordered_at: ordered_on
  unit_price: price_gbp
  customer_id: client
  country: nation
ordered_at:
  format: "%d/%m/%Y %H:%M:%S"
"""


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.csv"))


def write_containers(source: Path, out: Path) -> dict[str, tuple[list[str], Path]]:
    """Write the containers of ``source``'s CSV files under ``out``; return, per
    container, the extra `insiders load` arguments (paths and mapping) and its data."""
    con = duckdb.connect(config=DUCKDB_CONFIG)
    gz, parquet, renamed = out / "gzip", out / "parquet", out / "renamed"
    for folder in (gz, parquet, renamed):
        folder.mkdir(parents=True)
    for i, path in enumerate(_files(source)):
        text = "read_csv(?, all_varchar = true, header = true, hive_partitioning = false)"
        con.execute(
            f"copy (select * from {text}) to {path_literal(gz / f'day{i:04d}.csv.gz')} "
            "(header, compression gzip)",
            [str(path)],
        )
        con.execute(
            f"""copy (select InvoiceNo, StockCode, Description, cast(Quantity as integer)
                as Quantity, cast(InvoiceDate as timestamp) as InvoiceDate,
                cast(UnitPrice as double) as UnitPrice, CustomerID, Country
                from {text}) to {path_literal(parquet / f"day{i:04d}.parquet")}
                (format parquet)""",
            [str(path)],
        )
        con.execute(
            f"""copy (select Country as nation, InvoiceNo as order_ref, StockCode as sku,
                Description as product_name, Quantity as qty, UnitPrice as price_gbp,
                strftime(cast(InvoiceDate as timestamp), '%d/%m/%Y %H:%M:%S') as ordered_on,
                CustomerID as client, 'x' as unused
                from {text}) to {path_literal(renamed / f"day{i:04d}.csv")} (header)""",
            [str(path)],
        )
    con.close()
    mapping = out / "renamed.yml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return {
        "csv": ([str(source)], source),
        "gzip csv": ([str(gz)], gz),
        "parquet": ([str(parquet)], parquet),
        "renamed csv + mapping": (["--mapping", str(mapping), str(renamed)], renamed),
    }


def table_warehouse(source: Path, warehouse: Path) -> None:
    """A warehouse holding the lines as table shop.orders (typed as DuckDB reads them)."""
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.execute("create schema shop")
    files = [str(p) for p in _files(source)]
    con.execute(
        "create table shop.orders as select * from read_csv(?, all_varchar = true, "
        "header = true, union_by_name = true, hive_partitioning = false)",
        [files],
    )
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--factors", type=int, nargs="+", default=[1])
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="insiders-bench-formats-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"data under {workdir}")
    print(f"{'factor':>6}  {'container':<22}  {'MB':>6}  {'load s':>6}  {'peak MiB':>8}  summary")
    try:
        for factor in args.factors:
            source = args.data
            if factor != 1:
                source = workdir / f"x{factor}"
                write_scaled(args.data, source, factor)
            containers = write_containers(source, workdir / f"c{factor}")
            for name, (extra, data) in containers.items():
                size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 2**20
                warehouse = workdir / "w" / "warehouse.duckdb"
                shutil.rmtree(warehouse.parent, ignore_errors=True)
                command = [str(INSIDERS), "load", "--warehouse", str(warehouse), *extra]
                wall, peak, summary = measured(command, name)
                print(f"{factor:>6}  {name:<22}  {size:6.0f}  {wall:6.1f}  {peak:8.0f}  {summary}")
            warehouse = workdir / "w" / "warehouse.duckdb"
            shutil.rmtree(warehouse.parent, ignore_errors=True)
            warehouse.parent.mkdir(parents=True)
            table_warehouse(source, warehouse)
            command = [str(INSIDERS), "load", "--warehouse", str(warehouse), "table:shop.orders"]
            wall, peak, summary = measured(command, "table")
            shown = "table (in place)"
            print(f"{factor:>6}  {shown:<22}  {'-':>6}  {wall:6.1f}  {peak:8.0f}  {summary}")
            shutil.rmtree(workdir / f"c{factor}", ignore_errors=True)
            if factor != 1:
                shutil.rmtree(source, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
