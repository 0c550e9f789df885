"""The ``ml`` schema on Spark: the same tables as ``orchestration.ml_tables``, all the
tables a step writes switched to their new versions at once.

Parquet tables have no transactions. So a writer never changes a version's files:

- Each table's versions are the partitions of ``ml_store.<table>`` (partitioned by
  ``version``): a writer writes the new rows to a new folder,
  ``<tables>/ml_versions/<table>/<version>`` (the version names the time and the run),
  and adds it as a partition that nobody reads yet.
- ``ml.current_versions`` says which version of each table is current, and
  ``ml.<table>`` is a view of that version. A step's switch writes a new pointer and
  points ``ml.current_versions`` at it with ONE metastore operation (``alter table ...
  set location``): every table the step wrote changes at that instant, together. A
  reader sees the previous versions or the new ones, never a mix; a run killed before
  the switch leaves the previous ones (its folders are orphans, removed by the next
  write).
- The previous version of each table is kept for readers still in it; older ones are
  removed.
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
STORE = "ml_store"  # the versions: one table per ml table, partitioned by version
POINTER = "ml.current_versions"  # (table_name, version): what the views show
_POINTER_SCHEMA = "table_name string, version string"
_POINTER_DIR = "_current"  # the pointer's own versions, beside the tables'
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


def ensure_ml_tables(spark: SparkSession, warehouse: SparkWarehouse) -> None:
    """Create ``ml``, its versions and the pointer where missing (empty first versions),
    add the columns an older warehouse lacks, adopt the tables of an older layout (one
    table per ``ml`` table, its location switched) as versions, drop retired tables."""
    spark.sql("create database if not exists ml")
    spark.sql(f"create database if not exists {STORE}")
    existing = {t.name: t.tableType for t in _tables(spark, "ml")}
    stored = {t.name for t in _tables(spark, STORE)}
    if POINTER.split(".")[1] not in existing:
        empty = spark.createDataFrame([], _POINTER_SCHEMA)
        location = _write_pointer(warehouse, empty)
        spark.sql(f"create table {POINTER} ({_POINTER_SCHEMA}) using parquet location '{location}'")
    current = current_versions(spark)
    # First every version is registered and the pointer switched to them; only then
    # are the older layout's tables replaced by views: a failure in between leaves
    # tables or views the pointer already knows (a rerun adopts the rest again).
    fresh: dict[str, str] = {}
    for table in ML_COLUMNS:
        if table not in stored:
            spark.sql(
                f"create table {STORE}.{table} ({spark_schema(table)}, version string) "
                f"using parquet partitioned by (version) "
                f"location '{_checked_location(versions_root(warehouse, table))}'"
            )
        if existing.get(table, "VIEW") != "VIEW":  # the older layout: copy it as a version
            rows = conformed(_fitted(spark.table(f"ml.{table}"), table), table)
            location = _write_version(warehouse, table, rows, "adopted")
            fresh[table] = _add_version(spark, table, location)
        elif table not in current:
            empty = spark.createDataFrame([], spark_schema(table))
            location = _write_version(warehouse, table, empty, "initial")
            fresh[table] = _add_version(spark, table, location)
    if fresh:
        _switch_pointer(spark, warehouse, {**current, **fresh})
    for table, columns in ML_COLUMNS.items():
        if existing.get(table, "VIEW") != "VIEW":
            spark.sql(f"drop table ml.{table}")  # its rows are a version now
        present = {f.name for f in spark.table(f"{STORE}.{table}").schema.fields}
        missing = [n for n in columns if n not in present]
        if missing:
            added = ", ".join(f"{n} {spark_type(columns[n])}" for n in missing)
            spark.sql(f"alter table {STORE}.{table} add columns ({added})")
        if missing or existing.get(table) != "VIEW":
            _create_view(spark, table)
    for table in RETIRED_TABLES:
        if table in existing:
            spark.sql(f"drop {'view' if existing[table] == 'VIEW' else 'table'} ml.{table}")
        if table in stored:
            spark.sql(f"drop table {STORE}.{table}")


def _fitted(frame: DataFrame, table: str) -> DataFrame:
    """An older table's rows with ``ml.<table>``'s columns: those it lacks as nulls,
    those it no longer has left out."""
    from pyspark.sql import functions as F

    columns = ML_COLUMNS[table]
    return frame.select(
        *[F.col(c) if c in frame.columns else F.lit(None).alias(c) for c in columns]
    )


def _tables(spark: SparkSession, database: str) -> list[Any]:
    if not spark.catalog.databaseExists(database):
        return []
    return [t for t in spark.catalog.listTables(database) if not t.isTemporary]


def _create_view(spark: SparkSession, table: str) -> None:
    """``ml.<table>``: the current version's rows, as the pointer says."""
    columns = ", ".join(ML_COLUMNS[table])
    spark.sql(
        f"create or replace view ml.{table} as select {columns} from {STORE}.{table} "
        f"where version = (select max(version) from {POINTER} where table_name = '{table}')"
    )


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
    is written first, then all are switched at once, so a failure while writing
    changes no table."""
    switch_tables(spark, warehouse, write_versions(spark, warehouse, frames, run_id))


def write_versions(
    spark: SparkSession, warehouse: SparkWarehouse, frames: dict[str, DataFrame], run_id: str
) -> dict[str, str]:
    """Write each frame as a new version of its ``ml`` table (nobody reads it yet);
    the versions' locations by table."""
    checked = {table: conformed(frame, table) for table, frame in frames.items()}
    return {
        table: _write_version(warehouse, table, frame, run_id) for table, frame in checked.items()
    }


def switch_tables(spark: SparkSession, warehouse: SparkWarehouse, written: dict[str, str]) -> None:
    """Make the versions ``written`` (by :func:`write_versions`) current, all in ONE
    metastore operation (the pointer's switch); then remove each table's versions but
    the new one and the one it replaced (kept for readers still in it), a version
    written by a run that died before its switch included."""
    previous = current_versions(spark)
    added = {table: _add_version(spark, table, location) for table, location in written.items()}
    _switch_pointer(spark, warehouse, {**previous, **added})
    for table, version in added.items():
        spark.sql(f"refresh table ml.{table}")
        _prune(spark, warehouse, table, keep={version, previous.get(table, "")})


def current_versions(spark: SparkSession) -> dict[str, str]:
    """The current version of each ``ml`` table (the pointer's rows)."""
    spark.sql(f"refresh table {POINTER}")
    return {r["table_name"]: r["version"] for r in spark.table(POINTER).collect()}


def current_location(spark: SparkSession, warehouse: SparkWarehouse, table: str) -> str:
    """The folder of ``ml.<table>``'s current version."""
    return f"{versions_root(warehouse, table)}/{current_versions(spark)[table]}"


def _write_version(warehouse: SparkWarehouse, table: str, frame: DataFrame, run_id: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tag = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)[:24] or "run"
    version = f"{stamp}-{tag}-{uuid.uuid4().hex[:6]}"
    location = _checked_location(f"{versions_root(warehouse, table)}/{version}")
    frame.write.mode("errorifexists").parquet(location)
    return location


def _add_version(spark: SparkSession, table: str, location: str) -> str:
    """Register the folder ``location`` as a version (a partition) of ``table``; its
    name (the folder's)."""
    version = location.rstrip("/").rsplit("/", 1)[-1]
    if not _VERSION.match(version):
        raise ValueError(f"ml.{table}: not a version folder: {location}")
    spark.sql(
        f"alter table {STORE}.{table} add if not exists partition (version = '{version}') "
        f"location '{_checked_location(location)}'"
    )
    return version


def _write_pointer(warehouse: SparkWarehouse, rows: DataFrame) -> str:
    return _write_version(warehouse, _POINTER_DIR, rows.coalesce(1), "pointer")


def _switch_pointer(
    spark: SparkSession, warehouse: SparkWarehouse, versions: dict[str, str]
) -> None:
    """Point ``ml.current_versions`` at a new pointer holding ``versions``: the one
    operation that switches every table at once. The pointer it replaced is kept."""
    previous = _table_location(spark, POINTER)
    rows = spark.createDataFrame(sorted(versions.items()), _POINTER_SCHEMA)
    location = _write_pointer(warehouse, rows)
    spark.sql(f"alter table {POINTER} set location '{_checked_location(location)}'")
    spark.sql(f"refresh table {POINTER}")
    _remove_folders(warehouse, _POINTER_DIR, keep={_name(location), _name(previous)})


def _table_location(spark: SparkSession, relation: str) -> str:
    """Where a table's files are (``describe table extended``'s Location)."""
    for row in spark.sql(f"describe table extended {relation}").collect():
        if row["col_name"] == "Location":
            return str(row["data_type"])
    return ""


def _name(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


def _prune(spark: SparkSession, warehouse: SparkWarehouse, table: str, keep: set[str]) -> None:
    """Drop the versions (partitions) of ``table`` but those in ``keep``, and remove
    their folders."""
    for row in spark.sql(f"show partitions {STORE}.{table}").collect():
        version = str(row[0]).removeprefix("version=")
        if version not in keep and _VERSION.match(version):
            spark.sql(
                f"alter table {STORE}.{table} drop if exists partition (version = '{version}')"
            )
    _remove_folders(warehouse, table, keep)


def _remove_folders(warehouse: SparkWarehouse, table: str, keep: set[str]) -> None:
    """Remove the version folders of ``table`` but those in ``keep`` (local folders
    only: on a cluster's object store they are left to its lifecycle rules)."""
    root = versions_root(warehouse, table)
    if "://" in root and not root.startswith("file:"):
        return
    folder = Path(root.removeprefix("file:"))
    if not folder.is_dir():
        return
    for version in folder.iterdir():
        if version.is_dir() and _VERSION.match(version.name) and version.name not in keep:
            shutil.rmtree(version, ignore_errors=True)


def table_frame(spark: SparkSession, table: str) -> Any:
    """``ml.<table>`` as a DataFrame (read afresh)."""
    spark.sql(f"refresh table ml.{table}")
    return spark.table(f"ml.{table}")
