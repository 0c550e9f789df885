"""The driver-side Python steps on Spark: what they read copied into an in-memory
DuckDB through Arrow, and the ``ml`` tables they changed written back by Spark.

As on PostgreSQL (``orchestration.pg_mirror``), the rolling-origin evaluation, the
report and the BI snapshot run their DuckDB SQL on a copy: each relation they name is
computed by Spark (a portable query is Spark SQL) and arrives as Arrow
(``DataFrame.toArrow``). When the step's block ends, each ``ml`` table it changed is
written by Spark as a new version and switched in (``orchestration.spark_ml``): readers
of Spark see the previous run's rows until the switch, and a failure leaves them.

What grows with the customers does not come through here on Spark: the ``ml`` tables
with a row per customer come only when a step names them, the clustering fits on a
sample and labels every customer in Spark's tasks (``orchestration.spark_segmentation``),
and beyond the sample the evaluation learns on the sample and decides for everyone in
Spark (``orchestration.spark_evaluation``; its reads here are the sample's rows: a
warehouse with ``sample`` set filters every relation with a ``customer_id``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from models_py.locations import DUCKDB_CONFIG
from orchestration.ml_tables import ML_COLUMNS, ensure_ml_tables
from orchestration.pg_mirror import fingerprint
from orchestration.spark import SparkWarehouse
from orchestration.spark_ml import ensure_ml_tables as ensure_spark_ml_tables
from orchestration.spark_ml import replace_tables, table_frame

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# The ml tables with a row per customer: left on Spark for a step that asks so.
PER_CUSTOMER = frozenset(
    {"customer_segments", "customer_embedding", "customer_forecast", "definition_members"}
)


def relation_exists(spark: SparkSession, relation: str) -> bool:
    """Whether ``database.name`` is a table or view of Spark's catalog."""
    database, _, name = relation.partition(".")
    if not spark.catalog.databaseExists(database):
        return False
    return spark.catalog.tableExists(f"{database}.{name}")


def pull(
    spark: SparkSession,
    duck: duckdb.DuckDBPyConnection,
    relation: str,
    query: str | None = None,
    sample: str | None = None,
) -> int:
    """Copy ``relation`` of Spark (or ``query``'s rows) into the DuckDB table of the
    same ``schema.name``; the number of rows. An existing DuckDB table of that name
    takes the rows by column name (its types rule). With ``sample`` (a temporary view
    of customer ids) a relation with a ``customer_id`` brings only their rows."""
    schema, _, name = relation.rpartition(".")
    schema = schema or "main"
    if query is None:
        spark.sql(f"refresh table {schema}.{name}")
        frame = spark.table(f"{schema}.{name}")
    else:
        frame = spark.sql(query)
    if sample is not None and "customer_id" in frame.columns:
        frame = frame.join(spark.table(sample), "customer_id", "left_semi")
    rows = naive_timestamps(frame.toArrow())
    duck.execute(f"create schema if not exists {schema}")
    duck.register("pulled_rows", rows)
    try:
        exists = duck.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchall()[0][0]
        if exists:
            names = ", ".join(f'"{c}"' for c in rows.column_names)
            duck.execute(f'insert into {schema}."{name}" ({names}) select {names} from pulled_rows')
        else:
            duck.execute(f'create table {schema}."{name}" as select * from pulled_rows')
    finally:
        duck.unregister("pulled_rows")
    return rows.num_rows


def naive_timestamps(rows: pa.Table) -> pa.Table:
    """Spark's ``timestamp`` is an instant (Arrow: with time zone, the session's UTC);
    the project's timestamps are naive, as DuckDB's and PostgreSQL's ``timestamp``:
    the same wall-clock values without the zone."""
    fields = []
    for field in rows.schema:
        kind = field.type
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            field = field.with_type(pa.timestamp(kind.unit))
        fields.append(field)
    schema = pa.schema(fields)
    return rows if schema.equals(rows.schema) else rows.cast(schema)


def push(
    spark: SparkSession,
    warehouse: SparkWarehouse,
    duck: duckdb.DuckDBPyConnection,
    tables: Sequence[str],
    run_id: str,
) -> None:
    """Replace Spark's ``ml`` tables ``tables`` with DuckDB's rows (new versions,
    switched in)."""
    frames = {}
    for table in tables:
        columns = ", ".join(f'"{c}"' for c in ML_COLUMNS[table])
        arrow = duck.sql(f"select {columns} from ml.{table}").to_arrow_table()
        frames[table] = spark.createDataFrame(arrow) if arrow.num_rows else _empty(spark, table)
    replace_tables(spark, warehouse, frames, run_id)


def _empty(spark: SparkSession, table: str) -> object:
    from orchestration.spark_ml import spark_schema

    return spark.createDataFrame([], spark_schema(table))


@contextmanager
def mirror(
    warehouse: SparkWarehouse,
    reads: Sequence[str | tuple[str, str]] = (),
    write: bool = False,
    run_id: str = "step",
) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB holding the ``ml`` tables and ``reads`` (names, or (name,
    portable query) pairs computed by Spark); with ``write``, the ``ml`` tables the
    block changed are written back to Spark when it ends without error. The ``ml``
    tables with a row per customer come only when ``reads`` names them (or the block
    writes): a step that reads the runs' history does not copy every customer."""
    spark = warehouse.session()
    ensure_spark_ml_tables(spark, warehouse)
    with tempfile.TemporaryDirectory(prefix="insiders-spark-") as tmp:
        duck = duckdb.connect(config={**DUCKDB_CONFIG, "temp_directory": str(Path(tmp) / "spill")})
        try:
            ensure_ml_tables(duck)
            named = {item if isinstance(item, str) else item[0] for item in reads}
            summaries = {item[0]: item[1] for item in reads if isinstance(item, tuple)}
            for table in ML_COLUMNS:
                if table in PER_CUSTOMER and not write and f"ml.{table}" not in named:
                    continue  # a row per customer: only when the step reads it
                table_frame(spark, table)  # refreshed: another step may have switched it
                query = summaries.get(f"ml.{table}")  # asked as a summary: only its rows
                pull(spark, duck, f"ml.{table}", query, sample=warehouse.sample)
            for item in reads:
                relation, query = item if isinstance(item, tuple) else (item, None)
                if relation.startswith("ml.") and relation.removeprefix("ml.") in ML_COLUMNS:
                    continue
                summary = query is not None and "." in relation  # of that relation
                if (query is not None and not summary) or relation_exists(spark, relation):
                    pull(spark, duck, relation, query, sample=warehouse.sample)
            before = {t: fingerprint(duck, t) for t in ML_COLUMNS} if write else {}
            yield duck
            if write:
                if warehouse.sample is not None:
                    raise ValueError("a sampled mirror is read-only")
                changed = [t for t in ML_COLUMNS if fingerprint(duck, t) != before[t]]
                if changed:
                    push(spark, warehouse, duck, changed, run_id)
        finally:
            duck.close()
