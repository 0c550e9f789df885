"""The Python steps downstream of the clustering: membership over time, the time
backtest and the revenue forecast.

Each reads what dbt built (``intermediate.*``, ``ml.*``), calls ``models_py`` and
replaces its own ``ml`` tables in one transaction, then returns the metadata Dagster
shows. The warehouse is open only while reading and while writing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models_py.backtest import holdout_share_comparison
from models_py.clustering import ClusteringConfig, fit_segmentation, label_with_model
from models_py.clustering import load_segmenter as _load_segmenter
from models_py.forecast import (
    backtest_error,
    calibrated_total,
    calibration_ratios,
    group_interval,
    predict_revenue,
)
from orchestration.ml_tables import latest_model_path, write_tables
from orchestration.warehouse import connect

EVALUATION_FEATURES = "intermediate.int_customer_features__evaluations"
EVALUATION_DATES = "intermediate.int_evaluation_dates"
PURCHASE_HISTORIES = "intermediate.int_customer_purchase_histories"


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


def _current_run(warehouse: Path) -> tuple[str, Any, str, pd.DataFrame]:
    """The latest clustering run: run_id, as_of, model path and its labels."""
    con = connect(warehouse, read_only=False)
    try:
        path = latest_model_path(con)
        labels = con.execute(
            "select customer_id, cluster_id, cluster_name, is_insider, as_of, run_id "
            "from ml.customer_segments"
        ).df()
    finally:
        con.close()
    if path is None or labels.empty:
        raise ValueError("no clustering run yet: materialise ml/customer_segments first")
    return str(labels["run_id"].iloc[0]), labels["as_of"].iloc[0], path, labels


# --- membership over time -----------------------------------------------------------


def evaluate_membership(warehouse: Path, log: logging.Logger | Any) -> dict[str, Any]:
    """Score every monthly re-evaluation date with the current model.

    The history is the current rule replayed: the same model (and so the same
    definition of an Insider) applied to what each customer looked like at each
    date. The current date takes the clustering run's own labels.
    """
    run_id, as_of, model_path, labels = _current_run(warehouse)
    frames = _read(
        warehouse,
        {
            "features": f"select * from {EVALUATION_FEATURES} order by evaluation_date, "
            "customer_id",
            "dates": f"select * from {EVALUATION_DATES} order by evaluation_date",
        },
    )
    segmenter = _load_segmenter(Path(model_path))
    current = pd.Timestamp(as_of)
    evaluations = []
    for date, customers in frames["features"].groupby("evaluation_date", sort=True):
        if pd.Timestamp(date) == current:
            scored = labels[["customer_id", "cluster_id", "cluster_name", "is_insider"]]
        else:
            scored = label_with_model(customers.reset_index(drop=True), segmenter)
        evaluations.append(scored.assign(evaluation_date=pd.Timestamp(date).date()))
    table = pd.concat(evaluations, ignore_index=True).assign(as_of=as_of, run_id=run_id)
    _write(warehouse, replace={"membership_evaluations": table})
    per_date = table.groupby("evaluation_date")["is_insider"].agg(["size", "sum"])
    log.info(f"membership: {len(per_date)} evaluation dates scored with {model_path}")
    return {
        "evaluation_dates": len(per_date),
        "first_evaluation": str(per_date.index.min()),
        "last_evaluation": str(per_date.index.max()),
        "qualifying_per_date": {str(d): int(r["sum"]) for d, r in per_date.iterrows()},
    }


# --- time backtest ------------------------------------------------------------------


def backtest_specification(config: ClusteringConfig, chosen: dict[str, Any]) -> ClusteringConfig:
    """The current run's chosen model, and only it, to refit at the cut-off."""
    k = int(chosen["k"])
    return dataclasses.replace(
        config,
        spaces=(str(chosen["space"]),),
        algorithms=(str(chosen["algorithm"]),),
        k_min=max(2, k),
        k_max=max(2, k),
        business_k_min=min(config.business_k_min, k),
        business_k_max=max(config.business_k_max, k),
        min_cluster_share=0.0,
        bootstrap_runs=0,
    )


def run_backtest(
    warehouse: Path, n_random: int, seed: int, log: logging.Logger | Any
) -> dict[str, Any]:
    """Choose Insiders at the cut-off with the current model specification, refitted on
    the data before it, and measure their share of the revenue after it."""
    run_id, as_of, model_path, _ = _current_run(warehouse)
    frames = _read(
        warehouse,
        {
            "cutoff": f"select evaluation_date from {EVALUATION_DATES} where is_backtest_cutoff",
            "features": f"""
                select features.* from {EVALUATION_FEATURES} as features
                inner join {EVALUATION_DATES} as dates using (evaluation_date)
                where dates.is_backtest_cutoff order by customer_id""",
            "holdout": f"""
                select customer_id, holdout_net_revenue from {PURCHASE_HISTORIES}
                where period = 'backtest'""",
        },
    )
    if frames["cutoff"].empty:
        raise ValueError(
            "the data are shorter than the backtest's hold-out (var forecast_horizon_months):"
            " no cut-off date to backtest from"
        )
    cutoff = frames["cutoff"]["evaluation_date"].iloc[0]
    segmenter = _load_segmenter(Path(model_path))
    spec = backtest_specification(segmenter.config or ClusteringConfig(), segmenter.chosen)
    fitted = fit_segmentation(frames["features"], spec)
    chosen_ids = fitted.labels.loc[fitted.labels["is_insider"], "customer_id"]
    holdout = frames["holdout"].set_index("customer_id")["holdout_net_revenue"]
    comparison = holdout_share_comparison(
        frames["features"][["customer_id", "monetary"]],
        holdout,
        chosen_ids,
        n_random=n_random,
        seed=seed,
    )
    model = f"{spec.algorithms[0]} k={fitted.chosen['k']} on {spec.spaces[0]} (refitted)"
    stamp = {"run_id": run_id, "as_of": as_of, "cutoff_date": cutoff}
    groups = comparison.assign(holdout_end=as_of, model=model, **stamp)
    members = pd.DataFrame({"customer_id": chosen_ids.to_numpy()}).assign(**stamp)
    _write(warehouse, replace={"backtest_groups": groups, "backtest_members": members})
    shares = dict(
        zip(comparison["customer_group"], comparison["share_of_holdout_revenue"], strict=True)
    )
    log.info(f"backtest from {cutoff}: shares of the hold-out revenue {shares}")
    return {
        "cutoff_date": str(cutoff),
        "holdout_end": str(as_of),
        "model": model,
        "insiders_at_cutoff": len(chosen_ids),
        **{f"share_{group}": float(share) for group, share in shares.items()},
    }


# --- revenue forecast ---------------------------------------------------------------


def run_forecast(
    warehouse: Path, confidence: float, seed: int, log: logging.Logger | Any
) -> dict[str, Any]:
    """Per-customer expected revenue for the horizon, summed per group with an
    interval calibrated on the backtest (fit before the cut-off, predict the hold-out)."""
    run_id, as_of, _, labels = _current_run(warehouse)
    frames = _read(
        warehouse,
        {
            "histories": f"select * from {PURCHASE_HISTORIES} where has_history",
            "backtest_members": "select customer_id from ml.backtest_members",
        },
    )
    histories = frames["histories"]
    current = histories[histories["period"] == "forecast"]
    past = histories[histories["period"] == "backtest"]
    if current.empty:
        raise ValueError("no purchase histories at the as-of: build the dbt project first")
    forecast = predict_revenue(current, int(current["horizon_days"].iloc[0]), seed=seed)
    start, end = current["period_start"].iloc[0], current["period_end"].iloc[0]
    customers = forecast.customers.assign(
        forecast_start=start, forecast_end=end, as_of=as_of, run_id=run_id
    )
    insiders = set(labels.loc[labels["is_insider"], "customer_id"])
    rows: list[dict[str, Any]] = []
    backtest_insiders = set(frames["backtest_members"]["customer_id"])
    ratios: dict[str, np.ndarray] = {}
    seconds = forecast.seconds
    if not past.empty:
        hindsight = predict_revenue(past, int(past["horizon_days"].iloc[0]), seed=seed)
        seconds += hindsight.seconds
        scored = hindsight.customers.merge(
            past[["customer_id", "holdout_gross_revenue"]], on="customer_id"
        )
        for group, members in _groups(scored["customer_id"], backtest_insiders).items():
            part = scored[members]
            predicted = float(part["expected_revenue"].sum())
            actual = float(part["holdout_gross_revenue"].sum())
            if len(part) >= 2 and predicted > 0:
                ratios[group] = calibration_ratios(
                    part["expected_revenue"], part["holdout_gross_revenue"], seed=seed
                )
            rows.append(
                {
                    "period": "backtest",
                    "customer_group": group,
                    "customers": len(part),
                    "period_start": past["period_start"].iloc[0],
                    "period_end": past["period_end"].iloc[0],
                    "horizon_days": int(past["horizon_days"].iloc[0]),
                    "expected_revenue": predicted,
                    "actual_revenue": actual,
                    "parameters": _json(hindsight.parameters),
                    **backtest_error(predicted, actual),
                }
            )
    for group, members in _groups(customers["customer_id"], insiders).items():
        expected = float(customers.loc[members, "expected_revenue"].sum())
        low, high = (
            group_interval(expected, ratios[group], confidence) if group in ratios else (None, None)
        )
        calibrated = calibrated_total(expected, ratios[group]) if group in ratios else None
        rows.append(
            {
                "period": "forecast",
                "customer_group": group,
                "customers": int(members.sum()),
                "period_start": start,
                "period_end": end,
                "horizon_days": forecast.horizon_days,
                "expected_revenue": expected,
                "lower_bound": low,
                "upper_bound": high,
                "calibrated_revenue": calibrated,
                "confidence": confidence if low is not None else None,
                "interval_method": "backtest_calibrated" if low is not None else None,
                "parameters": _json(forecast.parameters),
            }
        )
    summary = pd.DataFrame(rows).assign(run_id=run_id, as_of=as_of)
    for column in (
        "lower_bound",
        "upper_bound",
        "calibrated_revenue",
        "confidence",
        "interval_method",
        "actual_revenue",
        "error",
        "relative_error",
        "absolute_percentage_error",
    ):
        if column not in summary:
            summary[column] = None
    _write(warehouse, replace={"customer_forecast": customers, "revenue_forecast": summary})
    log.info(
        f"forecast {start:%Y-%m-%d} to {end:%Y-%m-%d}: "
        + ", ".join(
            f"{r.period} {r.customer_group} {r.expected_revenue:,.0f}" for r in summary.itertuples()
        )
    )
    insiders_row = summary[
        (summary["period"] == "forecast") & (summary["customer_group"] == "insiders")
    ].iloc[0]
    metadata: dict[str, Any] = {
        "forecast_start": str(start),
        "forecast_end": str(end),
        "insiders_expected_revenue": float(insiders_row["expected_revenue"]),
        "seconds_fitting": round(seconds, 2),
        **{k: v for k, v in forecast.parameters.items()},
    }
    if insiders_row["lower_bound"] is not None and not pd.isna(insiders_row["lower_bound"]):
        metadata["insiders_interval"] = (
            f"{insiders_row['lower_bound']:,.0f} to {insiders_row['upper_bound']:,.0f}"
        )
        metadata["insiders_calibrated_revenue"] = float(insiders_row["calibrated_revenue"])
    backtest = summary[(summary["period"] == "backtest")]
    for _, row in backtest.iterrows():
        if row["relative_error"] is not None and not pd.isna(row["relative_error"]):
            metadata[f"backtest_relative_error_{row['customer_group']}"] = float(
                row["relative_error"]
            )
    return metadata


def _groups(customer_ids: pd.Series, insiders: set[str]) -> dict[str, pd.Series]:
    """Boolean masks of the groups every forecast is summed over."""
    is_insider = customer_ids.isin(insiders)
    return {"insiders": is_insider, "others": ~is_insider, "all": is_insider | ~is_insider}


def _json(parameters: dict[str, float]) -> str:
    return json.dumps(parameters)
