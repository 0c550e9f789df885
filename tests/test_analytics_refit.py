"""The daily run of the analytics step: ``run_rolling_evaluation(..., refit=False)``.

"Refit monthly, score daily": a refitting run (the default) evaluates every definition at
every date and saves the as-of's BG/NBD + Gamma-Gamma MAP estimates in
``ml.forecast_parameters``; a run with ``refit=False`` keeps that run's rows of the dates
before its as-of, decides the as-of again and scores the expected revenue with the SAVED
parameters. Real warehouses (the synthetic demo data, built by real dbt), real fits.
The expected values are derived independently: the Gamma-Gamma expected spend by hand
in DuckDB from the histories dbt built and the parameters in the table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from models_py.locations import DUCKDB_CONFIG
from orchestration import insiders_steps
from orchestration.insiders_steps import read_inputs, run_rolling_evaluation
from orchestration.segmentation_asset import SegmentationConfig, run_segmentation
from tests.conftest import copy_warehouse

LOG = logging.getLogger("test_analytics_refit")

TABLES = (
    "insiders_definitions",
    "definition_members",
    "definition_evaluation",
    "group_forecasts",
    "customer_forecast",
    "eligibility_rules",
    "group_evidence",
    "forecast_parameters",
)


def _tables(warehouse: Path) -> dict[str, pd.DataFrame]:
    """Every table the analytics step writes, in a stable order."""
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        return {
            t: con.execute(f"select * from ml.{t} order by all").df().reset_index(drop=True)
            for t in TABLES
        }
    finally:
        con.close()


def _execute(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def refitted(demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo warehouse, clustered and evaluated once by a refitting run."""
    warehouse = copy_warehouse(
        demo_warehouse, tmp_path_factory.mktemp("refit") / "wh" / "warehouse.duckdb"
    )
    config = SegmentationConfig(spaces=["pca"], algorithms=["kmeans"], k_max=6, bootstrap_runs=0)
    run_segmentation(warehouse, config, "r1", LOG)
    metadata = run_rolling_evaluation(warehouse, 50, seed=1, log=LOG)
    assert metadata["refit"] is True
    assert metadata["origins"] > 0  # the demo data have a history to keep
    return warehouse


@pytest.fixture
def copy(refitted: Path, tmp_path: Path) -> Path:
    return copy_warehouse(refitted, tmp_path / "wh" / "warehouse.duckdb")


def test_a_refit_saves_the_map_estimates_of_both_models(refitted: Path) -> None:
    """Full precision, both models, stamped with the run; the group forecasts' rounded
    summary of the same fit agrees with them."""
    rows = _execute(
        refitted,
        "select model, parameter, value, run_id, as_of = (select max(as_of) "
        "from ml.customer_segments) from ml.forecast_parameters order by all",
    )
    saved = {(m, p): v for m, p, v, _, _ in rows}
    assert {m for m, _ in saved} == {"bg_nbd", "gamma_gamma"}
    assert {p for m, p in saved if m == "gamma_gamma"} == {"p", "q", "v"}
    assert {"alpha", "r", "a", "b"} <= {p for m, p in saved if m == "bg_nbd"}
    assert {r[3] for r in rows} == {"r1"} and all(r[4] for r in rows)
    (summary,) = _execute(
        refitted,
        "select any_value(parameters) from ml.group_forecasts where origin_date = as_of",
    )[0]
    shown = json.loads(summary)
    for (model, name), value in saved.items():
        prefix = "bg_" if model == "bg_nbd" else "gg_"
        assert shown[prefix + name] == pytest.approx(value, abs=0.0015)


def test_a_daily_run_on_the_refits_data_reproduces_the_refit(refitted: Path, copy: Path) -> None:
    """Nothing changed since the refit: scoring with its parameters and keeping its
    history must give exactly its tables."""
    before = _tables(copy)
    metadata = run_rolling_evaluation(copy, 50, seed=1, log=LOG, refit=False)
    assert metadata["refit"] is False
    after = _tables(copy)
    for table in TABLES:
        pd.testing.assert_frame_equal(after[table], before[table], check_exact=True, obj=table)


def test_the_daily_run_scores_with_the_saved_parameters(copy: Path) -> None:
    """Double the saved Gamma-Gamma v: the expected spend of every customer follows the
    Gamma-Gamma formula with the CHANGED parameters (computed here in DuckDB from dbt's
    histories), the saved parameters stay as they were (a daily run never writes them),
    and the kept history of the dates before the as-of is untouched."""
    _execute(
        copy,
        "update ml.forecast_parameters set value = value * 2 "
        "where model = 'gamma_gamma' and parameter = 'v'",
    )
    saved_before = _tables(copy)["forecast_parameters"]
    history_before = _execute(
        copy,
        "select * exclude (run_id) from ml.definition_members where evaluation_date < as_of "
        "order by all",
    )
    run_rolling_evaluation(copy, 50, seed=1, log=LOG, refit=False)
    mismatches = _execute(
        copy,
        """
        with parameters as (
            select
                max(value) filter (where parameter = 'p') as p,
                max(value) filter (where parameter = 'q') as q,
                max(value) filter (where parameter = 'v') as v
            from ml.forecast_parameters where model = 'gamma_gamma'
        ),
        histories as (
            select customer_id, cast(frequency as double) as x,
                case when frequency > 0 then monetary_value else 0 end as z
            from intermediate.int_customer_purchase_histories
            where evaluation_date = (select max(as_of) from ml.customer_segments)
        ),
        by_hand as (
            select customer_id,
                (1 - p * x / (p * x + q - 1)) * p * v / (q - 1)
                + p * x / (p * x + q - 1) * z as expected_spend
            from histories cross join parameters
        )
        select count(*) filter (
                where abs(f.expected_spend - h.expected_spend) > 1e-9 * h.expected_spend
            ),
            count(*), (select count(*) from histories)
        from ml.customer_forecast as f inner join by_hand as h using (customer_id)
        """,
    )
    bad, matched, customers = mismatches[0]
    assert bad == 0 and matched == customers > 0
    pd.testing.assert_frame_equal(_tables(copy)["forecast_parameters"], saved_before)
    history_after = _execute(
        copy,
        "select * exclude (run_id) from ml.definition_members where evaluation_date < as_of "
        "order by all",
    )
    assert history_after == history_before


def test_changed_parameters_change_the_daily_runs_tables(refitted: Path, copy: Path) -> None:
    _execute(
        copy,
        "update ml.forecast_parameters set value = value * 3 "
        "where model = 'bg_nbd' and parameter = 'r'",
    )
    run_rolling_evaluation(copy, 50, seed=1, log=LOG, refit=False)
    changed, original = _tables(copy), _tables(refitted)
    assert not changed["customer_forecast"]["expected_purchases"].equals(
        original["customer_forecast"]["expected_purchases"]
    )
    now = "origin_date = as_of and definition = 'all_customers'"
    model_now = _execute(copy, f"select model_revenue from ml.group_forecasts where {now}")
    assert model_now != _execute(
        refitted, f"select model_revenue from ml.group_forecasts where {now}"
    )


def test_identical_inputs_give_identical_daily_tables(copy: Path, tmp_path: Path) -> None:
    other = copy_warehouse(copy, tmp_path / "other" / "warehouse.duckdb")
    run_rolling_evaluation(copy, 50, seed=1, log=LOG, refit=False)
    run_rolling_evaluation(other, 50, seed=1, log=LOG, refit=False)
    first, second = _tables(copy), _tables(other)
    run_rolling_evaluation(copy, 50, seed=1, log=LOG, refit=False)  # and again on its own output
    again = _tables(copy)
    for table in TABLES:
        pd.testing.assert_frame_equal(first[table], second[table], check_exact=True, obj=table)
        pd.testing.assert_frame_equal(first[table], again[table], check_exact=True, obj=table)


def test_without_saved_parameters_it_refits_and_says_so(
    refitted: Path, copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _execute(copy, "delete from ml.forecast_parameters")
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        metadata = run_rolling_evaluation(copy, 50, seed=1, log=LOG, refit=False)
    assert metadata["refit"] is True
    assert any(
        "no analytics run has saved forecast parameters" in r.getMessage() for r in caplog.records
    )
    refit_again, original = _tables(copy), _tables(refitted)
    for table in TABLES:  # the fallback is the full refit: the same tables
        pd.testing.assert_frame_equal(
            refit_again[table], original[table], check_exact=False, rtol=1e-9, obj=table
        )


# --- the inputs, one date at a time ---------------------------------------------------


def test_each_dates_rows_are_dbts_rows_of_that_date(refitted: Path) -> None:
    """read_inputs copies dbt's views once and hands out one date's rows at a time:
    each date's frame is exactly what plain DuckDB reads from the view at that date."""
    inputs = read_inputs(refitted)
    con = duckdb.connect(str(refitted), config=DUCKDB_CONFIG)
    try:
        days = [
            r[0]
            for r in con.execute(
                "select distinct evaluation_date from intermediate.int_customer_scores__evaluations"
                " order by 1"
            ).fetchall()
        ]
        assert list(inputs.scores) == days and len(days) > 3
        for day in (days[0], days[len(days) // 2], days[-1]):
            for mapping, view in (
                (inputs.features, "int_customer_features__evaluations"),
                (inputs.scores, "int_customer_scores__evaluations"),
            ):
                expected = con.execute(
                    f"select * from intermediate.{view} where evaluation_date = ? "
                    "order by customer_id",
                    [day],
                ).df()
                expected["evaluation_date"] = pd.to_datetime(expected["evaluation_date"]).dt.date
                pd.testing.assert_frame_equal(mapping[day], expected, obj=f"{view} at {day}")
        later = con.execute(
            "select min(evaluation_date) from intermediate.int_evaluation_dates "
            "where evaluation_date > ?",
            [days[-1]],
        ).fetchone()[0]
    finally:
        con.close()
    assert later is None or later not in inputs.scores


def test_the_trained_models_rows_are_capped_by_a_stable_sample(
    refitted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above TRAINING_ROWS_CAP customer-dates (100x the real data), the trained revenue
    model learns from a hash sample of that many: the same rows every time, sorted by
    date and customer, all from dates whose horizon was over."""
    inputs = read_inputs(refitted)
    last = max(inputs.scores)
    everything = inputs.modelled.until(last)
    assert len(everything) > 500
    monkeypatch.setattr(insiders_steps, "TRAINING_ROWS_CAP", 500)
    capped = inputs.modelled.until(last)
    again = inputs.modelled.until(last)
    assert len(capped) == 500
    pd.testing.assert_frame_equal(capped, again)
    assert set(capped["customer_evaluation_id"]) <= set(everything["customer_evaluation_id"])
    ordered = capped.sort_values(["evaluation_date", "customer_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(capped, ordered)
    assert (pd.to_datetime(capped["horizon_end"]) <= pd.Timestamp(last)).all()
