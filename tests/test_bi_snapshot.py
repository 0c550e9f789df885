"""The BI snapshot publisher on a real warehouse built by a real run over generated data:
what it copies, that a swap is atomic for readers, and that a failure keeps the old one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from models_py.locations import (
    DUCKDB_CONFIG,
    PARQUET_LINK,
    SCHEMA_VERSION,
    SNAPSHOT_FILE,
    resolve_bi_dir,
)
from orchestration.bi_snapshot import SNAPSHOT_TABLES, VERSIONS_DIR, publish_snapshot
from orchestration.dbt_runner import run_dbt
from tests.conftest import query, scalar


@pytest.fixture
def warehouse(demo_snapshot: Path, tmp_path: Path) -> Path:
    """A private copy of the demo run's warehouse (its own snapshot folder is left alone)."""
    copy = tmp_path / "wh" / "warehouse.duckdb"
    copy.parent.mkdir()
    shutil.copy(demo_snapshot.parent.parent / "warehouse.duckdb", copy)
    return copy


def attached(path: Path, sql: str) -> list[tuple]:
    """Read a snapshot the way a fresh reader does: a new database attaching the file."""
    con = duckdb.connect()
    try:
        con.execute(f"attach '{path}' as snap (read_only)")
        con.execute("use snap")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_snapshot_holds_every_published_table_as_in_the_warehouse(warehouse, tmp_path):
    bi = tmp_path / "bi"
    published = publish_snapshot(warehouse, bi, run_id="run-one-0000")
    assert published.path == bi / SNAPSHOT_FILE
    for schema, table in SNAPSHOT_TABLES:
        name = f"{schema}.{table}"
        expected = scalar(warehouse, f"select count(*) from {name}")
        assert attached(published.path, f"select count(*) from {name}")[0][0] == expected
        parquet = bi / PARQUET_LINK / f"{name}.parquet"
        assert duckdb.sql(f"select count(*) from '{parquet}'").fetchall()[0][0] == expected
        assert published.rows[name] == expected
    assert scalar(warehouse, "select count(*) from insiders.members") > 0
    # the rolling-origin evaluation is published, with one chosen definition
    for name in (
        "insiders.definition_evaluation",
        "insiders.definition_choice",
        "insiders.forecast_evaluation",
        "insiders.customer_membership",
    ):
        assert published.rows[name] > 0, name
    assert attached(
        published.path, "select count(*) from insiders.definition_choice where is_chosen"
    ) == [(1,)]
    info = attached(
        published.path,
        "select snapshot_id, run_id, schema_version, table_rows, is_synthetic from snapshot_info",
    )[0]
    assert info[:3] == (published.snapshot_id, "run-one-0000", SCHEMA_VERSION)
    assert json.loads(info[3]) == published.rows
    synthetic = scalar(
        warehouse, "select coalesce(bool_or(is_synthetic), false) from raw.loaded_files"
    )
    assert info[4] is synthetic is published.is_synthetic
    # The nine answers are published, as the dashboard and BI tools read them.
    assert attached(published.path, "select question_number from insiders.answers order by 1") == [
        (n,) for n in range(1, 10)
    ]
    # Same columns and values as the warehouse, not just the same counts.
    members = attached(published.path, "select * from insiders.members order by customer_id")
    assert members == query(warehouse, "select * from insiders.members order by customer_id")
    assert not list(bi.glob(".*partial"))


def test_an_open_reader_keeps_its_snapshot_and_the_next_one_sees_the_new(warehouse, tmp_path):
    bi = tmp_path / "bi"
    first = publish_snapshot(warehouse, bi, run_id="run-one-0000")
    reader = duckdb.connect()
    reader.execute(f"attach '{first.path}' as snap (read_only)")
    second = publish_snapshot(warehouse, bi, run_id="run-two-0000")
    assert second.snapshot_id != first.snapshot_id
    # The open connection still reads the complete first snapshot...
    assert reader.execute("select run_id from snap.main.snapshot_info").fetchall() == [
        ("run-one-0000",)
    ]
    assert reader.execute("select count(*) from snap.insiders.members").fetchall()[0][0] > 0
    reader.close()
    # ...and a new reader, in another process too, the second.
    assert attached(second.path, "select run_id from snapshot_info") == [("run-two-0000",)]
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
            "print(con.execute('select run_id from snapshot_info').fetchall()[0][0])",
            str(second.path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == "run-two-0000"
    assert (bi / PARQUET_LINK).resolve() == (bi / VERSIONS_DIR / second.snapshot_id).resolve()


def test_a_failed_publish_leaves_the_previous_snapshot_whole(warehouse, tmp_path):
    bi = tmp_path / "bi"
    first = publish_snapshot(warehouse, bi, run_id="run-one-0000")
    before = (bi / SNAPSHOT_FILE).read_bytes()
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    con.execute("drop table insiders.monthly_revenue")  # a table the snapshot needs
    con.close()
    with pytest.raises(duckdb.CatalogException, match="monthly_revenue"):
        publish_snapshot(warehouse, bi, run_id="run-two-0000")
    assert (bi / SNAPSHOT_FILE).read_bytes() == before
    assert attached(first.path, "select run_id from snapshot_info") == [("run-one-0000",)]
    assert [p.name for p in (bi / VERSIONS_DIR).iterdir()] == [first.snapshot_id]
    assert (bi / PARQUET_LINK).resolve().name == first.snapshot_id
    assert not list(bi.glob(".*partial"))


def test_old_parquet_versions_are_pruned_but_the_previous_is_kept(warehouse, tmp_path):
    bi = tmp_path / "bi"
    ids = [publish_snapshot(warehouse, bi, run_id=f"run-{n}-0000").snapshot_id for n in range(3)]
    assert sorted(p.name for p in (bi / VERSIONS_DIR).iterdir()) == sorted(ids[1:])
    assert (bi / PARQUET_LINK).resolve().name == ids[-1]


def test_the_bi_folder_defaults_beside_the_warehouse(tmp_path, monkeypatch):
    monkeypatch.delenv("INSIDERS_BI_DIR", raising=False)
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    assert resolve_bi_dir(warehouse) == tmp_path / "wh" / "bi"
    monkeypatch.setenv("INSIDERS_BI_DIR", str(tmp_path / "elsewhere"))
    assert resolve_bi_dir(warehouse) == tmp_path / "elsewhere"
    assert resolve_bi_dir(warehouse, tmp_path / "given") == tmp_path / "given"


@pytest.mark.parametrize("synthetic", [True, False])
def test_the_snapshot_says_whether_its_figures_are_synthetic(warehouse, tmp_path, synthetic):
    """snapshot_info.is_synthetic follows raw.loaded_files.is_synthetic (through
    insiders.kpis, rebuilt by dbt), so the dashboard can warn that nothing is real."""
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        con.execute(
            "alter table raw.loaded_files add column if not exists is_synthetic boolean "
            "default false"
        )
        con.execute("update raw.loaded_files set is_synthetic = ?", [synthetic])
    finally:
        con.close()
    assert run_dbt("build", warehouse, {}, ["--select", "stg_online_retail__loaded_files+"])
    published = publish_snapshot(warehouse, tmp_path / "bi", run_id="run-syn-0000")
    assert published.is_synthetic is synthetic
    assert attached(published.path, "select is_synthetic from snapshot_info") == [(synthetic,)]
    assert attached(published.path, "select is_synthetic from insiders.kpis") == [(synthetic,)]
