"""The rolling-origin evaluation of the Insiders' definitions and of their forecast.

At every monthly re-evaluation date the clustering's chosen model is refitted on the
data before the date, the expected-revenue model (BG/NBD + Gamma-Gamma) is fitted at
the origins and the as-of, the revenue model is trained on the earlier dates whose
horizon was over, and every candidate definition picks its members; at every
evaluation origin each definition is scored on the horizon's revenue and each group's
revenue is forecast. Everything at a date is decided from the data before it
(:func:`decide_at`; a test deletes the lines after an origin and gets the same
decision). Pure functions over DataFrames: orchestration reads dbt's tables (one
date at a time, :class:`EvaluationInputs`), calls :func:`evaluate` (the monthly refit)
or :func:`score_current` (the daily run: the refit's history kept, the as-of decided
again with its saved BG/NBD + Gamma-Gamma parameters) and writes the ``ml`` tables;
dbt chooses the definition.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import pandas as pd
from threadpoolctl import threadpool_limits

from models_py.clustering import ClusteringConfig, fit_segmentation
from models_py.clustering.labelling import Segmenter
from models_py.eligibility import eligibility_rules
from models_py.evidence import group_differences
from models_py.forecast import CustomerForecast, predict_revenue, score_revenue
from models_py.group_forecast import (
    INTERVAL_METHOD,
    Adjustment,
    adjustment,
    log_error,
    rolling_interval,
)
from models_py.insiders_definitions import (
    DEFINITIONS,
    EVALUATION_COLUMNS,
    TRAINED,
    evaluate_definitions,
    select_members,
)
from models_py.revenue_model import fit_revenue_model, predict_with
from models_py.settings import RANDOM_GROUPS_CONFIDENCE


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


def cluster_model_at(features: pd.DataFrame, spec: ClusteringConfig) -> tuple[list[str], Segmenter]:
    """The Insiders cluster of the chosen model refitted on ``features`` (one date), and
    the fitted model (which labels customers the fit did not see the same way).

    One BLAS thread: the matrices are a few thousand rows by nine columns, and on a busy
    2-core machine OpenBLAS's threads made the PCA's SVD ten times slower.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        fitted = fit_segmentation(features.reset_index(drop=True), spec)
    members = fitted.labels.loc[fitted.labels["is_insider"], "customer_id"].astype(str).tolist()
    return members, fitted.segmenter


def expected_revenue_at(
    histories: pd.DataFrame, seed: int, posterior: dict[str, dict[str, float]] | None = None
) -> CustomerForecast:
    """BG/NBD + Gamma-Gamma over the horizon of one date: fitted on its histories, or,
    given ``posterior`` (a refit run's MAP estimates), scored with those parameters."""
    horizon = int(histories["horizon_days"].iloc[0])
    if posterior is not None:
        return score_revenue(histories, horizon, posterior)
    return predict_revenue(histories, horizon, seed=seed)


# --- inputs and the decision at one date --------------------------------------------


class ModelRows(Protocol):
    """The trained revenue model's rows: every customer at every date with its scores,
    features and the date's ``horizon_end``, sorted by date then customer."""

    def until(self, day: date) -> pd.DataFrame:
        """The rows of the dates whose horizon was over by ``day`` (what it learns from)."""
        ...

    def at(self, day: date) -> pd.DataFrame:
        """The rows of ``day`` (what it ranks)."""
        ...


@dataclass
class EvaluationInputs:
    """What the evaluation reads from dbt, by evaluation date.

    ``features``, ``scores`` and ``histories`` give one date's rows at a time (the
    orchestration reads them per date from SQL, so that only one date's customers are
    in memory at once, whatever the number of dates and customers); ``modelled`` gives
    the trained revenue model's rows. Dates are ``datetime.date``.
    """

    dates: pd.DataFrame
    features: Mapping[date, pd.DataFrame]
    scores: Mapping[date, pd.DataFrame]
    histories: Mapping[date, pd.DataFrame]
    modelled: ModelRows
    monthly: pd.Series
    first_day: pd.Timestamp
    horizon_months: int

    @property
    def origins(self) -> set[date]:
        return set(self.dates.loc[self.dates["is_evaluation_origin"], "evaluation_date"])


def horizon_months(dates: pd.DataFrame) -> int:
    """The horizon in months, from the first date's evaluation date and horizon end."""
    start, end = (pd.Timestamp(dates[c].iloc[0]) for c in ("evaluation_date", "horizon_end"))
    return (end.year - start.year) * 12 + end.month - start.month


@dataclass
class Learned:
    """What was learned at one date from the data before it: enough to take the same
    decision for customers the fits never saw (on Spark, every customer where they
    live, after fits on a sample: ``orchestration.spark_evaluation``)."""

    segmenter: Segmenter | None  # None: the clustering step's labels were given
    posterior: dict[str, dict[str, float]] | None  # None: no expected-revenue model
    revenue_model: Any | None  # None: nothing to train on yet
    adjustment: Adjustment


@dataclass
class Decision:
    """Everything decided at one date, from the data before it only."""

    cluster: list[str]
    expected: pd.Series | None
    expected_fit: CustomerForecast | None
    members: dict[str, list[str]]
    adjustment: Adjustment
    forecasts: list[dict[str, Any]] = field(default_factory=list)
    scores: pd.DataFrame | None = None  # the date's scores, read once
    segmenter: Segmenter | None = None
    revenue_model: Any | None = None

    @property
    def learned(self) -> Learned:
        posterior = None if self.expected_fit is None else self.expected_fit.posterior
        return Learned(self.segmenter, posterior, self.revenue_model, self.adjustment)


def decide_at(
    inputs: EvaluationInputs,
    day: date,
    spec: ClusteringConfig,
    seed: int,
    cluster: list[str] | None = None,
    fit_expected: bool = True,
    posterior: dict[str, dict[str, float]] | None = None,
) -> Decision:
    """The Insiders cluster (refitted, unless given), the expected-revenue model (fitted,
    or scored with ``posterior``) and trained model, every definition's members and
    every group's forecast at ``day``."""
    segmenter = None
    if cluster is None:
        cluster, segmenter = cluster_model_at(inputs.features[day], spec)
    expected, fit = None, None
    if fit_expected and day in inputs.histories:
        fit = expected_revenue_at(inputs.histories[day], seed, posterior)
        expected = fit.customers.set_index("customer_id")["expected_revenue"]
    target = inputs.modelled.at(day)
    model = None if target.empty else fit_revenue_model(inputs.modelled.until(day), seed)
    trained = None if model is None else predict_with(model, target)
    scores = inputs.scores[day]
    members = select_members(
        scores, cluster, expected, None if trained is None else {TRAINED: trained}
    )
    adjust = adjustment(inputs.monthly, inputs.first_day, pd.Timestamp(day), inputs.horizon_months)
    decision = Decision(
        cluster, expected, fit, members, adjust, scores=scores, segmenter=segmenter,
        revenue_model=model,
    )  # fmt: skip
    decision.forecasts = _group_forecasts(day, scores, members, expected, adjust)
    return decision


@dataclass
class Evaluation:
    """The ``ml`` tables of one evaluation (without run_id and as_of)."""

    definitions: pd.DataFrame
    members: pd.DataFrame
    evaluation: pd.DataFrame
    forecasts: pd.DataFrame
    customer_forecast: pd.DataFrame
    eligibility_rules: pd.DataFrame
    group_evidence: pd.DataFrame
    # The as-of's BG/NBD + Gamma-Gamma MAP estimates at full precision (what a daily
    # run scores with: :func:`score_current`).
    posterior: dict[str, dict[str, float]] = field(default_factory=dict)
    # What was learned at each decided date (models fitted on these inputs).
    learned: dict[date, Learned] = field(default_factory=dict)
    # The as-of's expected-revenue parameters in words (group_forecasts.parameters).
    parameters: dict[str, Any] = field(default_factory=dict)


def definitions_table() -> pd.DataFrame:
    """The candidate definitions in words, in the report's order."""
    return pd.DataFrame(
        {
            "definition": list(DEFINITIONS),
            "description": list(DEFINITIONS.values()),
            "sort_order": range(1, len(DEFINITIONS) + 1),
        }
    )


def evaluate(
    inputs: EvaluationInputs,
    labels: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: date,
    spec: ClusteringConfig,
    n_random: int = 1000,
    confidence: float = RANDOM_GROUPS_CONFIDENCE,
    seed: int = 42,
    log: logging.Logger | Any = logging.getLogger(__name__),  # noqa: B008
    explain: bool = True,
) -> Evaluation:
    """Every definition at every date, scored at every origin; the group forecasts.

    ``labels``: the clustering run's labels at ``as_of`` (its Insiders cluster is the
    current date's); ``customers``: ``marts.dim_customers`` at ``as_of``, for the
    entry rules and the in-sample evidence of every definition (``explain=False``:
    not computed, the caller explains other members).
    """
    dates, origins = inputs.dates, inputs.origins
    if not origins:
        log.warning(
            "no evaluation origin: the data are shorter than var evaluation_min_history_months"
            " plus var forecast_horizon_months; the clustering's Insiders are used"
        )
    current = pd.Timestamp(as_of).date()

    member_rows, evaluation_rows, forecast_rows, rules, evidence = [], [], [], [], []
    customer_forecast, parameters, posterior = None, {}, {}
    learned: dict[date, Learned] = {}
    for day in dates["evaluation_date"]:
        if day not in inputs.scores:
            continue
        try:
            decision = decide_at(
                inputs,
                day,
                spec,
                seed,
                cluster=labels.loc[labels["is_insider"], "customer_id"].astype(str).tolist()
                if day == current
                else None,
                fit_expected=day == current or day in origins,
            )
        except ValueError as error:  # too few customers at an early date
            if day == current:
                raise
            log.info(f"{day}: no decision possible ({error}); date skipped")
            continue
        members = decision.members
        learned[day] = decision.learned
        member_rows.append(member_frame(day, members))
        forecast_rows += decision.forecasts
        if day == current:
            if explain:
                rules, evidence = explain_members(customers, members, seed)
            if decision.expected_fit is not None:
                customer_forecast = decision.expected_fit.customers
                parameters = decision.expected_fit.parameters
                posterior = decision.expected_fit.posterior
        if day in origins:
            evaluated = evaluate_definitions(
                decision.scores, members, n_random=n_random, confidence=confidence, seed=seed
            )
            evaluation_rows.append(evaluated.assign(origin_date=day))
            log.info(
                f"origin {day}: {len(decision.cluster)} members; shares "
                + ", ".join(
                    f"{r.definition} {r.share_of_horizon_revenue:.3f}"
                    for r in evaluated.itertuples()
                )
            )
    horizon_end = dates.set_index("evaluation_date")["horizon_end"]
    members_table = pd.concat(member_rows, ignore_index=True)
    if customer_forecast is None:
        raise ValueError("no purchase histories at the as-of: build the dbt project first")
    current_end = pd.Timestamp(horizon_end[current]).date()
    return Evaluation(
        definitions=definitions_table(),
        members=members_table,
        evaluation=evaluation_table(evaluation_rows, horizon_end),
        forecasts=forecast_table(forecast_rows, origins, horizon_end, parameters),
        customer_forecast=customer_forecast.assign(
            forecast_start=current, forecast_end=current_end
        ),
        eligibility_rules=_concat(rules),
        group_evidence=_concat(evidence),
        posterior=posterior,
        learned=learned,
        parameters=parameters,
    )


def member_frame(day: date, members: Mapping[str, list[str]]) -> pd.DataFrame:
    """``ml.definition_members`` rows of one date (without run_id and as_of)."""
    return pd.concat(
        [
            pd.DataFrame({"customer_id": ids, "member_rank": range(1, len(ids) + 1)}).assign(
                evaluation_date=day, definition=definition
            )
            for definition, ids in members.items()
        ],
        ignore_index=True,
    )


def evaluation_table(rows: list[pd.DataFrame], horizon_end: pd.Series) -> pd.DataFrame:
    """``ml.definition_evaluation`` from the origins' rows (``evaluate_definitions``
    with ``origin_date``); ``horizon_end`` by evaluation date."""
    evaluation = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["origin_date", *EVALUATION_COLUMNS])
    )
    return evaluation.assign(horizon_end=evaluation["origin_date"].map(horizon_end))


def forecast_table(
    rows: list[dict[str, Any]], origins: set, horizon_end: pd.Series, parameters: dict[str, Any]
) -> pd.DataFrame:
    """``ml.group_forecasts`` from every date's group rows (:func:`_group_forecasts`'
    columns): each row's interval from earlier errors, its horizon's end, the method
    and the as-of's expected-revenue parameters."""
    forecasts = _with_intervals(pd.DataFrame(rows), origins, horizon_end)
    return forecasts.assign(
        horizon_end=forecasts["origin_date"].map(horizon_end),
        interval_method=INTERVAL_METHOD,
        parameters=json.dumps(parameters),
    )


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass
class SavedEvaluation:
    """What the last refit run left for the daily runs after it: its as-of, its MAP
    estimates, and its rows of the dates BEFORE its as-of (the monthly re-evaluation:
    members, per-origin shares, group forecasts with their errors)."""

    as_of: date
    posterior: dict[str, dict[str, float]]
    members: pd.DataFrame
    evaluation: pd.DataFrame
    forecasts: pd.DataFrame


def score_current(
    inputs: EvaluationInputs,
    labels: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: date,
    saved: SavedEvaluation,
    spec: ClusteringConfig,
    seed: int = 42,
    explain: bool = True,
) -> Evaluation:
    """The daily run ("refit monthly, score daily"): the last refit's history kept,
    only the as-of decided again, with the saved expected-revenue parameters.

    Kept from ``saved``: every row of the dates before the refit's as-of (members,
    shares at the origins, group forecasts and their errors). Recomputed at ``as_of``
    from today's data: the Insiders cluster (``labels``, the clustering step's current
    labels), every definition's members (BG/NBD + Gamma-Gamma scored with the saved
    parameters; the trained model retrained on the horizons over by today, as in a
    refit), the groups' forecasts with intervals from the kept errors, the entry rules
    and the evidence. ``inputs`` needs only the as-of's rows and the trained model's.
    Deterministic: the same data and the same saved run give the same tables.
    """
    current = pd.Timestamp(as_of).date()
    if current not in inputs.scores:
        raise ValueError(f"no customer scores at the as-of {current}: build the dbt project first")
    decision = decide_at(
        inputs,
        current,
        spec,
        seed,
        cluster=labels.loc[labels["is_insider"], "customer_id"].astype(str).tolist(),
        fit_expected=True,
        posterior=saved.posterior,
    )
    if decision.expected_fit is None:
        raise ValueError("no purchase histories at the as-of: build the dbt project first")
    members = pd.concat([saved.members, member_frame(current, decision.members)], ignore_index=True)
    horizon_end = inputs.dates.set_index("evaluation_date")["horizon_end"]
    current_end = pd.Timestamp(horizon_end[current]).date()
    forecasts = extend_forecasts(
        saved, decision.forecasts, current_end, decision.expected_fit.parameters
    )
    rules, evidence = explain_members(customers, decision.members, seed) if explain else ([], [])
    return Evaluation(
        definitions=definitions_table(),
        members=members,
        evaluation=saved.evaluation,
        forecasts=forecasts,
        customer_forecast=decision.expected_fit.customers.assign(
            forecast_start=current, forecast_end=current_end
        ),
        eligibility_rules=_concat(rules),
        group_evidence=_concat(evidence),
        posterior=saved.posterior,
        learned={current: decision.learned},
        parameters=decision.expected_fit.parameters,
    )


def extend_forecasts(
    saved: SavedEvaluation, rows: list[dict[str, Any]], end: date, parameters: dict[str, Any]
) -> pd.DataFrame:
    """The saved ``ml.group_forecasts`` with the as-of's group rows added, their
    intervals from the saved errors (the daily run's :func:`forecast_table`)."""
    fresh = _intervals_from(
        pd.DataFrame(rows), saved.forecasts, set(saved.evaluation["origin_date"])
    ).assign(horizon_end=end, interval_method=INTERVAL_METHOD, parameters=json.dumps(parameters))
    return pd.concat([saved.forecasts, fresh[saved.forecasts.columns]], ignore_index=True)


def _intervals_from(new: pd.DataFrame, past: pd.DataFrame, origins: set) -> pd.DataFrame:
    """Intervals of ``new`` rows (one date) from the errors of ``past`` rows of the same
    group at the ``origins`` whose horizon was over by the row's date: the rule of
    :func:`_with_intervals`, for rows added to a kept history."""
    out = _with_log_errors(new)
    scored = past[past["origin_date"].isin(origins) & past["log_error"].notna()]
    ended = pd.to_datetime(scored["horizon_end"])
    errors = [
        scored.loc[
            (scored["definition"] == row.definition) & (ended <= pd.Timestamp(row.origin_date)),
            "log_error",
        ].tolist()
        for row in out.itertuples()
    ]
    return _assign_intervals(out, errors)


def explain_members(
    customers: pd.DataFrame, members: dict[str, list[str]], seed: int
) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Per definition at the as-of: readable entry rules (what makes a person eligible)
    and the members against the rest (the in-sample part of the evidence); dbt keeps
    the chosen definition's."""
    rules, evidence = [], []
    ids = customers["customer_id"].astype(str)
    for definition, chosen in members.items():
        flags = ids.isin(set(chosen)).to_numpy()
        if flags.all() or not flags.any():
            continue
        found = eligibility_rules(customers, flags, seed=seed)
        found["conditions"] = [json.dumps(c) for c in found["conditions"]]
        rules.append(found.assign(definition=definition))
        evidence.append(
            group_differences(customers, flags, seed=seed).assign(definition=definition)
        )
    return rules, evidence


def _group_forecasts(
    day: Any,
    scores: pd.DataFrame,
    members: dict[str, list[str]],
    expected: pd.Series | None,
    adjust: Adjustment,
) -> list[dict[str, Any]]:
    """Each definition's group (and all customers): last-horizon revenue, the adjusted
    forecast, the expected-revenue model's sum and, once the horizon is over, actuals."""
    by_id = scores.assign(customer_id=scores["customer_id"].astype(str)).set_index("customer_id")
    groups = {**members, ALL_CUSTOMERS: by_id.index.tolist()}
    rows = []
    for group, ids in groups.items():
        part = by_id.loc[ids]
        actual = part["horizon_net_revenue"]
        rows.append(
            group_row(
                day,
                group,
                customers=len(ids),
                naive=float(part["recent_net_revenue"].sum()),
                model=None if expected is None else float(expected.reindex(ids).fillna(0.0).sum()),
                actual=None if actual.isna().any() else float(actual.sum()),
                adjust=adjust,
            )
        )
    return rows


# The group of every customer known at a date, beside the definitions' groups.
ALL_CUSTOMERS = "all_customers"


def group_row(
    day: Any,
    group: str,
    customers: int,
    naive: float,
    model: float | None,
    actual: float | None,
    adjust: Adjustment,
) -> dict[str, Any]:
    """One group's forecast row at ``day`` from its sums: last-horizon revenue
    (``naive``), the expected-revenue model's (``model``) and, once over, the horizon's
    (``actual``)."""
    return {
        "origin_date": day,
        "definition": group,
        "customers": customers,
        "naive_revenue": naive,
        "trend_factor": adjust.trend_factor,
        "seasonal_factor": adjust.seasonal_factor,
        "season_observed": adjust.season_observed,
        "forecast_revenue": naive * adjust.factor,
        "model_revenue": model,
        "actual_revenue": actual,
    }


def _with_intervals(forecasts: pd.DataFrame, origins: set, horizon_end: pd.Series) -> pd.DataFrame:
    """Each row's interval from the same group's errors at earlier origins whose horizon
    was over by the row's date (never the row's own future)."""
    out = _with_log_errors(forecasts)
    ended = out["origin_date"].map(lambda d: pd.Timestamp(horizon_end[d]))
    scored = out["origin_date"].isin(origins) & out["log_error"].notna()
    errors = []
    for position, row in enumerate(out.itertuples()):
        date = pd.Timestamp(row.origin_date)
        behind = scored & (out["definition"] == row.definition) & (ended <= date)
        behind.iloc[position] = False
        errors.append(out.loc[behind, "log_error"].tolist())
    return _assign_intervals(out, errors)


def _with_log_errors(forecasts: pd.DataFrame) -> pd.DataFrame:
    """A copy with each row's log error (None while its horizon is not over)."""
    out = forecasts.copy()
    out["log_error"] = [
        log_error(f, a) if a is not None and not pd.isna(a) else None
        for f, a in zip(out["forecast_revenue"], out["actual_revenue"], strict=True)
    ]
    return out


def _assign_intervals(out: pd.DataFrame, errors: list[list[float]]) -> pd.DataFrame:
    """Each row's interval around its forecast from the errors given for it."""
    bounds = [
        rolling_interval(row.forecast_revenue, row_errors)
        for row, row_errors in zip(out.itertuples(), errors, strict=True)
    ]
    return out.assign(
        lower_bound=[b[0] for b in bounds],
        upper_bound=[b[1] for b in bounds],
        log_half_width=[b[2] for b in bounds],
        errors_behind_interval=[len(e) for e in errors],
    )
