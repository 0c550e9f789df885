"""Acceptance: the whole graph on PostgreSQL and on DuckDB, on the real data in
../shared, gives the same customers, the same Insiders and the same KPIs."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from models_py.locations import DUCKDB_CONFIG
from orchestration.cli import main
from tests.conftest import SHARED_BY_DAY, environ_restored
from tests.postgres_server import fresh_database

# Columns that name the run or the moment, not the answer.
RUN_COLUMNS = frozenset({"run_id", "published_at", "created_at", "loaded_at", "file_loaded_at"})


@pytest.fixture(scope="module")
def both_targets(tmp_path_factory, pg_server) -> Iterator[tuple[Path, dict[str, str]]]:
    """One full run on DuckDB and one on PostgreSQL, of the same files and settings."""
    assert SHARED_BY_DAY.is_dir(), f"acceptance data missing: {SHARED_BY_DAY}"
    folder = tmp_path_factory.mktemp("both")
    duck = folder / "duck" / "warehouse.duckdb"
    with environ_restored():
        assert main(["run", "--warehouse", str(duck), "--source", str(SHARED_BY_DAY)]) == 0
    with fresh_database(pg_server, "insiders_full") as name, environ_restored():
        env = {**pg_server, "PGDATABASE": name}
        os.environ.update(env)
        code = main(
            [
                "run",
                "--target",
                "postgres",
                "--warehouse",
                str(folder / "pg" / "warehouse.duckdb"),
                "--source",
                str(SHARED_BY_DAY),
            ]
        )
        assert code == 0
        yield duck, env


def duck_rows(warehouse: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = duckdb.connect(str(warehouse), read_only=True, config=DUCKDB_CONFIG)
    try:
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()
    finally:
        con.close()


def pg_rows(env: dict[str, str], sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    from orchestration.postgres import connect

    with environ_restored():
        os.environ.update(env)
        with connect() as con:
            cursor = con.execute(sql)
            return [d.name for d in cursor.description], cursor.fetchall()


def same_value(left: Any, right: Any) -> bool:
    """Equal, numbers to floating-point tolerance, timestamps and dates alike."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, dict | list) or isinstance(right, dict | list):  # json columns
        a, b = (json.loads(v) if isinstance(v, str) else v for v in (left, right))
        return a == b
    if isinstance(left, datetime | date) or isinstance(right, datetime | date):
        return str(left)[:19] == str(right)[:19]
    if isinstance(left, bool) or isinstance(right, bool):
        return bool(left) == bool(right)
    if isinstance(left, int | float) or isinstance(right, int | float):
        try:
            a, b = float(left), float(right)
        except (TypeError, ValueError):
            return False
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return str(left) == str(right)


def sort_key(row: tuple[Any, ...], kept: list[int]) -> tuple[str, ...]:
    """A row's order on either engine: its answer's values, numbers to 9 digits."""
    return tuple(
        f"{float(row[i]):.9g}"
        if isinstance(row[i], int | float) and not isinstance(row[i], bool)
        else str(row[i])
        for i in kept
    )


def assert_same_table(
    both: tuple[Path, dict[str, str]], table: str, order: str | None = None
) -> int:
    """Every row and column of ``table`` equal on both targets (``order``: SQL order of
    the rows; None: sorted here on every column but the run's)."""
    duck, env = both
    ordered = f" order by {order}" if order else ""
    columns, left = duck_rows(duck, f"select * from {table}{ordered}")
    pg_columns, right = pg_rows(env, f"select * from {table}{ordered}")
    assert pg_columns == columns, f"{table}: columns differ"
    assert len(right) == len(left), f"{table}: {len(left)} rows on DuckDB, {len(right)} on PG"
    kept = [i for i, c in enumerate(columns) if c not in RUN_COLUMNS]
    if order is None:
        left = sorted(left, key=lambda row: sort_key(row, kept))
        right = sorted(right, key=lambda row: sort_key(row, kept))
    for a, b in zip(left, right, strict=True):
        for i in kept:
            assert same_value(a[i], b[i]), f"{table}.{columns[i]}: {a[i]!r} != {b[i]!r} in {a}"
    return len(left)


def test_dim_customers_is_the_same_on_both_targets(both_targets):
    assert assert_same_table(both_targets, "marts.dim_customers", "customer_id") > 4000


def test_insiders_membership_is_the_same_on_both_targets(both_targets):
    assert assert_same_table(both_targets, "ml.customer_segments", "customer_id") > 4000
    members = assert_same_table(both_targets, "insiders.members", "customer_id")
    assert members > 0


def test_kpis_are_the_same_on_both_targets(both_targets):
    assert assert_same_table(both_targets, "insiders.kpis", "1") == 1


def test_every_answer_mart_is_the_same_on_both_targets(both_targets):
    duck, _ = both_targets
    _, tables = duck_rows(
        duck,
        "select table_name from information_schema.tables "
        "where table_schema = 'insiders' order by 1",
    )
    assert len(tables) > 10
    for (table,) in tables:
        assert_same_table(both_targets, f"insiders.{table}")
