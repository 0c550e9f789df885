"""Copy a DuckDB warehouse's sources (schemas ``raw`` and ``ml``) into a Spark catalog.

The Spark loader and the ``ml`` writers of the Spark target are not written yet, and
the dbt tests of the Spark target need their inputs now: exactly the tables a DuckDB
run produced, so that whatever dbt builds on Spark can be compared with what it built
on DuckDB from the very same rows. Each table goes DuckDB -> Arrow ->
``spark.createDataFrame`` -> a Parquet table of the Spark database of the same name,
with the Spark type that says what the DuckDB type says (a ``TIMESTAMP`` without time
zone stays a timestamp without time zone: ``timestamp_ntz``, not a UTC instant).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from models_py.locations import DUCKDB_CONFIG

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCHEMAS = ("raw", "ml")

# DuckDB type -> Spark type, for the types the raw and ml tables use. JSON is text that
# holds JSON (Spark has no JSON column type; dbt reads it as text on every engine).
_SIMPLE_TYPES = {
    "VARCHAR": "string",
    "JSON": "string",
    "BOOLEAN": "boolean",
    "INTEGER": "int",
    "BIGINT": "bigint",
    "SMALLINT": "smallint",
    "DOUBLE": "double",
    "FLOAT": "float",
    "DATE": "date",
    "TIMESTAMP": "timestamp_ntz",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def spark_type(duckdb_type: str) -> str:
    """The Spark SQL type of a DuckDB column type; an unknown type fails naming it."""
    decimal = _DECIMAL.fullmatch(duckdb_type)
    if decimal:
        return f"decimal({decimal.group(1)},{decimal.group(2)})"
    if duckdb_type in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[duckdb_type]
    raise ValueError(f"spark_seed: no Spark type for DuckDB type {duckdb_type!r}")


def _identifier(name: str, what: str) -> str:
    """A table or column name that may be written into DDL as it is (checked, since
    names come from the DuckDB file)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"spark_seed: {what} name {name!r} is not a plain identifier")
    return name


# The raw tables the Spark loader keys by load (orchestration/spark_loader.py): the
# staging models read only the load ids raw.loaded_files names.
LOAD_ID_TABLES = frozenset({"transactions", "quarantined_rows", "loaded_files"})
SEED_LOAD_ID = "seeded"


def seed_spark_from_duckdb(duckdb_file: Path, spark: SparkSession) -> dict[str, int]:
    """Copy every table of schemas raw and ml of ``duckdb_file`` into the Spark
    databases raw and ml as Parquet tables (replaced if they exist), with the same
    column names, order and types (raw's row tables and ledger gain the Spark loader's
    ``load_id``, one for all). Returns the rows copied per ``schema.table``."""
    from pyspark.sql import functions as F

    con = duckdb.connect(str(duckdb_file), read_only=True, config=DUCKDB_CONFIG)
    copied: dict[str, int] = {}
    try:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'ml') and table_type = 'BASE TABLE' "
            "order by table_schema, table_name"
        ).fetchall()
        for schema in SCHEMAS:
            spark.sql(f"create database if not exists {schema}")
        for schema, table in tables:
            columns = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, table],
            ).fetchall()
            names = [_identifier(name, "column") for name, _ in columns]
            _identifier(table, "table")
            # JSON columns travel as text; everything else as DuckDB's own Arrow type.
            select = ", ".join(
                f'cast("{name}" as varchar) as "{name}"' if kind == "JSON" else f'"{name}"'
                for name, kind in columns
            )
            arrow = con.sql(f'select {select} from "{schema}"."{table}"').to_arrow_table()
            schema_ddl = ", ".join(
                f"`{name}` {spark_type(kind)}"
                for name, kind in zip(names, [k for _, k in columns], strict=True)
            )
            frame = spark.createDataFrame(arrow, schema=schema_ddl)
            # Spark may infer wider types on the way in; cast every column to the exact one.
            frame = frame.select(
                *[
                    F.col(f"`{name}`").cast(spark_type(kind)).alias(name)
                    for name, (_, kind) in zip(names, columns, strict=True)
                ]
            )
            if schema == "raw" and table in LOAD_ID_TABLES:
                # The Spark loader's layout: every row of one (committed) load.
                frame = frame.withColumn("load_id", F.lit(SEED_LOAD_ID))
            frame.write.format("parquet").mode("overwrite").saveAsTable(f"{schema}.{table}")
            copied[f"{schema}.{table}"] = arrow.num_rows
    finally:
        con.close()
    return copied
