"""The whole graph on the spark target: ``insiders run --target spark`` on a local
Spark session gives the DuckDB target's customers, Insiders and BI snapshot.

One DuckDB run and one Spark run of the same synthetic files, compared table by
table; then what only Spark has: the ``ml`` versions switched in, quiet output, and
the lock. Expected values come from the DuckDB target, an independent engine.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from models_py.locations import DUCKDB_CONFIG, SNAPSHOT_FILE
from tests.conftest import environ_restored


def _frame(rows: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return rows.sort_values(key, kind="stable").reset_index(drop=True)


def assert_frames_equal(
    left: pd.DataFrame, right: pd.DataFrame, key: list[str], rtol: float = 1e-9
) -> None:
    """Same rows and columns; numbers to ``rtol``, dates and times as values."""
    assert sorted(left.columns) == sorted(right.columns)
    left, right = _frame(left, key), _frame(right[left.columns], key)
    assert len(left) == len(right)
    for column in left.columns:
        a, b = _numbers(left[column]), _numbers(right[column])
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            np.testing.assert_allclose(
                a.astype(float).to_numpy(),
                b.astype(float).to_numpy(),
                rtol=rtol,
                atol=1e-9,
                err_msg=column,
            )
        else:
            assert _texts(a) == _texts(b), column


def _numbers(values: pd.Series) -> pd.Series:
    """Decimals (object columns of ``decimal.Decimal``) as floats."""
    if values.dtype == object and values.map(lambda v: isinstance(v, Decimal)).any():
        return values.map(lambda v: None if v is None else float(v)).astype(float)
    return values


def _texts(values: pd.Series) -> list[str | None]:
    """Values as text; timestamps and dates as their date-time text without zone."""
    out: list[str | None] = []
    for value in values:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out.append(None)
        elif isinstance(value, datetime | date | pd.Timestamp):
            out.append(pd.Timestamp(value).tz_localize(None).isoformat())
        else:
            out.append(str(value))
    return out


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, spark_reference: tuple[Path, Path]
) -> Iterator[dict[str, object]]:
    """The same demo files through ``insiders run`` on DuckDB (the session's reference
    run) and on Spark."""
    from orchestration.cli import main
    from orchestration.spark import SparkWarehouse, local_folder, stop_session

    root = tmp_path_factory.mktemp("spark_target")
    duck, demo = spark_reference
    spark_anchor = root / "spark" / "warehouse.duckdb"
    outputs = {}
    with environ_restored():
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(
                ["run", "--target", "spark", "--warehouse", str(spark_anchor), "--source",
                 str(demo)]
            )  # fmt: skip
        outputs = {"stdout": out.getvalue(), "stderr": err.getvalue()}
        assert code == 0, outputs
    warehouse = SparkWarehouse(local_folder(spark_anchor))
    yield {"duck": duck, "spark": warehouse, "demo": demo, **outputs}
    stop_session()
    shutil.rmtree(root, ignore_errors=True)


def _spark_rows(warehouse: object, relation: str) -> pd.DataFrame:
    from orchestration.spark import session

    spark = session(warehouse)  # type: ignore[arg-type]
    spark.sql(f"refresh table {relation}")
    return spark.table(relation).toArrow().to_pandas()


def _duck_rows(path: Path, relation: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True, config=DUCKDB_CONFIG)
    try:
        return con.sql(f"select * from {relation}").df()
    finally:
        con.close()


def test_dim_customers_equal_on_both_targets(runs: dict) -> None:
    duck = _duck_rows(runs["duck"], "marts.dim_customers")
    spark = _spark_rows(runs["spark"], "marts.dim_customers")
    assert len(duck) > 250
    assert_frames_equal(duck, spark, ["customer_id"])


def test_same_insiders_membership(runs: dict) -> None:
    key = ["customer_id"]
    duck = _duck_rows(runs["duck"], "ml.customer_segments")
    spark = _spark_rows(runs["spark"], "ml.customer_segments")
    assert_frames_equal(
        duck[["customer_id", "cluster_id", "cluster_name", "is_insider", "model"]],
        spark[["customer_id", "cluster_id", "cluster_name", "is_insider", "model"]],
        key,
    )
    members_duck = _duck_rows(runs["duck"], "insiders.members")
    members_spark = _spark_rows(runs["spark"], "insiders.members")
    assert sorted(members_duck["customer_id"]) == sorted(members_spark["customer_id"])
    assert 0 < len(members_duck) < len(duck)


def test_bi_snapshot_is_published_from_spark(runs: dict) -> None:
    """The dashboard's file: the same Insiders and KPIs as the DuckDB target's."""
    warehouse = runs["spark"]
    snapshot = warehouse.parent / "bi" / SNAPSHOT_FILE
    reference = runs["duck"].parent / "bi" / SNAPSHOT_FILE
    for relation, key in [("insiders.members", ["customer_id"]), ("insiders.kpis", [])]:
        ours = _duck_rows(snapshot, relation)
        theirs = _duck_rows(reference, relation)
        # Each target's own run: its run id differs, nothing else may.
        ours = ours.drop(columns=[c for c in ours.columns if c.endswith("run_id")])
        theirs = theirs.drop(columns=[c for c in theirs.columns if c.endswith("run_id")])
        key = key or list(ours.columns[:1])
        # The forecast's posterior is sampled from features equal to 1e-12: its
        # expectations agree to about 1e-9, not to the last bit.
        assert_frames_equal(theirs, ours, key, rtol=1e-6)
    parquet = list((warehouse.parent / "bi" / "parquet").glob("insiders.members*"))
    assert parquet, "the snapshot's Parquet files"


def test_the_run_is_quiet(runs: dict) -> None:
    """One line per step: Spark's and Java's own warnings go to its log file."""
    text = runs["stdout"] + runs["stderr"]
    for noise in ("WARN", "log4j", "incubator", "FutureWarning", "SparkSession"):
        assert noise not in text, noise
    assert (runs["spark"].parent / "logs" / "spark.log").is_file()


def test_ml_tables_switch_whole_versions(runs: dict) -> None:
    """A write that fails before its switch leaves the table as it was; a write that
    succeeds replaces it whole, and old versions are pruned to the previous one."""
    from orchestration.spark import session
    from orchestration.spark_ml import VERSIONS_DIR, replace_tables, write_versions

    warehouse = runs["spark"]
    spark = session(warehouse)
    before = spark.table("ml.segmentation_runs").toArrow().to_pandas()
    assert len(before) == 1
    bad = spark.table("ml.segmentation_runs").drop("model")
    with pytest.raises(ValueError, match="missing columns"):
        write_versions(spark, warehouse, {"segmentation_runs": bad}, "broken")
    spark.sql("refresh table ml.segmentation_runs")
    assert len(spark.table("ml.segmentation_runs").toArrow()) == 1
    doubled = spark.table("ml.segmentation_runs").unionByName(spark.table("ml.segmentation_runs"))
    for attempt in range(3):
        replace_tables(spark, warehouse, {"segmentation_runs": doubled}, f"t{attempt}")
        doubled = spark.table("ml.segmentation_runs").unionByName(
            spark.table("ml.segmentation_runs").limit(1)
        )
    spark.sql("refresh table ml.segmentation_runs")
    assert spark.table("ml.segmentation_runs").count() == 4
    versions = Path(warehouse.tables) / VERSIONS_DIR / "segmentation_runs"
    assert len([p for p in versions.iterdir() if p.is_dir()]) == 2
