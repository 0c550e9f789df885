"""Shared fixtures: real files on disk, a real DuckDB warehouse, real dbt runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration.dbt_runner import run_dbt
from orchestration.warehouse import load_files

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_BY_DAY = REPO_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def query(warehouse: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one query against a warehouse file and close it again.

    Opened with DuckDB's default configuration: dbt runs in this same process and
    keeps its connection open, and one process may only share a database file
    between connections of the same configuration.
    """
    con = duckdb.connect(str(warehouse))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def scalar(warehouse: Path, sql: str, params: list[Any] | None = None) -> Any:
    return query(warehouse, sql, params)[0][0]


def customers_without_one_segment(warehouse: Path) -> int:
    """Customers of marts.dim_customers with no segment, or with more than one."""
    return scalar(
        warehouse,
        """
        select count(*) from marts.dim_customers as d
        left join (select customer_id, count(*) as n from ml.customer_segments group by 1) as s
            using (customer_id)
        where s.n is distinct from 1
        """,
    )


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """Write ``text`` (or bytes) to a file under tmp_path and return its path."""

    def _write(name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode(encoding)
        path.write_bytes(content)
        return path

    return _write


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "wh" / "warehouse.duckdb"


def build(warehouse: Path, **variables: Any) -> None:
    """A real ``dbt build`` (models, seeds, tests); fail the test if anything fails."""
    assert run_dbt("build", warehouse, variables), "dbt build failed (see output above)"


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic Kaggle-layout data, loaded and built once for the session."""
    from models_py.demo_data import write_demo_data

    root = tmp_path_factory.mktemp("demo")
    demo = write_demo_data(root / "data", customers=300, seed=7, layout="kaggle")
    path = root / "warehouse.duckdb"
    report = load_files(path, [demo.path])
    assert not report.failed
    build(path)
    return path


@pytest.fixture(scope="session")
def demo_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BI snapshot published by a real ``insiders run`` over synthetic data, once for
    the session (about two minutes): what the dashboard reads."""
    from models_py.demo_data import write_demo_data
    from orchestration.bi_snapshot import SNAPSHOT_FILE
    from orchestration.cli import main
    from orchestration.warehouse import WAREHOUSE_ENV

    root = tmp_path_factory.mktemp("bi_demo")
    demo = write_demo_data(root / "data", customers=400, seed=7, layout="kaggle")
    warehouse = root / "wh" / "warehouse.duckdb"
    # `insiders run` points $INSIDERS_WAREHOUSE at its warehouse; restore it afterwards.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WAREHOUSE_ENV, str(warehouse))
        assert main(["run", "--warehouse", str(warehouse), "--source", str(demo.path)]) == 0
    snapshot = warehouse.parent / "bi" / SNAPSHOT_FILE
    assert snapshot.is_file()
    return snapshot
