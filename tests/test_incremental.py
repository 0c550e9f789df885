"""dbt's incremental line marts equal a full rebuild after every kind of change.

fct_transactions and fct_transaction_exclusions are built incrementally: a daily run
adds the lines of the new file only. Here real daily files are loaded in steps, and
after each step (a new file, a file re-loaded with other content, a rule changed by a
var, a seed changed) the incremental tables are compared, row for row, with a
``--full-refresh`` build of a copy of the same warehouse.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestration.dbt_runner import run_dbt
from orchestration.warehouse import load_files
from tests.conftest import copy_warehouse, query, scalar

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "online-retail" / "by-day"
DAYS = sorted(REAL.glob("2011-11-*.csv"))[:6]
MARTS = ("fct_transactions", "fct_transaction_exclusions")
SELECT = [
    "--select",
    "+fct_transactions",
    "+fct_transaction_exclusions",
    "--indirect-selection",
    "buildable",
]


def _build(warehouse: Path, full_refresh: bool = False, **variables: object) -> None:
    extra = [*SELECT, *(["--full-refresh"] if full_refresh else [])]
    assert run_dbt("build", warehouse, dict(variables), extra), "dbt build failed"


def _rows(warehouse: Path, table: str) -> list[tuple]:
    return query(warehouse, f"select * from marts.{table} order by transaction_line_id")


def _assert_equals_full_rebuild(warehouse: Path, tmp: Path, **variables: object) -> None:
    full = copy_warehouse(warehouse, tmp / f"full-{len(list(tmp.iterdir()))}.duckdb")
    _build(full, full_refresh=True, **variables)
    for table in MARTS:
        incremental, rebuilt = _rows(warehouse, table), _rows(full, table)
        assert incremental == rebuilt, f"{table}: incremental build differs from a full one"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    for day in DAYS[:-1]:
        shutil.copy(day, folder / day.name)
    return folder


def test_incremental_lines_equal_a_full_rebuild_after_each_change(
    tmp_path: Path, source: Path
) -> None:
    assert len(DAYS) == 6, f"expected the real daily files of November 2011 under {REAL}"
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    load_files(warehouse, [source])
    _build(warehouse)
    first_build = scalar(warehouse, "select count(*) from marts.fct_transactions")

    # A new daily file: only its lines are added (the others keep their rows).
    shutil.copy(DAYS[-1], source / DAYS[-1].name)
    load_files(warehouse, [source])
    _build(warehouse)
    new_lines = scalar(
        warehouse,
        "select count(*) from marts.fct_transactions where source_file like ?",
        [f"%{DAYS[-1].name}"],
    )
    assert new_lines > 0
    assert scalar(warehouse, "select count(*) from marts.fct_transactions") == (
        first_build + new_lines
    )
    _assert_equals_full_rebuild(warehouse, tmp_path)

    # A file re-loaded with other content: half its lines gone, one price changed.
    changed = source / DAYS[0].name
    lines = changed.read_text(encoding="utf-8").splitlines(keepends=True)
    changed.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    load_files(warehouse, [source])
    _build(warehouse)
    _assert_equals_full_rebuild(warehouse, tmp_path)

    # A business rule changed by a var: every line is classified again.
    _build(warehouse, unit_price_floor=1.0)
    assert scalar(warehouse, "select min(unit_price) from marts.fct_transactions") >= 1.0
    _assert_equals_full_rebuild(warehouse, tmp_path, unit_price_floor=1.0)

    # And back, then a file removed from raw (as the loader does with demo data).
    _build(warehouse)
    query(warehouse, "delete from raw.transactions where source_file like ?", [f"%{DAYS[1].name}"])
    query(warehouse, "delete from raw.loaded_files where source_file like ?", [f"%{DAYS[1].name}"])
    _build(warehouse)
    assert not scalar(
        warehouse,
        "select count(*) from marts.fct_transactions where source_file like ?",
        [f"%{DAYS[1].name}"],
    )
    _assert_equals_full_rebuild(warehouse, tmp_path)


def test_a_table_built_before_the_incremental_columns_is_rebuilt_whole(
    tmp_path: Path, source: Path
) -> None:
    """A warehouse from an earlier version has fct_transactions without file_loaded_at:
    the first incremental build fills the columns for every row instead of failing."""
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    load_files(warehouse, [source])
    _build(warehouse)
    query(
        warehouse,
        "create or replace table marts.fct_transactions as "
        "select * exclude (file_loaded_at, rules_version) from marts.fct_transactions",
    )
    _build(warehouse)
    assert (
        scalar(
            warehouse, "select count(*) from marts.fct_transactions where file_loaded_at is null"
        )
        == 0
    )
    _assert_equals_full_rebuild(warehouse, tmp_path)
