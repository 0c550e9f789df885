"""Shared fixtures: real files on disk, a real DuckDB warehouse, real dbt runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from models_py.locations import DUCKDB_CONFIG
from orchestration.dbt_runner import run_dbt
from orchestration.warehouse import load_files

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_BY_DAY = REPO_ROOT.parent / "shared" / "data" / "online-retail" / "by-day"

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


# pytest sets this one itself around every phase of a test: not ours to restore.
_PYTEST_OWN = "PYTEST_CURRENT_TEST"


@contextmanager
def environ_restored() -> Iterator[None]:
    """Put ``os.environ`` back as it was on the way in, whatever happened inside.

    Production code sets variables as a side effect (the dbt step of the Dagster job
    points ``$INSIDERS_WAREHOUSE`` at its warehouse and sets
    ``DBT_INDIRECT_SELECTION``; ``insiders run`` and ``insiders dashboard`` set theirs):
    without this, a test (or a session fixture) that runs them changes what every later
    test sees.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved) - {_PYTEST_OWN}:
            del os.environ[key]
        for key, value in saved.items():
            if key != _PYTEST_OWN and os.environ.get(key) != value:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """No test leaks environment variables into the next one (tests set theirs with
    ``monkeypatch.setenv``; this also undoes what the code under test set)."""
    with environ_restored():
        yield


def query(
    warehouse: Path, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run one query against a warehouse file and close it again.

    Opened with the project's DUCKDB_CONFIG, as dbt's profile does: dbt runs in this
    same process and keeps its connection open, and one process may only share a
    database file between connections of the same configuration.
    """
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def scalar(warehouse: Path, sql: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
    return query(warehouse, sql, params)[0][0]


def copy_warehouse(source: Path, target: Path) -> Path:
    """Copy a warehouse file whole: first write what is still in its write-ahead log
    into it (dbt, run in this process, may hold it open with changes only in the WAL)."""
    query(source, "force checkpoint")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


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
    with environ_restored():
        report = load_files(path, [demo.path])
        assert not report.failed
        build(path)
    return path


@pytest.fixture(scope="session")
def spark_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(DuckDB warehouse, demo data folder): a real ``insiders run`` on DuckDB over
    synthetic data (300 customers, seed 7), once for the session: what the Spark
    target's tests compare against (tests/test_dbt_spark.py, tests/test_spark_target.py)."""
    from models_py.demo_data import write_demo_data
    from orchestration.cli import main

    root = tmp_path_factory.mktemp("spark_reference")
    demo = write_demo_data(root / "data", customers=300, seed=7, layout="kaggle")
    warehouse = root / "wh" / "warehouse.duckdb"
    with environ_restored():
        assert main(["run", "--warehouse", str(warehouse), "--source", str(demo.path)]) == 0
    return warehouse, demo.path


@pytest.fixture(scope="session")
def demo_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BI snapshot published by a real ``insiders run`` over synthetic data, once for
    the session (about two minutes): what the dashboard reads."""
    from models_py.demo_data import write_demo_data
    from models_py.locations import SNAPSHOT_FILE
    from orchestration.cli import main

    root = tmp_path_factory.mktemp("bi_demo")
    demo = write_demo_data(root / "data", customers=400, seed=7, layout="kaggle")
    warehouse = root / "wh" / "warehouse.duckdb"
    # `insiders run` sets environment variables as it goes: none of them may outlive it.
    with environ_restored():
        assert main(["run", "--warehouse", str(warehouse), "--source", str(demo.path)]) == 0
    snapshot = warehouse.parent / "bi" / SNAPSHOT_FILE
    assert snapshot.is_file()
    return snapshot


@pytest.fixture(scope="session")
def pg_server() -> dict[str, str]:
    """The PG* variables of the test server (see tests/postgres_server.py)."""
    from tests.postgres_server import server_env

    return server_env()


@pytest.fixture
def pg_database(pg_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, its PG* variables set in the
    environment (PGDATABASE names it), dropped afterwards."""
    from tests.postgres_server import fresh_database

    with fresh_database(pg_server) as name:
        for key, value in pg_server.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("PGDATABASE", name)
        yield name
