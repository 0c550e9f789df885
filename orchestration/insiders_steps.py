"""The Python step downstream of the clustering: the rolling-origin evaluation.

Wiring only: reads what dbt built (``intermediate.*``, ``marts.dim_customers``,
``ml.*``), calls ``models_py.rolling_evaluation`` and replaces its ``ml`` tables in one
transaction; dbt then chooses the definition (``insiders.definition_choice``). The
clustering run's settings and chosen model come from its record in
``ml.segmentation_runs`` (no model file is unpickled here). The warehouse is open only
while reading and while writing: dbt's per-date views are copied once to Parquet in a
temporary folder and read from there one date at a time. ``refit=False`` (the daily run)
scores with the parameters the last refit saved in ``ml.forecast_parameters``.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from models_py.clustering import ClusteringConfig
from models_py.locations import DUCKDB_CONFIG
from models_py.rolling_evaluation import (
    EvaluationInputs,
    SavedEvaluation,
    evaluate,
    horizon_months,
    refit_specification,
    score_current,
)
from models_py.settings import RANDOM_GROUPS_CONFIDENCE
from orchestration.ml_tables import recorded_run, write_tables
from orchestration.sessions import Warehouse, open_warehouse
from orchestration.spark import SparkWarehouse

EVALUATION_FEATURES = "intermediate.int_customer_features__evaluations"
EVALUATION_DATES = "intermediate.int_evaluation_dates"
PURCHASE_HISTORIES = "intermediate.int_customer_purchase_histories"
SCORES = "intermediate.int_customer_scores__evaluations"
# Portable SQL, computed in the warehouse (on PostgreSQL, by the server).
MONTHLY_REVENUE = """
    with lines as (
        select invoice_at, revenue from intermediate.int_transaction_lines__rules_applied
        where exclusion_rule is null and customer_id is not null
    )
    select date_trunc('month', invoice_at) as month, sum(revenue) as revenue,
        (select min(invoice_at) from lines) as first_invoice_at
    from lines group by 1 order by 1
"""


def _read_customers(warehouse: Warehouse) -> pd.DataFrame:
    with open_warehouse(warehouse, reads=["marts.dim_customers"]) as con:
        return con.execute("select * from marts.dim_customers order by customer_id").df()


def _write(warehouse: Warehouse, **kwargs: Any) -> None:
    with open_warehouse(warehouse, write=True) as con:
        write_tables(con, **kwargs)


def _current_run(
    warehouse: Warehouse,
) -> tuple[str, Any, ClusteringConfig, dict[str, Any], pd.DataFrame]:
    """The clustering run whose labels are current: run_id, as_of, its settings, its
    chosen model and its labels."""
    with open_warehouse(warehouse, reads=["ml.customer_segments"]) as con:
        labels = con.execute("select * exclude (model) from ml.customer_segments").df()
        run = recorded_run(con, str(labels["run_id"].iloc[0])) if not labels.empty else None
    if run is None or not run.chosen:
        raise ValueError("no clustering run yet: materialise ml/customer_segments first")
    return run.run_id, labels["as_of"].iloc[0], _clustering_config(run.config), run.chosen, labels


def _clustering_config(recorded: dict[str, Any]) -> ClusteringConfig:
    """The settings a run recorded (``ClusteringConfig.to_dict``); a setting this version
    does not know is left out, one it lacks takes the default."""
    known = {f.name for f in dataclasses.fields(ClusteringConfig)}
    return ClusteringConfig(**{k: v for k, v in recorded.items() if k in known})


# --- the rolling-origin evaluation -------------------------------------------------


# The trained revenue model learns from at most this many customer-dates (a stable
# hash sample when there are more): every row at the real data's 1x and 10x, and bounded
# time and memory at 100x, where 13 dates of 433,000 customers would be 5 million rows.
TRAINING_ROWS_CAP = 500_000


class _Scratch:
    """Parquet copies of dbt's per-date relations in a temporary folder, and an
    in-memory DuckDB connection that reads them one date at a time.

    The relations are views that DuckDB cannot filter by date before computing them
    whole, so each is computed ONCE (DuckDB streams it to Parquet, sorted by date, and
    spills rather than holding it) and each date's rows are then read from the copy:
    the evaluation holds one date's customers at a time, not every date's. The folder
    goes with the object.
    """

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="insiders-evaluation-")
        self.con = duckdb.connect(config=DUCKDB_CONFIG)

    def path(self, name: str) -> str:
        return str(Path(self._folder.name) / f"{name}.parquet")

    def frame(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        return _dated(self.con.execute(sql, params).df())


class _DateTable(Mapping[date, pd.DataFrame]):
    """One relation's rows of one evaluation date at a time (sorted by customer)."""

    def __init__(self, scratch: _Scratch, name: str) -> None:
        self._scratch, self._path = scratch, scratch.path(name)
        self._dates = set(
            scratch.frame(
                "select distinct evaluation_date from read_parquet($path)", {"path": self._path}
            )["evaluation_date"]
        )

    def __getitem__(self, day: date) -> pd.DataFrame:
        if day not in self._dates:
            raise KeyError(day)
        return self._scratch.frame(
            "select * from read_parquet($path) where evaluation_date = $day order by customer_id",
            {"path": self._path, "day": day},
        )

    def __contains__(self, day: object) -> bool:
        return day in self._dates

    def __iter__(self) -> Iterator[date]:
        return iter(sorted(self._dates))

    def __len__(self) -> int:
        return len(self._dates)


class _ModelRows:
    """The trained revenue model's rows (scores, the features the scores lack, the
    date's horizon end), read from the Parquet copies for one date at a time."""

    def __init__(self, scratch: _Scratch) -> None:
        self._scratch = scratch
        self._paths = {n: scratch.path(n) for n in ("scores", "features", "dates")}
        scores = set(self._columns("scores"))
        extra = [c for c in self._columns("features") if c not in scores]
        self._select = (
            "select s.*, "
            + "".join(f'f."{c}", ' for c in extra)
            + "d.horizon_end from read_parquet($scores) as s "
            "inner join read_parquet($features) as f "
            "on s.customer_evaluation_id = f.customer_evaluation_id "
            "inner join read_parquet($dates) as d on s.evaluation_date = d.evaluation_date"
        )

    def _columns(self, name: str) -> list[str]:
        return [
            r[0]
            for r in self._scratch.con.execute(
                "describe select * from read_parquet($path)", {"path": self._paths[name]}
            ).fetchall()
        ]

    def until(self, day: date) -> pd.DataFrame:
        return self._scratch.frame(
            f"""
            with rows as ({self._select} where d.horizon_end <= $day),
            kept as (
                select * from rows
                order by hash(customer_evaluation_id), customer_evaluation_id
                limit $cap
            )
            select * from kept order by evaluation_date, customer_id
            """,
            {**self._paths, "day": day, "cap": TRAINING_ROWS_CAP},
        )

    def at(self, day: date) -> pd.DataFrame:
        return self._scratch.frame(
            f"{self._select} where s.evaluation_date = $day order by s.customer_id",
            {**self._paths, "day": day},
        )


def _dated(frame: pd.DataFrame) -> pd.DataFrame:
    """DuckDB's dates come back as timestamps: make them dates, as the evaluation's are."""
    for column in ("evaluation_date", "horizon_end", "origin_date"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame


def _inputs(warehouse: Warehouse, as_of: Any | None = None) -> EvaluationInputs:
    """Copy dbt's per-date relations to Parquet (all dates, or with ``as_of`` only the
    as-of's and those the trained model learns from at it) and read them per date."""
    wanted, params = "", {}
    if as_of is not None:
        wanted = (
            "where evaluation_date = $as_of or evaluation_date in ("
            f"select evaluation_date from {EVALUATION_DATES} where horizon_end <= $as_of)"
        )
        params = {"as_of": as_of}
    scratch = _Scratch()
    relations = {
        "dates": f"select * from {EVALUATION_DATES} order by evaluation_date",
        "features": f"select * from {EVALUATION_FEATURES} {wanted} "
        "order by evaluation_date, customer_id",
        "scores": f"select * from {SCORES} {wanted} order by evaluation_date, customer_id",
        "histories": f"select * from {PURCHASE_HISTORIES} "
        + ("where evaluation_date = $as_of " if as_of is not None else "")
        + "order by evaluation_date, customer_id",
    }
    reads = [EVALUATION_DATES, EVALUATION_FEATURES, SCORES, PURCHASE_HISTORIES]
    with open_warehouse(warehouse, reads=[*reads, ("monthly_revenue", MONTHLY_REVENUE)]) as con:
        for name, sql in relations.items():
            used = {k: v for k, v in params.items() if f"${k}" in sql}
            con.sql(sql, params=used or None).write_parquet(scratch.path(name))
        monthly = con.execute("select * from monthly_revenue order by month").df()
    dates = scratch.frame(
        "select * from read_parquet($path) order by evaluation_date",
        {"path": scratch.path("dates")},
    )
    return EvaluationInputs(
        dates=dates,
        features=_DateTable(scratch, "features"),
        scores=_DateTable(scratch, "scores"),
        histories=_DateTable(scratch, "histories"),
        modelled=_ModelRows(scratch),
        monthly=monthly.set_index("month")["revenue"],
        first_day=pd.Timestamp(monthly["first_invoice_at"].min()).normalize(),
        horizon_months=horizon_months(dates),
    )


def read_inputs(warehouse: Warehouse) -> EvaluationInputs:
    """The point-in-time inputs of every evaluation date (built by dbt), per date."""
    return _inputs(warehouse)


def read_current_inputs(warehouse: Warehouse, as_of: Any) -> EvaluationInputs:
    """What a daily run reads: the as-of's rows, and the rows the trained revenue model
    learns from (dates whose horizon was over by the as-of), not every date's."""
    return _inputs(warehouse, as_of)


def read_saved(warehouse: Warehouse) -> SavedEvaluation | None:
    """The last refitting run's parameters and its rows of the dates before its as-of,
    or None when no run has recorded parameters (``ml.forecast_parameters`` is empty)."""
    with open_warehouse(warehouse, reads=["ml.definition_members"]) as con:
        parameters = con.execute(
            "select run_id, as_of, model, parameter, value from ml.forecast_parameters"
        ).df()
        if parameters.empty:
            return None
        refit_as_of = pd.Timestamp(parameters["as_of"].iloc[0]).date()
        members = con.execute(
            """
            select evaluation_date, definition, customer_id, member_rank
            from ml.definition_members where evaluation_date < ?
            order by evaluation_date, definition, member_rank
            """,
            [refit_as_of],
        ).df()
        evaluation = con.execute(
            "select * exclude (as_of, run_id) from ml.definition_evaluation "
            "where origin_date < ? order by origin_date, definition",
            [refit_as_of],
        ).df()
        forecasts = con.execute(
            "select * exclude (as_of, run_id) from ml.group_forecasts "
            "where origin_date < ? order by origin_date, definition",
            [refit_as_of],
        ).df()
    posterior: dict[str, dict[str, float]] = {}
    for row in parameters.itertuples():
        posterior.setdefault(str(row.model), {})[str(row.parameter)] = float(row.value)
    return SavedEvaluation(
        as_of=refit_as_of,
        posterior=posterior,
        members=_dated(members),
        evaluation=_dated(evaluation),
        forecasts=_dated(forecasts),
    )


def saved_or_refit(
    warehouse: Warehouse, refit: bool, current: date, log: logging.Logger | Any
) -> SavedEvaluation | None:
    """What a daily run (``refit=False``) scores with, or None to refit: also when no
    refit saved parameters yet, or the saved ones are of a later as-of (with a warning)."""
    saved = None if refit else read_saved(warehouse)
    if not refit and saved is None:
        log.warning(
            "refit: false, but no analytics run has saved forecast parameters yet"
            " (ml.forecast_parameters is empty): refitting"
        )
    elif saved is not None and saved.as_of > current:
        log.warning(
            f"refit: false, but the saved parameters are of {saved.as_of}, after the as-of"
            f" {current}: refitting"
        )
        saved = None
    return saved


def _parameter_rows(posterior: dict[str, dict[str, float]]) -> pd.DataFrame:
    """``ml.forecast_parameters`` rows (without run_id and as_of) of a posterior."""
    return pd.DataFrame(
        [
            {"model": model, "parameter": name, "value": float(value)}
            for model, values in posterior.items()
            for name, value in values.items()
        ],
        columns=["model", "parameter", "value"],
    )


def run_rolling_evaluation(
    warehouse: Warehouse,
    n_random: int,
    confidence: float = RANDOM_GROUPS_CONFIDENCE,
    seed: int = 42,
    log: logging.Logger | Any = logging.getLogger(__name__),  # noqa: B008
    refit: bool = True,
) -> dict[str, Any]:
    """Read, evaluate, write ``ml``; Dagster metadata.

    ``refit`` (the monthly run): every definition at every date, the models refitted at
    every origin; the as-of's BG/NBD + Gamma-Gamma parameters are saved in
    ``ml.forecast_parameters``. ``refit: false`` (the daily run): the last refit's rows
    of the dates before its as-of are kept and only the as-of is decided again, the
    expected revenue scored with the saved parameters (:func:`score_current`); with no
    saved parameters, or ones from after the as-of, it refits with a warning.
    """
    if isinstance(warehouse, SparkWarehouse):
        from orchestration.spark_evaluation import run_evaluation_on_spark

        metadata = run_evaluation_on_spark(warehouse, n_random, confidence, seed, log, refit)
        if metadata is not None:
            return metadata  # more customers than the sample: decided in Spark
    run_id, as_of, clustering, chosen, labels = _current_run(warehouse)
    current = pd.Timestamp(as_of).date()
    spec = refit_specification(clustering, chosen)
    saved = saved_or_refit(warehouse, refit, current, log)
    customers = _read_customers(warehouse)
    started = time.perf_counter()
    if saved is None:
        result = evaluate(
            read_inputs(warehouse),
            labels,
            customers,
            current,
            spec,
            n_random=n_random,
            confidence=confidence,
            seed=seed,
            log=log,
        )
    else:
        log.info(f"refit: false, scoring with the forecast parameters of {saved.as_of}")
        inputs = read_current_inputs(warehouse, current)
        result = score_current(inputs, labels, customers, current, saved, spec, seed=seed)
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
            # Only a refit saves parameters: daily runs keep scoring with the refit's.
            "forecast_parameters": None
            if saved is not None
            else _parameter_rows(result.posterior).assign(**stamp),
        },
    )
    metadata = _metadata(result.evaluation, result.forecasts, current, seconds)
    metadata["refit"] = saved is None
    metadata["parameters_as_of"] = str(current if saved is None else saved.as_of)
    return metadata


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
