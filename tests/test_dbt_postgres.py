"""The dbt project on PostgreSQL gives the same marts as on DuckDB.

The whole graph runs on DuckDB over synthetic demo data (``insiders run``: loader,
dbt, clustering, analytics); a DEV-ONLY copier below puts its ``raw`` and ``ml``
tables into a fresh PostgreSQL database (the real PostgreSQL loader and ``ml`` writer
are separate work); then a real ``dbt build --target postgres`` (seeds, models, data
tests and unit tests) must succeed there, and every table of schemas ``marts`` and
``insiders`` must equal DuckDB's: same columns, same rows, floats to 1e-9 relative,
text exactly. So a model whose SQL means something else on PostgreSQL (integer
division, NULL ordering, a float formatted differently) fails here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from models_py.locations import DUCKDB_CONFIG

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT = REPO_ROOT / ".venv" / "bin" / "dbt"
COMPARED_SCHEMAS = ("marts", "insiders")
# The tables dbt seeds itself (schema raw): not copied, dbt loads them on PostgreSQL.
SEED_TABLES = frozenset(path.stem for path in (REPO_ROOT / "dbt_project" / "seeds").glob("*.csv"))
FLOAT_TOLERANCE = 1e-9

# DuckDB type -> PostgreSQL type, for the dev-only copy (types the loader and the ml
# writers use; anything else fails loudly).
_PG_TYPES = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "JSON": "json",
}


def _pg_type(duckdb_type: str) -> str:
    if duckdb_type.startswith("DECIMAL"):
        return duckdb_type.replace("DECIMAL", "numeric")
    if duckdb_type not in _PG_TYPES:
        raise ValueError(f"no PostgreSQL type for DuckDB type {duckdb_type}")
    return _PG_TYPES[duckdb_type]


def copy_to_postgres(
    warehouse: Path, conninfo: str = "", schemas: Sequence[str] = ("raw", "ml")
) -> dict[str, int]:
    """DEV-ONLY: copy every table of ``schemas`` (but dbt's seeds) from a DuckDB
    warehouse into PostgreSQL (libpq's PG* variables, or ``conninfo``): the tables are
    created with mapped types and lower-case column names (what unquoted identifiers
    in the models resolve to on PostgreSQL), and filled with ``COPY ... FROM STDIN`` from
    a CSV file DuckDB writes. Returns the rows copied per table."""
    import psycopg
    from psycopg import sql

    con = duckdb.connect(str(warehouse), read_only=True, config=DUCKDB_CONFIG)
    copied: dict[str, int] = {}
    try:
        columns = con.execute(
            "select table_schema, table_name, column_name, data_type"
            " from information_schema.columns"
            " where table_catalog = current_database() and table_schema in ?"
            " order by table_schema, table_name, ordinal_position",
            [list(schemas)],
        ).fetchall()
        tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, data_type in columns:
            if schema == "raw" and table in SEED_TABLES:
                continue
            tables.setdefault((schema, table), []).append((column, data_type))
        with psycopg.connect(conninfo) as pg, tempfile.TemporaryDirectory() as tmp:
            for schema in schemas:
                pg.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
            for (schema, table), table_columns in tables.items():
                target = sql.Identifier(schema, table)
                pg.execute(
                    sql.SQL("create table {} ({})").format(
                        target,
                        sql.SQL(", ").join(
                            sql.SQL("{} {}").format(
                                sql.Identifier(name.lower()), sql.SQL(_pg_type(data_type))
                            )
                            for name, data_type in table_columns
                        ),
                    )
                )
                # Names from the warehouse's catalog and our own temporary path: COPY TO
                # takes no bind parameter for them.
                csv_path = Path(tmp) / f"{schema}.{table}.csv"
                con.execute(f'copy (select * from "{schema}"."{table}") to \'{csv_path}\' (header)')
                with pg.cursor() as cursor:
                    with (
                        cursor.copy(
                            sql.SQL("copy {} from stdin (format csv, header true)").format(target)
                        ) as copy,
                        csv_path.open("rb") as handle,
                    ):
                        while block := handle.read(1 << 20):
                            copy.write(block)
                    copied[f"{schema}.{table}"] = cursor.rowcount
    finally:
        con.close()
    return copied


def dbt_build_postgres(target_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``dbt build --target postgres`` (seeds, models, data and unit tests) in a
    subprocess, with the PG* variables of the environment."""
    return subprocess.run(
        [
            str(DBT),
            "build",
            "--project-dir",
            str(REPO_ROOT / "dbt_project"),
            "--profiles-dir",
            str(REPO_ROOT / "profiles"),
            "--target",
            "postgres",
            "--target-path",
            str(target_path / "target"),
            "--log-path",
            str(target_path / "logs"),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )


Rows = list[tuple[Any, ...]]


def duckdb_tables(warehouse: Path, schemas: Sequence[str] = COMPARED_SCHEMAS) -> dict[str, Rows]:
    """Every table of ``schemas``: its rows, columns in name order, a header row first."""
    con = duckdb.connect(str(warehouse), read_only=True, config=DUCKDB_CONFIG)
    try:
        names = con.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_catalog = current_database() and table_schema in ?"
            " and table_type = 'BASE TABLE'",
            [list(schemas)],
        ).fetchall()
        out = {}
        for schema, table in names:
            columns = sorted(
                row[0]
                for row in con.execute(
                    "select column_name from information_schema.columns"
                    " where table_catalog = current_database()"
                    " and table_schema = ? and table_name = ?",
                    [schema, table],
                ).fetchall()
            )
            select = ", ".join(f'"{c}"' for c in columns)
            rows = con.execute(f'select {select} from "{schema}"."{table}"').fetchall()
            out[f"{schema}.{table}"] = [tuple(columns), *rows]
        return out
    finally:
        con.close()


def postgres_tables(
    conninfo: str = "", schemas: Sequence[str] = COMPARED_SCHEMAS
) -> dict[str, Rows]:
    """The same as :func:`duckdb_tables`, from PostgreSQL (json columns as text)."""
    import psycopg
    from psycopg import sql

    out = {}
    with psycopg.connect(conninfo) as pg:
        names = pg.execute(
            "select table_schema, table_name from information_schema.tables"
            " where table_schema = any(%s) and table_type = 'BASE TABLE'",
            [list(schemas)],
        ).fetchall()
        for schema, table in names:
            columns = sorted(
                (row[0], row[1])
                for row in pg.execute(
                    "select column_name, data_type from information_schema.columns"
                    " where table_schema = %s and table_name = %s",
                    [schema, table],
                ).fetchall()
            )
            select = sql.SQL(", ").join(
                sql.SQL("{}::text").format(sql.Identifier(name))
                if data_type in ("json", "jsonb")
                else sql.Identifier(name)
                for name, data_type in columns
            )
            rows = pg.execute(
                sql.SQL("select {} from {}").format(select, sql.Identifier(schema, table))
            ).fetchall()
            out[f"{schema}.{table}"] = [tuple(name for name, _ in columns), *rows]
    return out


def _kind(value: Any) -> str:
    """The family of a value, as BI sees it: an exact number and a float are not the
    same column type, nor are a date and a timestamp."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, float):
        return "float"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, date):
        return "date"
    return "text"


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Rows in a stable order on both engines: floats rounded, so that a last-bit
    difference does not reorder them."""
    return tuple(
        (0, "")
        if value is None
        else (1, f"{value:.6e}")
        if isinstance(value, float)
        else (1, str(value))
        for value in row
    )


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return math.isclose(left, right, rel_tol=FLOAT_TOLERANCE, abs_tol=1e-12)
    if isinstance(left, str) and isinstance(right, str) and left[:1] in "{[":
        try:
            return json.loads(left) == json.loads(right)
        except ValueError:
            pass
    return _kind(left) == _kind(right) and left == right


def table_differences(expected: Rows, actual: Rows, limit: int = 5) -> list[str]:
    """What differs between two tables (header row first): columns, row counts,
    column types (by the Python type of their values) and values."""
    if expected[0] != actual[0]:
        return [f"columns differ: {expected[0]} != {actual[0]}"]
    header = expected[0]
    left, right = sorted(expected[1:], key=_sort_key), sorted(actual[1:], key=_sort_key)
    if len(left) != len(right):
        return [f"{len(left)} rows != {len(right)} rows"]
    problems: list[str] = []
    for index, column in enumerate(header):
        kinds = {_kind(row[index]) for row in left} - {"null"}
        other = {_kind(row[index]) for row in right} - {"null"}
        if kinds and other and kinds != other:
            problems.append(f"column {column}: {sorted(kinds)} != {sorted(other)}")
    for row_left, row_right in zip(left, right, strict=True):
        for column, a, b in zip(header, row_left, row_right, strict=True):
            if not _same(a, b):
                problems.append(f"column {column}: {a!r} != {b!r} (row {row_left})")
                break
        if len(problems) >= limit:
            break
    return problems


def compare_warehouses(warehouse: Path, conninfo: str = "") -> dict[str, list[str]]:
    """Per table of marts and insiders, what differs between DuckDB and PostgreSQL."""
    expected, actual = duckdb_tables(warehouse), postgres_tables(conninfo)
    differences = {
        name: table_differences(expected[name], actual[name])
        for name in sorted(set(expected) & set(actual))
    }
    for name in sorted(set(expected) ^ set(actual)):
        differences[name] = ["only in " + ("DuckDB" if name in expected else "PostgreSQL")]
    return {name: found for name, found in differences.items() if found}


@pytest.fixture(scope="module")
def demo_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole graph on DuckDB over synthetic data (labels, evaluation, forecasts in
    ``ml``; every mart built), once for the module."""
    from models_py.demo_data import write_demo_data
    from orchestration.cli import main
    from tests.conftest import environ_restored

    root = tmp_path_factory.mktemp("pg_demo")
    demo = write_demo_data(root / "data", customers=300, seed=11, layout="kaggle")
    warehouse = root / "wh" / "warehouse.duckdb"
    with environ_restored():
        assert main(["run", "--warehouse", str(warehouse), "--source", str(demo.path)]) == 0
    return warehouse


def _line_marts(conninfo: str = "") -> dict[str, Rows]:
    """The incremental line marts of PostgreSQL, as :func:`postgres_tables` gives them."""
    tables = postgres_tables(conninfo, ("marts",))
    return {
        name: tables[name]
        for name in ("marts.fct_transactions", "marts.fct_transaction_exclusions")
    }


def test_postgres_build_equals_duckdb(demo_graph: Path, pg_database: str, tmp_path: Path) -> None:
    copied = copy_to_postgres(demo_graph)
    assert copied["raw.transactions"] > 1000 and copied["ml.customer_segments"] > 100

    result = dbt_build_postgres(tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    # Seeds, models, data tests and unit tests all ran on PostgreSQL, none skipped.
    assert "ERROR=0 SKIP=0" in result.stdout, result.stdout[-3000:]
    for started in ("seed file", "unit_test", "test", "sql table model", "sql incremental model"):
        assert f"START {started} " in result.stdout, started

    expected = duckdb_tables(demo_graph)
    assert {"marts.dim_customers", "insiders.answers", "insiders.kpis"} <= set(expected)
    assert compare_warehouses(demo_graph) == {}
    # The seeds load with the same types and values.
    seeds = [f"raw.{name}" for name in sorted(SEED_TABLES)]
    raw_duckdb, raw_postgres = duckdb_tables(demo_graph, ("raw",)), postgres_tables("", ("raw",))
    assert {name: table_differences(raw_duckdb[name], raw_postgres[name]) for name in seeds} == {
        name: [] for name in seeds
    }


def test_postgres_incremental_lines_equal_a_full_rebuild_after_a_rule_change(
    demo_graph: Path, pg_database: str, tmp_path: Path
) -> None:
    """delete+insert on source_file and the post-hook that deletes stale rows work on
    PostgreSQL: after a change of rule (a new rules_version), an incremental build
    equals a --full-refresh build."""
    copy_to_postgres(demo_graph)
    select = ["--select", "+fct_transactions", "+fct_transaction_exclusions"]
    select += ["--indirect-selection", "cautious"]  # no test of an unselected model
    assert dbt_build_postgres(tmp_path, *select).returncode == 0
    before = _line_marts()
    changed = ["--vars", "{unit_price_floor: 1.0}"]
    result = dbt_build_postgres(tmp_path, *select, *changed)
    assert result.returncode == 0, result.stdout[-6000:]
    incremental = _line_marts()
    kept, excluded = "marts.fct_transactions", "marts.fct_transaction_exclusions"
    # Lines under the new floor moved from the kept lines to the exclusions.
    assert len(incremental[kept]) < len(before[kept])
    assert len(incremental[excluded]) > len(before[excluded])
    result = dbt_build_postgres(tmp_path, *select, *changed, "--full-refresh")
    assert result.returncode == 0, result.stdout[-6000:]
    rebuilt = _line_marts()
    assert {name: table_differences(rebuilt[name], incremental[name]) for name in rebuilt} == {
        name: [] for name in rebuilt
    }
