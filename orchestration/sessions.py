"""One way for a Python step to open the warehouse, whatever the target.

A step gets a DuckDB connection: on DuckDB the warehouse file itself (during a run, its
work copy); on PostgreSQL an in-memory DuckDB holding copies of what the step reads and
of the ``ml`` schema, whose changed ``ml`` tables go back to PostgreSQL in one
transaction when the step's block ends (``orchestration.pg_mirror``); on Spark the same,
the changed ``ml`` tables written by Spark as new versions and switched in
(``orchestration.spark_mirror``). So the steps' SQL is written once. The steps whose
inputs grow with the customers have a Spark path of their own that keeps the customers
where they are (``orchestration.spark_segmentation``, ``orchestration.spark_evaluation``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb

from orchestration.ml_tables import ensure_ml_tables
from orchestration.postgres import PgWarehouse
from orchestration.spark import SparkWarehouse
from orchestration.warehouse import connect

# A warehouse as the steps receive it: a DuckDB file, the PostgreSQL database, or a
# Spark catalog.
Warehouse = Path | PgWarehouse | SparkWarehouse


@contextmanager
def open_warehouse(
    warehouse: Warehouse,
    reads: Sequence[str | tuple[str, str]] = (),
    write: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one step's block: ``reads`` names the relations the block reads
    besides ``ml.*`` (on DuckDB every relation is there anyway), or gives (name, query)
    pairs: the query, portable SQL, is computed by the warehouse (on PostgreSQL, by
    the server) and its rows are read as ``name``. A pair named after a relation of
    the warehouse (``schema.name``) is a summary of it: a mirror copies only the
    query's rows under that name (none when the relation does not exist), DuckDB
    reads the relation itself. With ``write`` the block may change ``ml`` tables
    (through ``ml_tables.write_tables``)."""
    if isinstance(warehouse, PgWarehouse):
        from orchestration.pg_mirror import mirror

        with mirror(warehouse, reads, write) as con:
            yield con
        return
    if isinstance(warehouse, SparkWarehouse):
        from orchestration.spark_mirror import mirror as spark_mirror

        with spark_mirror(warehouse, reads, write) as con:
            yield con
        return
    con = connect(warehouse)
    try:
        ensure_ml_tables(con)
        for item in reads:
            if isinstance(item, tuple) and "." not in item[0]:  # our own constant SQL
                con.execute(f"create or replace temp view {item[0]} as {item[1]}")
        yield con
    finally:
        con.close()


def local_folder(warehouse: Warehouse) -> Path:
    """The folder of the warehouse's local files (models/, reports/, bi/, .dbt/)."""
    return warehouse.parent


def prepare_warehouse(warehouse: Warehouse) -> None:
    """Make the ``raw`` and ``ml`` tables exist (a new DuckDB file, a new database), so
    the dbt sources over them resolve before the first load and the first clustering."""
    if isinstance(warehouse, PgWarehouse):
        from orchestration.pg_loader import ensure_raw_tables
        from orchestration.postgres import errors_in_one_line

        with errors_in_one_line(), warehouse.connect() as con:
            ensure_raw_tables(con)
            ensure_ml_tables(con, postgres=True)
        return
    if isinstance(warehouse, SparkWarehouse):
        from orchestration.spark_loader import drop_uncommitted, ensure_raw_tables
        from orchestration.spark_ml import ensure_ml_tables as ensure_spark_ml_tables

        spark = warehouse.session()
        ensure_raw_tables(spark)
        drop_uncommitted(spark)  # a killed load's rows: never seen by dbt
        ensure_spark_ml_tables(spark, warehouse)
        return
    con = connect(warehouse)
    try:
        ensure_ml_tables(con)
    finally:
        con.close()


def target_name(warehouse: Warehouse) -> str:
    """The dbt output of ``profiles/profiles.yml`` that builds ``warehouse``."""
    if isinstance(warehouse, PgWarehouse):
        return "postgres"
    return "spark" if isinstance(warehouse, SparkWarehouse) else "duckdb"


def lock_anchor(warehouse: Warehouse) -> Path:
    """The path whose lock file guards ``warehouse`` against a second writer: the DuckDB
    file itself, or a name in the local folder of a server's or Spark's warehouse."""
    if isinstance(warehouse, PgWarehouse | SparkWarehouse):
        return warehouse.parent / "database"
    return warehouse
