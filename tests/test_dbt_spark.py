"""The dbt project on the ``spark`` target gives what it gives on DuckDB.

One DuckDB warehouse is made by a real ``insiders run`` over the synthetic demo data
(the reference: raw, ml and every dbt table). Its sources (schemas raw and ml) are
copied into a local Spark warehouse (tests/spark_seed.py), dbt builds everything there
(models, seeds, data tests and unit tests; ANSI mode on, as Spark 4 has it), and every
table of marts and insiders is compared with DuckDB's, value by value. The Spark
session and the build are shared by the module (Spark tests must be economical).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from models_py.locations import DUCKDB_CONFIG
from tests.conftest import environ_restored
from tests.spark_seed import seed_spark_from_duckdb, spark_type

COMPARED_SCHEMAS = ("marts", "insiders")
INCREMENTAL_MODELS = ("fct_transactions", "fct_transaction_exclusions")
REL_TOL = 1e-9
ABS_TOL = 1e-9


@dataclass
class Reference:
    """The DuckDB warehouse of a complete demo run, and how long a dbt build took on it."""

    file: Path
    build_seconds: float


@dataclass
class SparkBuild:
    """The Spark warehouse after one dbt build from the reference's sources."""

    spark: Any
    warehouse: Any
    success: bool
    failures: list[str]
    build_seconds: float
    unit_tests: int


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, spark_reference: tuple[Path, Path]
) -> Reference:
    """A real ``insiders run`` (load, dbt, clustering, evaluation, marts) on DuckDB: the
    session's reference run (tests/conftest.py)."""
    from orchestration.dbt_runner import invoke

    root = tmp_path_factory.mktemp("spark_reference_timed")
    warehouse = spark_reference[0]
    # The DuckDB side of the measurement: the same `dbt build` on a copy (the run left
    # its sources and tables), so the reference itself is not touched.
    timed = root / "timed" / "warehouse.duckdb"
    timed.parent.mkdir()
    shutil.copy(warehouse, timed)
    with environ_restored():
        started = time.perf_counter()
        outcome = invoke("build", timed, {})
        seconds = time.perf_counter() - started
    assert outcome.success, outcome.failures
    return Reference(file=warehouse, build_seconds=seconds)


@pytest.fixture(scope="module")
def spark_build(
    reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SparkBuild]:
    """The reference's raw and ml tables copied into Spark, then one ``dbt build`` of
    everything (unit tests included) with the run's vars (none: as_of and the
    Insiders' definition are decided from the data, as the demo run did)."""
    from orchestration.dbt_runner import invoke
    from orchestration.spark import SparkWarehouse, session, stop_session

    warehouse = SparkWarehouse(tmp_path_factory.mktemp("spark_wh"))
    with environ_restored():
        spark = session(warehouse)
        seed_spark_from_duckdb(reference.file, spark)
        started = time.perf_counter()
        outcome = invoke("build", warehouse, {})
        seconds = time.perf_counter() - started
    unit_tests = sum(
        1
        for event in outcome.events
        if event.get("data", {}).get("node_info", {}).get("resource_type") == "unit_test"
        or "unit_test." in str(event.get("data", {}).get("node_info", {}).get("unique_id", ""))
    )
    print(
        f"\ndbt build on the demo data (300 customers): Spark {seconds:.1f} s, "
        f"DuckDB {reference.build_seconds:.1f} s"
    )
    yield SparkBuild(spark, warehouse, outcome.success, outcome.failures, seconds, unit_tests)
    stop_session()


def _duckdb_tables(file: Path) -> dict[str, list[str]]:
    con = duckdb.connect(str(file), read_only=True, config=DUCKDB_CONFIG)
    try:
        rows = con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('marts', 'insiders') and table_type = 'BASE TABLE' "
            "order by 1, 2"
        ).fetchall()
    finally:
        con.close()
    tables: dict[str, list[str]] = {}
    for schema, table in rows:
        tables.setdefault(schema, []).append(table)
    return tables


def _duckdb_rows(file: Path, relation: str) -> list[dict[str, Any]]:
    schema, table = relation.split(".")
    con = duckdb.connect(str(file), read_only=True, config=DUCKDB_CONFIG)
    try:
        return con.sql(f'select * from "{schema}"."{table}"').to_arrow_table().to_pylist()
    finally:
        con.close()


def _spark_rows(spark: Any, relation: str) -> list[dict[str, Any]]:
    return spark.table(relation).toArrow().to_pylist()


def _value(value: Any) -> Any:
    """One cell as a comparable Python value: numbers as float, instants as naive UTC
    datetimes, days as dates, nulls (None, NaN) as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal | int | float):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value
    if isinstance(value, date):
        return value
    return value


def _sort_key(row: tuple[Any, ...]) -> tuple[str, ...]:
    """Floats rounded for ordering only, so that 1e-12 apart does not reorder rows."""
    return tuple(f"{cell:.6e}" if isinstance(cell, float) else repr(cell) for cell in row)


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return bool(left == right)


def _lower_keys(row: dict[str, Any]) -> dict[str, Any]:
    """Spark's column names as DuckDB's (the metastore lower-cases them anyway)."""
    return {key.lower(): value for key, value in row.items()}


def _differences(duck: list[dict[str, Any]], spark: list[dict[str, Any]]) -> list[str]:
    """What differs between two tables' rows (columns by name, rows in any order)."""
    if not duck and not spark:
        return []
    duck_columns = sorted(duck[0]) if duck else []
    spark_columns = sorted(c.lower() for c in spark[0]) if spark else []
    if duck and spark and duck_columns != spark_columns:
        return [f"columns differ: duckdb {duck_columns}, spark {spark_columns}"]
    if len(duck) != len(spark):
        return [f"row counts differ: duckdb {len(duck)}, spark {len(spark)}"]
    columns = duck_columns
    left = sorted((tuple(_value(row[c]) for c in columns) for row in duck), key=_sort_key)
    right = sorted(
        (
            tuple(_value({k.lower(): v for k, v in row.items()}[c]) for c in columns)
            for row in spark
        ),
        key=_sort_key,
    )
    problems = []
    for number, (a, b) in enumerate(zip(left, right, strict=True)):
        for column, x, y in zip(columns, a, b, strict=True):
            if not _same(x, y):
                problems.append(f"row {number} column {column}: duckdb {x!r}, spark {y!r}")
    return problems[:10]


def test_dbt_build_on_spark_passes_every_model_seed_data_and_unit_test(
    spark_build: SparkBuild,
) -> None:
    assert spark_build.success, "\n".join(spark_build.failures)
    # Unit tests ran (not excluded): the project has them, each reported a result.
    assert spark_build.unit_tests > 0


def test_dim_customers_is_the_same_on_spark_and_duckdb(
    reference: Reference, spark_build: SparkBuild
) -> None:
    con = duckdb.connect(str(reference.file), read_only=True, config=DUCKDB_CONFIG)
    try:
        duck = con.sql("select * from marts.dim_customers").df()
    finally:
        con.close()
    spark = spark_build.spark.table("marts.dim_customers").toPandas()
    assert len(duck) > 0
    assert sorted(spark.columns) == sorted(duck.columns)
    duck = duck.sort_values("customer_id").reset_index(drop=True)
    spark = spark[list(duck.columns)].sort_values("customer_id").reset_index(drop=True)
    for column in duck.columns:
        left, right = duck[column], spark[column]
        if pd.api.types.is_datetime64_any_dtype(left) or column == "as_of":
            pd.testing.assert_series_equal(
                pd.to_datetime(left).astype("datetime64[us]"),
                pd.to_datetime(right).astype("datetime64[us]"),
                check_names=False,
            )
        elif pd.api.types.is_numeric_dtype(left) and not pd.api.types.is_bool_dtype(left):
            pd.testing.assert_series_equal(
                left.astype(float),
                right.astype(float),
                check_names=False,
                rtol=REL_TOL,
                atol=ABS_TOL,
            )
        else:
            assert left.tolist() == right.tolist(), column


def test_dim_customers_contract_types_on_spark_are_duckdbs(
    reference: Reference, spark_build: SparkBuild
) -> None:
    """The enforced contract gives Spark the types that mean what DuckDB's mean
    (varchar -> string, timestamp -> timestamp_ntz, decimal(18,4) stays)."""
    con = duckdb.connect(str(reference.file), read_only=True, config=DUCKDB_CONFIG)
    try:
        duck = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'marts' and table_name = 'dim_customers'"
        ).fetchall()
    finally:
        con.close()
    expected = {name: spark_type(kind) for name, kind in duck}
    actual = {
        field.name: field.dataType.simpleString()
        for field in spark_build.spark.table("marts.dim_customers").schema.fields
    }
    assert actual == expected


def test_every_marts_and_insiders_table_is_the_same_on_spark_and_duckdb(
    reference: Reference, spark_build: SparkBuild
) -> None:
    tables = _duckdb_tables(reference.file)
    assert set(tables) == set(COMPARED_SCHEMAS)
    problems: dict[str, list[str]] = {}
    compared_rows = 0
    for schema, names in tables.items():
        spark_names = {
            row.tableName for row in spark_build.spark.sql(f"show tables in {schema}").collect()
        }
        for name in names:
            relation = f"{schema}.{name}"
            if name not in spark_names:
                problems[relation] = ["missing on Spark"]
                continue
            duck_rows = _duckdb_rows(reference.file, relation)
            compared_rows += len(duck_rows)
            found = _differences(duck_rows, _spark_rows(spark_build.spark, relation))
            if found:
                problems[relation] = found
    assert not problems, problems
    # Not a comparison of empty tables: the demo run answered the nine questions.
    assert compared_rows > 10_000
    assert len(_spark_rows(spark_build.spark, "insiders.answers")) == 9


def test_second_incremental_build_changes_nothing(spark_build: SparkBuild) -> None:
    """The incremental line marts built again (insert_overwrite by source_file on
    Spark) with nothing new loaded: the same rows, the same partitions."""
    from orchestration.dbt_runner import invoke

    spark = spark_build.spark
    before = {m: _spark_rows(spark, f"marts.{m}") for m in INCREMENTAL_MODELS}
    partitions = {
        m: sorted(r[0] for r in spark.sql(f"show partitions marts.{m}").collect())
        for m in INCREMENTAL_MODELS
    }
    with environ_restored():
        outcome = invoke(
            "build",
            spark_build.warehouse,
            {},
            ["--select", *INCREMENTAL_MODELS],
        )
    assert outcome.success, outcome.failures
    for model in INCREMENTAL_MODELS:
        assert _differences(before[model], _spark_rows(spark, f"marts.{model}")) == []
        after = sorted(r[0] for r in spark.sql(f"show partitions marts.{model}").collect())
        assert after == partitions[model]
