"""The Python step downstream of the clustering: the rolling-origin evaluation.

At every monthly re-evaluation date it refits the clustering's chosen model on the
data before the date, fits the expected-revenue model where it is needed, and lets
every candidate definition of the Insiders pick its members; at every evaluation
origin it scores them on the horizon's revenue and forecasts the group's revenue.
It reads what dbt built (``intermediate.*``, ``ml.*``), calls ``models_py`` and
replaces its ``ml`` tables in one transaction; dbt chooses the definition. The
warehouse is open only while reading and while writing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from models_py.clustering import ClusteringConfig, fit_segmentation, load_segmenter
from models_py.forecast import predict_revenue
from models_py.group_forecast import INTERVAL_METHOD, adjustment, log_error, rolling_interval
from models_py.insiders_definitions import (
    DEFINITIONS,
    evaluate_definitions,
    select_members,
)
from orchestration.ml_tables import latest_model_path, write_tables
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


# --- the chosen model refitted at a date ----------------------------------------------


def refit_specification(config: ClusteringConfig, chosen: dict[str, Any]) -> ClusteringConfig:
    """The current run's chosen model, and only it, to refit at an earlier date: the
    clustering at a date sees only the data before it (no sweep, no bootstrap)."""
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


def cluster_members_at(features: pd.DataFrame, spec: ClusteringConfig) -> list[str]:
    """The Insiders cluster of the chosen model refitted on ``features`` (one date)."""
    fitted = fit_segmentation(features.reset_index(drop=True), spec)
    return fitted.labels.loc[fitted.labels["is_insider"], "customer_id"].astype(str).tolist()


def expected_revenue_at(histories: pd.DataFrame, seed: int) -> tuple[pd.Series, float, dict]:
    """BG/NBD + Gamma-Gamma fitted on the histories of one date, over its horizon."""
    horizon = int(histories["horizon_days"].iloc[0])
    forecast = predict_revenue(histories, horizon, seed=seed)
    customers = forecast.customers.set_index("customer_id")
    return (
        customers["expected_revenue"],
        forecast.seconds,
        {
            "customers": forecast.customers,
            "parameters": forecast.parameters,
        },
    )


# --- the rolling-origin evaluation -------------------------------------------------


def run_rolling_evaluation(
    warehouse: Path,
    n_random: int,
    confidence: float,
    seed: int,
    log: logging.Logger | Any,
) -> dict[str, Any]:
    """Every definition at every date, scored at every origin; the group forecasts."""
    run_id, as_of, model_path, labels = _current_run(warehouse)
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
    for name in ("dates", "features", "scores", "histories"):
        for column in ("evaluation_date", "horizon_end"):
            if column in frames[name]:
                frames[name][column] = pd.to_datetime(frames[name][column]).dt.date
    dates = frames["dates"]
    origins = set(dates.loc[dates["is_evaluation_origin"], "evaluation_date"])
    if not origins:
        log.warning(
            "no evaluation origin: the data are shorter than var evaluation_min_history_months"
            " plus var forecast_horizon_months; the clustering's Insiders are used"
        )
    segmenter = load_segmenter(Path(model_path))
    spec = refit_specification(segmenter.config or ClusteringConfig(), segmenter.chosen)
    features = dict(tuple(frames["features"].groupby("evaluation_date", sort=True)))
    scores = dict(tuple(frames["scores"].groupby("evaluation_date", sort=True)))
    histories = dict(tuple(frames["histories"].groupby("evaluation_date", sort=True)))
    monthly = frames["monthly"].set_index("month")["revenue"]
    first_day = pd.Timestamp(frames["monthly"]["first_invoice_at"].min()).normalize()
    current = pd.Timestamp(as_of).date()
    first = dates.iloc[0]
    horizon_months = (
        pd.Timestamp(first["horizon_end"]).year - first["evaluation_date"].year
    ) * 12 + (pd.Timestamp(first["horizon_end"]).month - first["evaluation_date"].month)

    member_rows, evaluation_rows, forecast_rows = [], [], []
    seconds_fitting, customer_forecast, parameters = 0.0, None, {}
    for date in dates["evaluation_date"]:
        day = pd.Timestamp(date).date()
        if day not in scores:
            continue
        if day == current:
            cluster = labels.loc[labels["is_insider"], "customer_id"].astype(str).tolist()
        else:
            try:
                cluster = cluster_members_at(features[day], spec)
            except ValueError as error:  # too few customers at an early date
                log.info(f"{day}: the clustering cannot be refitted ({error}); date skipped")
                continue
        expected = None
        if day in histories and (day == current or day in origins):
            expected, seconds, fit = expected_revenue_at(histories[day], seed)
            seconds_fitting += seconds
            if day == current:
                customer_forecast, parameters = fit["customers"], fit["parameters"]
        members = select_members(scores[day], cluster, expected)
        for definition, ids in members.items():
            member_rows.append(
                pd.DataFrame({"customer_id": ids, "member_rank": range(1, len(ids) + 1)}).assign(
                    evaluation_date=day, definition=definition
                )
            )
        if day in origins:
            evaluated = evaluate_definitions(
                scores[day], members, n_random=n_random, confidence=confidence, seed=seed
            )
            evaluation_rows.append(evaluated.assign(origin_date=day))
        forecast_rows += _group_forecasts(
            day, scores[day], members, expected, monthly, first_day, horizon_months
        )
        if day in origins:
            log.info(
                f"origin {day}: {len(cluster)} members; shares "
                + ", ".join(
                    f"{r.definition} {r.share_of_horizon_revenue:.3f}"
                    for r in evaluated.itertuples()
                )
            )
    stamp = {"run_id": run_id, "as_of": as_of}
    horizon_end = dates.set_index("evaluation_date")["horizon_end"]
    forecasts = _with_intervals(pd.DataFrame(forecast_rows), origins, horizon_end)
    evaluation = (
        pd.concat(evaluation_rows, ignore_index=True)
        if evaluation_rows
        else pd.DataFrame(columns=["origin_date", "definition"])
    )
    evaluation = evaluation.assign(horizon_end=evaluation["origin_date"].map(horizon_end), **stamp)
    members_table = pd.concat(member_rows, ignore_index=True).assign(**stamp)
    definitions = pd.DataFrame(
        {
            "definition": list(DEFINITIONS),
            "description": list(DEFINITIONS.values()),
            "sort_order": range(1, len(DEFINITIONS) + 1),
        }
    ).assign(**stamp)
    if customer_forecast is None:
        raise ValueError("no purchase histories at the as-of: build the dbt project first")
    current_end = pd.Timestamp(horizon_end[current]).date()
    customers = customer_forecast.assign(forecast_start=current, forecast_end=current_end, **stamp)
    forecasts = forecasts.assign(
        horizon_end=forecasts["origin_date"].map(horizon_end),
        interval_method=INTERVAL_METHOD,
        parameters=json.dumps(parameters),
        **stamp,
    )
    _write(
        warehouse,
        replace={
            "insiders_definitions": definitions,
            "definition_members": members_table,
            "definition_evaluation": evaluation,
            "group_forecasts": forecasts,
            "customer_forecast": customers,
        },
    )
    return _metadata(evaluation, forecasts, current, seconds_fitting)


def _group_forecasts(
    day: Any,
    scores: pd.DataFrame,
    members: dict[str, list[str]],
    expected: pd.Series | None,
    monthly: pd.Series,
    first_day: pd.Timestamp,
    horizon_months: int,
) -> list[dict[str, Any]]:
    """Each definition's group (and all customers): last-horizon revenue, the adjusted
    forecast, the expected-revenue model's sum and, once the horizon is over, actuals."""
    adjust = adjustment(monthly, first_day, pd.Timestamp(day), horizon_months)
    by_id = scores.assign(customer_id=scores["customer_id"].astype(str)).set_index("customer_id")
    groups = {**members, "all_customers": by_id.index.tolist()}
    rows = []
    for group, ids in groups.items():
        part = by_id.loc[ids]
        naive = float(part["recent_net_revenue"].sum())
        actual = part["horizon_net_revenue"]
        rows.append(
            {
                "origin_date": day,
                "definition": group,
                "customers": len(ids),
                "naive_revenue": naive,
                "trend_factor": adjust.trend_factor,
                "seasonal_factor": adjust.seasonal_factor,
                "season_observed": adjust.season_observed,
                "forecast_revenue": naive * adjust.factor,
                "model_revenue": None
                if expected is None
                else float(expected.reindex(ids).fillna(0.0).sum()),
                "actual_revenue": None if actual.isna().any() else float(actual.sum()),
            }
        )
    return rows


def _with_intervals(forecasts: pd.DataFrame, origins: set, horizon_end: pd.Series) -> pd.DataFrame:
    """Each row's interval from the same group's errors at earlier origins whose horizon
    was over by the row's date (never the row's own future)."""
    out = forecasts.copy()
    out["log_error"] = [
        log_error(f, a) if a is not None and not pd.isna(a) else None
        for f, a in zip(out["forecast_revenue"], out["actual_revenue"], strict=True)
    ]
    ended = out["origin_date"].map(lambda d: pd.Timestamp(horizon_end[d]))
    scored = out["origin_date"].isin(origins) & out["log_error"].notna()
    lows, highs, halves, used = [], [], [], []
    for position, row in enumerate(out.itertuples()):
        date = pd.Timestamp(row.origin_date)
        behind = scored & (out["definition"] == row.definition) & (ended <= date)
        behind.iloc[position] = False
        errors = out.loc[behind, "log_error"].tolist()
        low, high, half = rolling_interval(row.forecast_revenue, errors)
        lows.append(low)
        highs.append(high)
        halves.append(half)
        used.append(len(errors))
    return out.assign(
        lower_bound=lows, upper_bound=highs, log_half_width=halves, errors_behind_interval=used
    )


def _metadata(
    evaluation: pd.DataFrame, forecasts: pd.DataFrame, current: Any, seconds_fitting: float
) -> dict[str, Any]:
    """What Dagster shows: the per-origin shares and the current forecasts."""
    metadata: dict[str, Any] = {
        "origins": int(evaluation["origin_date"].nunique()),
        "seconds_fitting_expected_revenue": round(seconds_fitting, 2),
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
