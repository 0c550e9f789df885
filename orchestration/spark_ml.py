"""The ``ml`` schema on Spark: the same tables as ``orchestration.ml_tables``, each
replaced atomically by switching it to a new version written under the run's id.

Parquet tables have no transactions. So a writer never changes a table's files: it
writes the table's new rows to a new folder, ``<tables>/ml_versions/<table>/<version>``
(the version names the time and the run), and then points the table at it with ONE
metastore operation (``alter table ... set location``). A reader sees the previous
version's files or the new one's, never a mix; a run killed before the switch leaves
the previous version in place (its folder is an orphan, removed by the next write).
The previous version's folder is kept for readers still in it; older ones are removed.
"""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.ml_tables import ML_COLUMNS, RETIRED_TABLES
from orchestration.spark import SparkWarehouse
from orchestration.warehouse import WarehouseError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

VERSIONS_DIR = "ml_versions"
# ML_COLUMNS' types are DuckDB's; Spark spells some differently.
_SPARK_TYPES = {
    "varchar": "string",
    "json": "string",
    "timestamp": "timestamp_ntz",
    "integer": "int",
}
# A version folder name: made here, from the time and a run id's letters.
_VERSION = re.compile(r"^[0-9TZ]+-[A-Za-z0-9_-]{1,36}$")


def spark_type(spec: str) -> str:
    """The Spark type of an ``ML_COLUMNS`` spec (``double not null`` → ``double``)."""
    word = spec.split()[0]
    return _SPARK_TYPES.get(word, word)


def spark_schema(table: str) -> str:
    """``ml.<table>``'s columns as a Spark DDL schema string."""
    return ", ".join(f"{name} {spark_type(spec)}" for name, spec in ML_COLUMNS[table].items())


def versions_root(warehouse: SparkWarehouse, table: str) -> str:
    return f"{warehouse.tables.rstrip('/')}/{VERSIONS_DIR}/{table}"


def _checked_location(location: str) -> str:
    """A location for a Spark SQL string literal: refused when it holds a quote, a
    backslash or a control character (it comes from ``$INSIDERS_SPARK_WAREHOUSE``)."""
    if re.search(r"['\\\x00-\x1f`]", location):
        raise WarehouseError(
            f"$INSIDERS_SPARK_WAREHOUSE: the tables' directory may not hold quotes, "
            f"backslashes or control characters: {location!r}"
        )
    return location


def _existing(spark: SparkSession, database: str) -> set[str]:
    if not spark.catalog.databaseExists(database):
        return set()
    return {t.name for t in spark.catalog.listTables(database) if not t.isTemporary}


def ensure_ml_tables(spark: SparkSession, warehouse: SparkWarehouse) -> None:
    """Create database ``ml`` and its tables (empty first versions) where missing, add
    the columns an older warehouse lacks, drop retired tables."""
    spark.sql("create database if not exists ml")
    existing = _existing(spark, "ml")
    for table, columns in ML_COLUMNS.items():
        if table not in existing:
            empty = spark.createDataFrame([], spark_schema(table))
            _write_version(spark, warehouse, table, empty, "initial", create=True)
            continue
        present = {f.name for f in spark.table(f"ml.{table}").schema.fields}
        missing = [n for n in columns if n not in present]
        if missing:
            added = ", ".join(f"{n} {spark_type(columns[n])}" for n in missing)
            spark.sql(f"alter table ml.{table} add columns ({added})")
    for table in RETIRED_TABLES:
        if table in existing:
            spark.sql(f"drop table ml.{table}")


def conformed(frame: DataFrame, table: str) -> DataFrame:
    """``frame`` with exactly ``ml.<table>``'s columns, in order, cast to its types;
    a missing or extra column fails in one line (as ``ml_tables.check_columns``)."""
    from pyspark.sql import functions as F

    expected = list(ML_COLUMNS[table])
    have = list(frame.columns)
    if sorted(have) != sorted(expected):
        missing = [c for c in expected if c not in have]
        extra = [c for c in have if c not in expected]
        raise ValueError(f"ml.{table}: missing columns {missing}, unexpected columns {extra}")
    return frame.select(
        *[F.col(c).cast(spark_type(ML_COLUMNS[table][c])).alias(c) for c in expected]
    )


def replace_tables(
    spark: SparkSession, warehouse: SparkWarehouse, frames: dict[str, DataFrame], run_id: str
) -> None:
    """Replace whole ``ml`` tables with ``frames`` (Spark DataFrames): every new version
    is written first, then the tables are switched one after the other (each switch
    one metastore operation), so a failure while writing changes no table."""
    switch_tables(spark, warehouse, write_versions(spark, warehouse, frames, run_id))


def write_versions(
    spark: SparkSession, warehouse: SparkWarehouse, frames: dict[str, DataFrame], run_id: str
) -> dict[str, str]:
    """Write each frame as a new version of its ``ml`` table (nobody reads it yet);
    the versions' locations by table."""
    checked = {table: conformed(frame, table) for table, frame in frames.items()}
    return {
        table: _write_version(spark, warehouse, table, frame, run_id)
        for table, frame in checked.items()
    }


def switch_tables(spark: SparkSession, warehouse: SparkWarehouse, written: dict[str, str]) -> None:
    """Point each ``ml`` table at its new version, then remove the versions older than
    the one it pointed at until now (kept for readers still in it); a version written
    by a run that died before its switch is removed too."""
    previous = {table: _location(spark, table) for table in written}
    for table, location in written.items():
        _switch(spark, table, location)
    for table, location in written.items():
        _prune(warehouse, table, keep={location, previous[table]})


def _write_version(
    spark: SparkSession,
    warehouse: SparkWarehouse,
    table: str,
    frame: DataFrame,
    run_id: str,
    create: bool = False,
) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:24] or "run"
    version = f"{stamp}-{tag}-{uuid.uuid4().hex[:6]}"
    location = _checked_location(f"{versions_root(warehouse, table)}/{version}")
    frame.write.mode("errorifexists").parquet(location)
    if create:
        spark.sql(
            f"create table if not exists ml.{table} ({spark_schema(table)}) "
            f"using parquet location '{location}'"
        )
    return location


def _switch(spark: SparkSession, table: str, location: str) -> None:
    spark.sql(f"alter table ml.{table} set location '{_checked_location(location)}'")
    spark.sql(f"refresh table ml.{table}")


def _location(spark: SparkSession, table: str) -> str:
    """Where ``ml.<table>`` points now (its current version's folder)."""
    rows = spark.sql(f"describe table extended ml.{table}").collect()
    for row in rows:
        if row["col_name"] == "Location":
            return str(row["data_type"])
    return ""


def _prune(warehouse: SparkWarehouse, table: str, keep: set[str]) -> None:
    """Remove the versions of ``table`` but those in ``keep`` (local folders only: on a
    cluster's object store they are left to its lifecycle rules)."""
    root = versions_root(warehouse, table)
    if "://" in root and not root.startswith("file:"):
        return
    folder = Path(root.removeprefix("file:"))
    if not folder.is_dir():
        return
    kept = {Path(k.removeprefix("file:")).name for k in keep if k}
    for version in folder.iterdir():
        if version.is_dir() and _VERSION.match(version.name) and version.name not in kept:
            shutil.rmtree(version, ignore_errors=True)


def table_frame(spark: SparkSession, table: str) -> Any:
    """``ml.<table>`` as a DataFrame (read afresh)."""
    spark.sql(f"refresh table ml.{table}")
    return spark.table(f"ml.{table}")
