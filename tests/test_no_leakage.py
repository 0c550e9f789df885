"""No look-ahead: what the rolling-origin evaluation knows at an origin comes from the
lines before it only.

Two warehouses are built from the SAME generated transactions and the same as-of: A
with every line, B with every line at or after an evaluation origin O deleted. At O,
the features, the scores the definitions rank on, the purchase histories, the
clustering refitted at O, every definition's members, the expected revenue per
customer and the group forecasts must be identical in A and B. Only the horizon's
revenue (what the customers spent after O, which the evaluation scores them on) may
differ, and the test checks that it does, so that it could fail.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from models_py.clustering import ClusteringConfig
from models_py.demo_data import write_demo_data
from models_py.insiders_definitions import TRAINED
from models_py.locations import DUCKDB_CONFIG
from models_py.rolling_evaluation import decide_at, refit_specification
from orchestration.dbt_runner import run_dbt
from orchestration.insiders_steps import (
    EVALUATION_DATES,
    EVALUATION_FEATURES,
    PURCHASE_HISTORIES,
    SCORES,
    read_inputs,
)
from orchestration.warehouse import load_files

# What the rolling evaluation reads, and its parents (seeds included).
SELECTED = (
    "+int_customer_features__evaluations +int_customer_scores__evaluations "
    "+int_customer_purchase_histories"
)
# The chosen model of a clustering run, as Segmenter.chosen records it.
CHOSEN = {"space": "pca", "algorithm": "kmeans", "k": 4}
FUTURE_COLUMNS = ("horizon_net_revenue", "has_full_horizon")  # after O, by design
SEED = 42


def _keep_lines_before(source: Path, origin: date, target: Path) -> int:
    """Copy ``source`` (daily layout) without its lines dated on or after ``origin``."""
    with source.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    kept = [row for row in body if len(row) == 8 and row[4][:10] < origin.isoformat()]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *kept])
    return len(body) - len(kept)


def _build(warehouse: Path, source: Path, as_of: date | None) -> None:
    report = load_files(warehouse, [source])
    assert not report.failed
    variables = {} if as_of is None else {"as_of": as_of.isoformat()}
    assert run_dbt(
        "build", warehouse, variables, ["--select", SELECTED, "--indirect-selection", "cautious"]
    ), "dbt build failed"


def _frame(warehouse: Path, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse), config=DUCKDB_CONFIG)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def _at(
    warehouse: Path, relation: str, origin: date, exclude: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The rows of ``relation`` at ``origin``, sorted, without the ``exclude`` columns."""
    columns = f"* exclude ({', '.join(exclude)})" if exclude else "*"
    frame = _frame(
        warehouse,
        f"select {columns} from {relation} where evaluation_date = ? order by customer_id",
        [origin],
    )
    frame["evaluation_date"] = pd.to_datetime(frame["evaluation_date"]).dt.date
    return frame.reset_index(drop=True)


def _what_the_pipeline_decides(warehouse: Path, origin: date) -> dict[str, Any]:
    """The pipeline's own per-date decision at ``origin`` (orchestration's decide_at:
    the clustering refitted at O, BG/NBD + Gamma-Gamma, the trained revenue model,
    every definition's members and every group's forecast), on this warehouse."""
    inputs = read_inputs(warehouse)
    decision = decide_at(inputs, origin, refit_specification(ClusteringConfig(), CHOSEN), SEED)
    return {
        "cluster": decision.cluster,
        "expected": decision.expected.sort_index(),
        "members": decision.members,
        "adjustment": decision.adjustment,
        "forecasts": {row["definition"]: row["forecast_revenue"] for row in decision.forecasts},
        "naive": {row["definition"]: row["naive_revenue"] for row in decision.forecasts},
        "horizon_months": inputs.horizon_months,
    }


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A (every line) and B (the lines on or after O deleted), built with the same
    as-of (A's default, so that both calendars hold O), and the origin O: the middle
    evaluation origin of A."""
    root = tmp_path_factory.mktemp("leakage")
    demo = write_demo_data(root / "src", customers=250, seed=3, layout="daily")
    a = root / "a.duckdb"
    _build(a, demo.path, None)
    as_of = _frame(a, "select max(evaluation_date) as d from " + EVALUATION_DATES)["d"][0]
    as_of = pd.Timestamp(as_of).date()
    origins = _frame(
        a,
        f"select evaluation_date from {EVALUATION_DATES} where is_evaluation_origin "
        "order by evaluation_date",
    )["evaluation_date"]
    assert len(origins) >= 3, "the demo data should give several evaluation origins"
    origin = pd.Timestamp(origins.iloc[len(origins) // 2]).date()

    before = root / "parts" / "before_origin.csv"
    deleted = _keep_lines_before(demo.path, origin, before)
    assert deleted > 1000  # months of lines are gone from B
    b = root / "b.duckdb"
    _build(b, before, as_of)  # the same calendar as A, although B's data end before O
    return {"a": a, "b": b, "origin": origin, "as_of": as_of}


@pytest.fixture(scope="module")
def decisions(warehouses: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: _what_the_pipeline_decides(warehouses[name], warehouses["origin"])
        for name in ("a", "b")
    }


def test_both_warehouses_have_the_same_calendar(warehouses: dict[str, Any]) -> None:
    calendars = [
        _frame(warehouses[name], f"select * from {EVALUATION_DATES} order by evaluation_date")
        for name in ("a", "b")
    ]
    pd.testing.assert_frame_equal(*calendars)
    origin = warehouses["origin"]
    row = calendars[0].assign(day=pd.to_datetime(calendars[0]["evaluation_date"]).dt.date)
    assert row.loc[row["day"] == origin, "is_evaluation_origin"].item()


def test_the_future_differs_so_the_test_could_fail(warehouses: dict[str, Any]) -> None:
    """A knows what customers spent after O, B does not: the deletion took effect."""
    origin = warehouses["origin"]
    future = {
        name: _at(warehouses[name], SCORES, origin)[["customer_id", *FUTURE_COLUMNS]]
        for name in ("a", "b")
    }
    assert future["a"]["has_full_horizon"].all()
    assert future["a"]["horizon_net_revenue"].abs().sum() > 0
    assert (future["b"]["horizon_net_revenue"].fillna(0) == 0).all()
    last = {
        name: _frame(warehouses[name], "select max(InvoiceDate) as d from raw.transactions")["d"][0]
        for name in ("a", "b")
    }
    assert last["b"] < pd.Timestamp(origin) < last["a"]


@pytest.mark.parametrize(
    ("relation", "exclude"),
    [
        (EVALUATION_FEATURES, ()),
        (SCORES, FUTURE_COLUMNS),
        (PURCHASE_HISTORIES, ()),
    ],
)
def test_dbt_inputs_at_the_origin_are_identical(
    warehouses: dict[str, Any], relation: str, exclude: tuple[str, ...]
) -> None:
    origin = warehouses["origin"]
    a = _at(warehouses["a"], relation, origin, exclude)
    b = _at(warehouses["b"], relation, origin, exclude)
    assert len(a) > 50
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_the_clustering_at_the_origin_is_identical(decisions: dict[str, dict[str, Any]]) -> None:
    a, b = decisions["a"], decisions["b"]
    assert len(a["cluster"]) > 0
    assert sorted(a["cluster"]) == sorted(b["cluster"])


def test_every_definitions_members_are_identical(decisions: dict[str, dict[str, Any]]) -> None:
    a, b = decisions["a"]["members"], decisions["b"]["members"]
    assert "expected_revenue" in a
    assert TRAINED in a  # trained on the earlier dates whose horizon was over by O
    assert a.keys() == b.keys()
    for definition in a:
        assert a[definition] == b[definition], definition


def test_the_expected_revenue_per_customer_is_identical(
    decisions: dict[str, dict[str, Any]],
) -> None:
    a, b = decisions["a"]["expected"], decisions["b"]["expected"]
    assert a.index.tolist() == b.index.tolist()
    assert a.sum() > 0
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-9)


def test_the_group_forecasts_are_identical(decisions: dict[str, dict[str, Any]]) -> None:
    a, b = decisions["a"], decisions["b"]
    assert a["horizon_months"] == b["horizon_months"] == 3
    assert a["adjustment"] == b["adjustment"]
    assert a["adjustment"].months_fitted >= 3  # the trend was fitted, not defaulted
    assert a["forecasts"].keys() == b["forecasts"].keys()
    for group, value in a["forecasts"].items():
        assert value == pytest.approx(b["forecasts"][group], rel=1e-12), group
        assert a["naive"][group] == pytest.approx(b["naive"][group], rel=1e-12), group
    assert a["forecasts"]["all_customers"] > 0
