"""The ``ml`` schema is declared once (``ML_COLUMNS``) and every writer is held to it.

Real DuckDB files; the step-level test runs the real clustering and rolling-origin
evaluation on a copy of the session's demo warehouse, rebuilt by real dbt.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from models_py.clustering.labelling import LABEL_COLUMNS
from models_py.clustering.selection import CANDIDATE_COLUMNS
from models_py.eligibility import RULE_COLUMNS
from models_py.evidence import EVIDENCE_COLUMNS
from models_py.forecast import FORECAST_COLUMNS
from models_py.insiders_definitions import EVALUATION_COLUMNS
from orchestration.dbt_runner import run_dbt
from orchestration.insiders_steps import run_rolling_evaluation
from orchestration.ml_tables import (
    ML_COLUMNS,
    MlSchemaError,
    SegmentationWrite,
    ensure_ml_tables,
    write_segmentation,
    write_tables,
)
from orchestration.segmentation_asset import SegmentationConfig, run_segmentation
from orchestration.warehouse import connect

STAMP = ("as_of", "run_id")
LOG = logging.getLogger("test_ml_tables")


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'ml' and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
    ]


def test_ensure_ml_tables_creates_every_declared_table_and_is_idempotent(tmp_path: Path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        ensure_ml_tables(con)
        built = {t: columns(con, t) for t in ML_COLUMNS}
        assert built == {t: list(c) for t, c in ML_COLUMNS.items()}
        ensure_ml_tables(con)
        assert {t: columns(con, t) for t in ML_COLUMNS} == built
    finally:
        con.close()


def test_an_older_warehouse_gains_the_new_columns_and_takes_new_rows(tmp_path: Path):
    """segmentation_runs as it was before model_sha256, eligibility_rules before
    definition (a column that older warehouses gained at the END of the table), and a
    table retired since."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        con.execute(
            """
            create schema ml;
            create table ml.segmentation_runs (
                run_id varchar primary key, as_of date not null, created_at timestamp not null,
                model varchar not null, model_path varchar, refit boolean not null,
                config json, chosen json, stability_ari double, customers bigint not null,
                insiders bigint not null
            );
            insert into ml.segmentation_runs values ('old', '2011-01-01', '2011-01-01',
                'kmeans k=4 on pca', '/somewhere/old.joblib', true, null, null, null, 1, 1);
            create table ml.eligibility_rules (
                run_id varchar not null, as_of date not null, rule_id integer not null,
                rule varchar not null, conditions json not null, customers bigint not null,
                insiders bigint not null, precision double not null, recall double not null
            );
            create table ml.backtest_groups (x integer);
            """
        )
        ensure_ml_tables(con)
        assert set(columns(con, "segmentation_runs")) == set(ML_COLUMNS["segmentation_runs"])
        assert columns(con, "eligibility_rules")[-1] == "definition"
        assert con.execute("select count(*) from ml.segmentation_runs").fetchone()[0] == 1
        assert not con.execute(
            "select count(*) from information_schema.tables where table_name = 'backtest_groups'"
        ).fetchone()[0]
        rules = pd.DataFrame(
            {
                "definition": ["rfm_champions"],
                "rule_id": [1],
                "rule": ["monetary > 1,000.00"],
                "conditions": ['[{"feature": "monetary", "operator": ">", "threshold": 1000}]'],
                "customers": [10],
                "insiders": [8],
                "precision": [0.8],
                "recall": [0.5],
                "as_of": [pd.Timestamp("2011-12-10").date()],
                "run_id": ["new"],
            }
        )
        write_tables(con, replace={"eligibility_rules": rules})
        assert con.execute(
            "select definition, rule, run_id from ml.eligibility_rules"
        ).fetchall() == [("rfm_champions", "monetary > 1,000.00", "new")]
        write_segmentation(con, _segmentation_write("new", sha="ab" * 32))
        assert con.execute(
            "select run_id, model_path, model_sha256 from ml.segmentation_runs order by run_id"
        ).fetchall() == [("new", "new.joblib", "ab" * 32), ("old", "/somewhere/old.joblib", None)]
    finally:
        con.close()


def _segmentation_write(run_id: str, sha: str | None = None) -> SegmentationWrite:
    return SegmentationWrite(
        run_id=run_id,
        as_of=pd.Timestamp("2011-12-10").date(),
        model="kmeans k=2 on pca",
        model_path=f"{run_id}.joblib",
        model_sha256=sha,
        refit=True,
        labels=pd.DataFrame(
            {
                "customer_id": ["a", "b"],
                "cluster_id": [0, 1],
                "cluster_name": ["Insiders", "Mainstream"],
                "is_insider": [True, False],
            }
        ),
        candidates=None,
        embedding=pd.DataFrame({"customer_id": ["a", "b"], "x": [0.0, 1.0], "y": [0.0, 1.0]}),
        centroids=pd.DataFrame({"cluster_id": [0, 1], "monetary": [1.0, 2.0]}),
        config={},
        chosen={},
        stability_ari=None,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f.assign(cluster_label="x"),
            "ml.customer_segments: the new rows have undeclared cluster_label",
        ),
        (
            lambda f: f.drop(columns="is_insider"),
            "ml.customer_segments: the new rows lack is_insider",
        ),
        (
            lambda f: f.rename(columns={"model": "model_name"}),
            "ml.customer_segments: the new rows lack model and have undeclared model_name",
        ),
    ],
)
def test_a_writer_whose_rows_do_not_fit_the_declaration_writes_nothing(
    change, message: str, tmp_path: Path
):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        ensure_ml_tables(con)
        good = _segmentation_write("r1").labels.assign(
            model="m", as_of=pd.Timestamp("2011-12-10").date(), run_id="r1"
        )
        write_tables(con, replace={"customer_segments": good})
        with pytest.raises(MlSchemaError) as refused:
            write_tables(
                con,
                replace={"customer_segments": change(good.assign(run_id="r2"))},
                append={"cluster_centroids": pd.DataFrame(columns=ML_COLUMNS["cluster_centroids"])},
            )
        assert str(refused.value) == message
        assert con.execute("select distinct run_id from ml.customer_segments").fetchall() == [
            ("r1",)
        ]
        with pytest.raises(MlSchemaError, match=r"ml\.no_such_table is not declared"):
            write_tables(con, replace={"no_such_table": good})
    finally:
        con.close()


def test_the_models_outputs_are_the_declared_columns():
    """What each pure model returns is the declared table minus what the step adds."""

    def declared(table: str, *added: str) -> list[str]:
        return [c for c in ML_COLUMNS[table] if c not in (*STAMP, *added)]

    assert list(LABEL_COLUMNS) == declared("customer_segments", "model")
    renamed = {
        "min_cluster_share": "smallest_cluster_share",
        "eligible": "is_eligible",
        "chosen": "is_chosen",
    }
    assert [renamed.get(c, c) for c in CANDIDATE_COLUMNS] == declared("model_selection")
    assert sorted(EVALUATION_COLUMNS) == sorted(
        declared("definition_evaluation", "origin_date", "horizon_end")
    )
    assert list(FORECAST_COLUMNS) == declared("customer_forecast", "forecast_start", "forecast_end")
    assert sorted(EVIDENCE_COLUMNS) == sorted(declared("group_evidence", "definition"))
    assert sorted(RULE_COLUMNS) == sorted(declared("eligibility_rules", "definition"))


def test_the_rolling_evaluation_writes_its_tables_when_no_origin_is_evaluable(
    demo_warehouse: Path, tmp_path: Path
):
    """With no evaluation origin (history shorter than var evaluation_min_history_months)
    the evaluation still writes every table, definition_evaluation empty: its empty
    frame has the declared columns."""
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    warehouse.parent.mkdir()
    shutil.copyfile(demo_warehouse, warehouse)
    wal = demo_warehouse.with_name(demo_warehouse.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, warehouse.with_name(warehouse.name + ".wal"))
    assert run_dbt(
        "build",
        warehouse,
        {"evaluation_min_history_months": 120},
        ["--select", "int_evaluation_dates", "--indirect-selection", "buildable"],
    )
    config = SegmentationConfig(spaces=["pca"], algorithms=["kmeans"], k_max=6, bootstrap_runs=0)
    run_segmentation(warehouse, config, "r1", LOG)
    metadata = run_rolling_evaluation(warehouse, 50, seed=1, log=LOG)
    assert metadata["origins"] == 0
    con = connect(warehouse)  # the configuration of the connection dbt keeps open
    try:
        assert con.execute("select count(*) from ml.definition_evaluation").fetchone()[0] == 0
        assert (
            con.execute(
                "select count(*) from intermediate.int_evaluation_dates where is_evaluation_origin"
            ).fetchone()[0]
            == 0
        )
        assert (
            con.execute(
                "select count(distinct run_id) from ml.customer_forecast where run_id = 'r1'"
            ).fetchone()[0]
            == 1
        )
    finally:
        con.close()
