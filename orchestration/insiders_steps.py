"""The Python step downstream of the clustering: the rolling-origin evaluation.

Wiring only: reads what dbt built (``intermediate.*``, ``marts.dim_customers``,
``ml.*``), calls ``models_py.rolling_evaluation`` and replaces its ``ml`` tables in one
transaction; dbt then chooses the definition (``insiders.definition_choice``). The
clustering run's settings and chosen model come from its record in
``ml.segmentation_runs`` (no model file is unpickled here). The warehouse is open only
while reading and while writing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from models_py.clustering import ClusteringConfig
from models_py.rolling_evaluation import (
    EvaluationInputs,
    evaluate,
    inputs_from_frames,
    refit_specification,
)
from models_py.settings import RANDOM_GROUPS_CONFIDENCE
from orchestration.ml_tables import ensure_ml_tables, recorded_run, write_tables
from orchestration.warehouse import connect

EVALUATION_FEATURES = "intermediate.int_customer_features__evaluations"
EVALUATION_DATES = "intermediate.int_evaluation_dates"
PURCHASE_HISTORIES = "intermediate.int_customer_purchase_histories"
SCORES = "intermediate.int_customer_scores__evaluations"
MONTHLY_REVENUE = """
    with lines as (
        select invoice_at, revenue from intermediate.int_transaction_lines__rules_applied
        where exclusion_rule is null and customer_id is not null
    )
    select date_trunc('month', invoice_at) as month, sum(revenue) as revenue,
        (select min(invoice_at) from lines) as first_invoice_at
    from lines group by 1 order by 1
"""


def _read(warehouse: Path, queries: dict[str, str]) -> dict[str, pd.DataFrame]:
    con = connect(warehouse, read_only=False)
    try:
        return {name: con.execute(sql).df() for name, sql in queries.items()}
    finally:
        con.close()


def _write(warehouse: Path, **kwargs: Any) -> None:
    con = connect(warehouse)
    try:
        write_tables(con, **kwargs)
    finally:
        con.close()


def _current_run(
    warehouse: Path,
) -> tuple[str, Any, ClusteringConfig, dict[str, Any], pd.DataFrame]:
    """The clustering run whose labels are current: run_id, as_of, its settings, its
    chosen model and its labels."""
    con = connect(warehouse, read_only=False)
    try:
        ensure_ml_tables(con)
        labels = con.execute("select * exclude (model) from ml.customer_segments").df()
        run = recorded_run(con, str(labels["run_id"].iloc[0])) if not labels.empty else None
    finally:
        con.close()
    if run is None or not run.chosen:
        raise ValueError("no clustering run yet: materialise ml/customer_segments first")
    return run.run_id, labels["as_of"].iloc[0], _clustering_config(run.config), run.chosen, labels


def _clustering_config(recorded: dict[str, Any]) -> ClusteringConfig:
    """The settings a run recorded (``ClusteringConfig.to_dict``); a setting this version
    does not know is left out, one it lacks takes the default."""
    known = {f.name for f in dataclasses.fields(ClusteringConfig)}
    return ClusteringConfig(**{k: v for k, v in recorded.items() if k in known})


# --- the rolling-origin evaluation -------------------------------------------------


def read_inputs(warehouse: Path) -> EvaluationInputs:
    """Read the point-in-time inputs of every evaluation date (built by dbt)."""
    frames = _read(
        warehouse,
        {
            "dates": f"select * from {EVALUATION_DATES} order by evaluation_date",
            "features": f"select * from {EVALUATION_FEATURES} order by evaluation_date, "
            "customer_id",
            "scores": f"select * from {SCORES} order by evaluation_date, customer_id",
            "histories": f"select * from {PURCHASE_HISTORIES} order by evaluation_date, "
            "customer_id",
            "monthly": MONTHLY_REVENUE,
        },
    )
    return inputs_from_frames(**frames)


def run_rolling_evaluation(
    warehouse: Path,
    n_random: int,
    confidence: float = RANDOM_GROUPS_CONFIDENCE,
    seed: int = 42,
    log: logging.Logger | Any = logging.getLogger(__name__),  # noqa: B008
) -> dict[str, Any]:
    """Read, evaluate every definition at every date, write ``ml``; Dagster metadata."""
    run_id, as_of, clustering, chosen, labels = _current_run(warehouse)
    inputs = read_inputs(warehouse)
    customers = _read(
        warehouse, {"customers": "select * from marts.dim_customers order by customer_id"}
    )["customers"]
    spec = refit_specification(clustering, chosen)
    started = time.perf_counter()
    result = evaluate(
        inputs,
        labels,
        customers,
        pd.Timestamp(as_of).date(),
        spec,
        n_random=n_random,
        confidence=confidence,
        seed=seed,
        log=log,
    )
    seconds = time.perf_counter() - started
    stamp = {"run_id": run_id, "as_of": as_of}
    _write(
        warehouse,
        replace={
            "insiders_definitions": result.definitions.assign(**stamp),
            "definition_members": result.members.assign(**stamp),
            "definition_evaluation": result.evaluation.assign(**stamp),
            "group_forecasts": result.forecasts.assign(**stamp),
            "customer_forecast": result.customer_forecast.assign(**stamp),
            "eligibility_rules": result.eligibility_rules.assign(**stamp),
            "group_evidence": result.group_evidence.assign(**stamp),
        },
    )
    return _metadata(result.evaluation, result.forecasts, pd.Timestamp(as_of).date(), seconds)


def _metadata(
    evaluation: pd.DataFrame, forecasts: pd.DataFrame, current: Any, seconds: float
) -> dict[str, Any]:
    """What Dagster shows: the per-origin shares and the current forecasts."""
    metadata: dict[str, Any] = {
        "origins": int(evaluation["origin_date"].nunique()),
        "seconds_evaluating": round(seconds, 2),
    }
    if not evaluation.empty:
        wide = evaluation.pivot(
            index="origin_date", columns="definition", values="share_of_horizon_revenue"
        )
        metadata["shares_of_horizon_revenue"] = wide.reset_index().to_markdown(
            index=False, floatfmt=".3f"
        )
    now = forecasts[forecasts["origin_date"] == current]
    metadata["current_forecasts"] = now[
        [
            "definition",
            "customers",
            "naive_revenue",
            "forecast_revenue",
            "lower_bound",
            "upper_bound",
        ]
    ].to_markdown(index=False, floatfmt=",.0f")
    return metadata
