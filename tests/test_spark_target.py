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


# --- more customers than the sample: decided in Spark, not on the driver ------------

SAMPLE = 150  # of the demo's 298 customers


@pytest.fixture(scope="module")
def beyond_sample(runs: dict) -> dict:
    """The clustering and the evaluation again with ``sample_size`` 150: the models
    are learned on 150 customers and applied to all 298 in Spark. Every frame that
    comes to the driver (``collect``, ``toPandas``, ``toArrow``) is recorded."""
    import logging

    # The classic (in-process) DataFrame: its methods override the facade's.
    from pyspark.sql.classic.dataframe import DataFrame

    from orchestration.insiders_steps import run_rolling_evaluation
    from orchestration.segmentation_asset import SegmentationConfig
    from orchestration.spark_segmentation import run_segmentation_on_spark

    warehouse = runs["spark"]
    seen: list[int] = []
    originals = {name: getattr(DataFrame, name) for name in ("collect", "toPandas", "toArrow")}

    def spy(name: str):  # type: ignore[no-untyped-def]
        def call(self: DataFrame, *args: object, **kwargs: object) -> object:
            if "customer_id" in self.columns:
                seen.append(originals["toArrow"](self.select("customer_id").distinct()).num_rows)
            return originals[name](self, *args, **kwargs)

        return call

    log = logging.getLogger("beyond_sample")
    with pytest.MonkeyPatch.context() as patch:
        for name in originals:
            patch.setattr(DataFrame, name, spy(name))
        config = SegmentationConfig(sample_size=SAMPLE)
        clustering = run_segmentation_on_spark(warehouse, config, "beyond-sample", log)
        refit = run_rolling_evaluation(warehouse, 200, seed=42, log=log, refit=True)
    tables = {t: _spark_rows(warehouse, f"ml.{t}") for t in _EVALUATION_TABLES}
    with pytest.MonkeyPatch.context() as patch:
        for name in originals:
            patch.setattr(DataFrame, name, spy(name))
        daily = run_rolling_evaluation(warehouse, 200, seed=42, log=log, refit=False)
    after = {t: _spark_rows(warehouse, f"ml.{t}") for t in _EVALUATION_TABLES}
    return {
        "clustering": clustering, "refit": refit, "daily": daily, "tables": tables,
        "after": after, "seen": seen,
    }  # fmt: skip


_EVALUATION_TABLES = (
    "customer_segments", "definition_members", "definition_evaluation", "group_forecasts",
    "customer_forecast", "forecast_parameters", "eligibility_rules", "group_evidence",
)  # fmt: skip


def test_beyond_the_sample_no_frame_of_every_customer_reaches_the_driver(
    beyond_sample: dict,
) -> None:
    assert beyond_sample["clustering"]["sampled_customers"] == SAMPLE
    assert beyond_sample["refit"]["sampled_customers"] == SAMPLE
    assert beyond_sample["refit"]["customers"] == 298
    assert beyond_sample["seen"], "the spy saw the driver's reads"
    assert max(beyond_sample["seen"]) <= SAMPLE, sorted(beyond_sample["seen"])[-5:]


def _duck_scores(runs: dict, day: object) -> pd.DataFrame:
    """The DuckDB reference's scores at ``day`` (dbt's, the same on both targets)."""
    con = duckdb.connect(str(runs["duck"]), read_only=True, config=DUCKDB_CONFIG)
    try:
        return con.execute(
            "select customer_id, past_net_revenue::double as past, "
            "recent_net_revenue::double as recent, recency_weighted_revenue::double as rw, "
            "rfm_points::double as rfm, horizon_net_revenue::double as horizon "
            "from intermediate.int_customer_scores__evaluations where evaluation_date = ?",
            [day],
        ).df()
    finally:
        con.close()


def _top(frame: pd.DataFrame, score: str, n: int) -> list[str]:
    ordered = frame.assign(score=frame[score].fillna(-np.inf)).sort_values(
        ["score", "past", "customer_id"], ascending=[False, False, True]
    )
    return ordered["customer_id"].astype(str).head(n).tolist()


def test_beyond_the_sample_every_customer_is_ranked_as_select_members_ranks(
    runs: dict, beyond_sample: dict
) -> None:
    """At the as-of every definition picks as many customers as the clustering's
    Insiders among ALL 298 (not the sample), ranked as on DuckDB: by score, then past
    revenue, then id. Expected from the DuckDB reference's scores with pandas."""
    tables = beyond_sample["tables"]
    segments, members = tables["customer_segments"], tables["definition_members"]
    as_of = segments["as_of"].iloc[0]
    current = members[members["evaluation_date"] == as_of]
    insiders = set(segments.loc[segments["is_insider"], "customer_id"])
    n = len(insiders)
    assert 0 < n < 298
    cluster = current[current["definition"] == "insiders_cluster"]
    assert set(cluster["customer_id"]) == insiders
    scores = _duck_scores(runs, as_of)
    assert len(scores) == 298
    scores = scores.assign(plus=scores["past"] + scores["recent"])
    forecast = tables["customer_forecast"].set_index("customer_id")["expected_revenue"]
    scores["expected"] = scores["customer_id"].map(forecast).fillna(0.0)
    for definition, score in {
        "top_past_revenue": "past",
        "rfm_champions": "rfm",
        "recency_weighted_revenue": "rw",
        "past_plus_recent_revenue": "plus",
        "expected_revenue": "expected",
    }.items():
        got = current[current["definition"] == definition].sort_values("member_rank")
        assert got["customer_id"].tolist() == _top(scores, score, n), definition
        assert got["member_rank"].tolist() == list(range(1, n + 1))
    assert len(current[current["definition"] == "trained_revenue_model"]) == n
    # The forecast is every customer's, not the sample's.
    assert len(tables["customer_forecast"]) == 298


def test_beyond_the_sample_shares_and_forecasts_are_the_whole_populations(
    runs: dict, beyond_sample: dict
) -> None:
    """Each origin's share is its members' horizon revenue over every customer's, and
    each group forecast's customers and naive revenue are sums over all of them."""
    tables = beyond_sample["tables"]
    members, evaluation = tables["definition_members"], tables["definition_evaluation"]
    forecasts = tables["group_forecasts"]
    assert not evaluation.empty
    for row in evaluation.itertuples():
        scores = _duck_scores(runs, row.origin_date).set_index("customer_id")
        assert row.customers_known == len(scores)
        assert row.total_horizon_revenue == pytest.approx(scores["horizon"].sum())
        if row.definition == "random":
            assert row.share_of_horizon_revenue == pytest.approx(row.members / len(scores))
            assert row.share_low < row.share_of_horizon_revenue < row.share_high
            continue
        ids = members[
            (members["evaluation_date"] == row.origin_date)
            & (members["definition"] == row.definition)
        ]["customer_id"]
        assert row.members == len(ids)
        assert row.horizon_revenue == pytest.approx(scores["horizon"].reindex(ids).sum())
    for row in forecasts.itertuples():
        scores = _duck_scores(runs, row.origin_date).set_index("customer_id")
        if row.definition == "all_customers":
            ids = scores.index
        else:
            ids = members[
                (members["evaluation_date"] == row.origin_date)
                & (members["definition"] == row.definition)
            ]["customer_id"]
        assert row.customers == len(ids), (row.origin_date, row.definition)
        assert row.naive_revenue == pytest.approx(scores["recent"].reindex(ids).sum())
        assert row.lower_bound <= row.forecast_revenue <= row.upper_bound


def test_beyond_the_sample_the_rules_are_learned_on_the_sample(beyond_sample: dict) -> None:
    rules, evidence = (
        beyond_sample["tables"]["eligibility_rules"],
        beyond_sample["tables"]["group_evidence"],
    )
    assert not rules.empty and not evidence.empty
    assert "top_past_revenue" in set(rules["definition"])


def test_beyond_the_sample_a_daily_run_keeps_the_refits_history(beyond_sample: dict) -> None:
    """``refit: false``: the dates before the refit's as-of keep their members, shares
    and parameters; the as-of is decided again (the same data: the same members)."""
    before, after = beyond_sample["tables"], beyond_sample["after"]
    assert beyond_sample["daily"]["refit"] is False
    key = ["evaluation_date", "definition", "customer_id"]
    columns = [*key, "member_rank"]
    assert_frames_equal(
        before["definition_members"][columns], after["definition_members"][columns], key
    )
    for table, key in (
        ("definition_evaluation", ["origin_date", "definition"]),
        ("forecast_parameters", ["model", "parameter"]),
    ):
        keep = [c for c in before[table].columns if c != "run_id"]
        assert_frames_equal(before[table][keep], after[table][keep], key)


def test_ml_tables_switch_whole_versions(runs: dict) -> None:
    """A write that fails before its switch leaves the table as it was; a write that
    succeeds replaces it whole, and old versions are pruned to the previous one."""
    from orchestration.spark import session
    from orchestration.spark_ml import VERSIONS_DIR, replace_tables, write_versions

    warehouse = runs["spark"]
    spark = session(warehouse)
    before = spark.table("ml.segmentation_runs").toArrow().to_pandas()
    runs_before = len(before)
    assert runs_before >= 1
    bad = spark.table("ml.segmentation_runs").drop("model")
    with pytest.raises(ValueError, match="missing columns"):
        write_versions(spark, warehouse, {"segmentation_runs": bad}, "broken")
    spark.sql("refresh table ml.segmentation_runs")
    assert len(spark.table("ml.segmentation_runs").toArrow()) == runs_before
    doubled = spark.table("ml.segmentation_runs").unionByName(spark.table("ml.segmentation_runs"))
    for attempt in range(3):
        replace_tables(spark, warehouse, {"segmentation_runs": doubled}, f"t{attempt}")
        doubled = spark.table("ml.segmentation_runs").unionByName(
            spark.table("ml.segmentation_runs").limit(1)
        )
    spark.sql("refresh table ml.segmentation_runs")
    assert spark.table("ml.segmentation_runs").count() == 2 * runs_before + 2
    versions = Path(warehouse.tables) / VERSIONS_DIR / "segmentation_runs"
    assert len([p for p in versions.iterdir() if p.is_dir()]) == 2
